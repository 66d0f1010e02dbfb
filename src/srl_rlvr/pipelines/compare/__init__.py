"""``srl-rlvr compare``: SRL against its baselines (``run``) and the table, plots and docs block (``report``)."""
