"""Experiment tracking: the stage-config overrides that send TRL's metrics to MLflow.

By default a local store under OUT (``OUT/mlruns``); ``tracking.tracking_uri`` or ``MLFLOW_TRACKING_URI``
points elsewhere (an MLflow server, a SQLite database). Without mlflow installed tracking is off, said once.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from srl_rlvr.core.console import say

_warned_no_mlflow: list[bool] = []  # say it once per process, not once per stage
def tracking_args(config: Any, out_dir: Path, run_name: str) -> dict[str, Any]:
    """Stage-config overrides that turn on MLflow (local file store under OUT by default), or nothing."""
    import importlib.util

    if not config.tracking.mlflow:
        return {}
    if importlib.util.find_spec("mlflow") is None:
        if not _warned_no_mlflow:
            say("tracking off: mlflow is not installed (pip install mlflow, or set tracking.mlflow: false)")
            _warned_no_mlflow.append(True)
        return {}
    uri = (config.tracking.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
           or f"file:{(out_dir / 'mlruns').resolve()}")
    os.environ["MLFLOW_TRACKING_URI"] = uri
    if uri.startswith("file:"):
        # MLflow 3 refuses the file store (maintenance mode) unless asked; it is still the no-server option.
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    os.environ["MLFLOW_EXPERIMENT_NAME"] = config.tracking.experiment
    return {"report_to": ["mlflow"], "run_name": run_name}
