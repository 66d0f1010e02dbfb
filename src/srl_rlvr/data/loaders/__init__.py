"""Trajectory loaders, registered by name (see registry.py)."""
