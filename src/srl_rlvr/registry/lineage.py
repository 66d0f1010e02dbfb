"""What a registered version records about its origin, read from the model folder and its eval.

    srl-rlvr registry register --name demo-math --model out/demo/models/srl_rlvr \
        --eval out/demo/eval/test/srl_rlvr/metrics.json

From the folder's stage manifest (``srl_rlvr_stage.json``, written by every training stage): the stage,
base model, LoRA or full weights, config hash, MLflow run id and the sha256 of each training data file.
From the git checkout the command runs in: the commit. From ``--eval``: the metrics, the predictions
beside them and the digest of the problems they cover.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from srl_rlvr.registry.base import Lineage, RegistryError
from srl_rlvr.registry.manifest import read_manifest


def git_commit(where: Path | None = None) -> str:
    """The commit of the checkout ``where`` is in (the code that ran), or "" outside git."""
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10,
                              cwd=str(where) if where else None)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def read_eval(metrics_path: str | Path) -> tuple[dict[str, float], str, str]:
    """(numeric metrics, predictions.jsonl path, eval-set digest) from an ``srl-rlvr eval`` metrics.json."""
    from srl_rlvr.registry.gate import predictions_digest

    path = Path(metrics_path)
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise RegistryError(f"--eval {path}: cannot read it ({exc.strerror})") from None
    except ValueError as exc:
        raise RegistryError(f"--eval {path}: not JSON ({exc})") from None
    if not isinstance(metrics, dict) or "greedy_accuracy" not in metrics:
        raise RegistryError(f"--eval {path}: not an srl-rlvr eval metrics.json (no 'greedy_accuracy')")
    predictions = path.with_name("predictions.jsonl")
    if not predictions.is_file():
        raise RegistryError(f"--eval {path}: no predictions.jsonl beside it (the gate's paired test needs it)")
    numeric = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return numeric, str(predictions.resolve()), predictions_digest(predictions)


def lineage_of(model_dir: str | Path, eval_metrics: str | Path | None = None, stage: str | None = None) -> Lineage:
    folder = Path(model_dir)
    if not folder.is_dir():
        raise RegistryError(f"--model {folder}: no such folder")
    manifest = read_manifest(folder)
    if manifest is None and stage == "base":  # the model training started from: no stage manifest
        manifest = {"stage": "base", "base_model": str(folder.resolve())}
    if manifest is None:
        raise RegistryError(f"--model {folder}: not a finished srl-rlvr stage (no srl_rlvr_stage.json); "
                            "register what a training stage wrote to OUT/<stage>/final or OUT/models/<label>")
    lineage = Lineage(
        stage=stage or str(manifest.get("stage", "")),
        base_model=str(manifest.get("base_model", "")),
        kind="adapter" if manifest.get("lora") or (folder / "adapter_config.json").is_file() else "full",
        config_hash=str(manifest.get("config_hash", "")),
        training_run_id=str(manifest.get("mlflow_run_id", "")),
        git_commit=git_commit(Path.cwd()),
        data_sha256=dict(manifest.get("data_sha256") or {}),
    )
    if eval_metrics is not None:
        lineage.eval_metrics, lineage.eval_predictions, lineage.eval_set_digest = read_eval(eval_metrics)
    return lineage
