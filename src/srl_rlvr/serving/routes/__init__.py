"""HTTP routes, one small module per endpoint group; shared dependencies live in ``serving/deps.py``."""
