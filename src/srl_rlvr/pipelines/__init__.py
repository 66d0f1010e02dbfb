"""Multi-stage jobs, between the CLI and the subsystems: ``run`` (data → SRL → RLVR → eval → report),
``seeds`` (one config over several training seeds), ``compare`` (the paper's baselines), with the YAML
schema they share (``config``), the data they write (``data``) and the report (``report``)."""
