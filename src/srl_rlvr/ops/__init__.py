"""Running jobs safely: the stage ledger and checkpoint bookkeeping (``ops.checkpoints``) and experiment
tracking (``ops.tracking``). The checkpoint manager and failure handler land here."""
