"""The ``srl-rlvr`` command line: a thin main.py plus one module per command group."""
