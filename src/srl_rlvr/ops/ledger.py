"""The stage ledger: skip what is done, rerun what changed, resume what was cut short.

    srl-rlvr run configs/demo-cpu.yaml --out out/demo --resume     # continues each stage's last checkpoint-*

A stage folder records ``_STARTED.json`` (the config hash of the run in progress) when it starts and
``_DONE.json`` (hash, seconds, global step) when it finishes. :func:`run_step` skips a stage whose
``_DONE.json`` has the same hash and whose artifact exists, reruns it when the hash differs (naming the keys
that changed), and with ``resume`` continues from the last *complete* ``checkpoint-*`` (the HF Trainer
writes ``trainer_state.json`` last) of a run with the same hash. A folder that does not look like a stage
folder is never wiped.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from srl_rlvr.core.console import SINGLE, Ranks, say
from srl_rlvr.core.io import folder_digest, read_json, write_json
from srl_rlvr.errors import UserInputError
from srl_rlvr.monitoring.training import TEXTFILE as METRICS_TEXTFILE
from srl_rlvr.ops.checkpoints import CheckpointSettings, checkpoint_dirs, clear_staging, newest_valid, scan
from srl_rlvr.ops.failures import RECOVERIES, TRAINED_SAMPLES
from srl_rlvr.registry.manifest import FINAL

DONE = "_DONE.json"
STARTED = "_STARTED.json"  # hash of the run in progress, so --resume never continues a different config
# Left out of a final's digest: the pickled TrainingArguments carry a timestamped logging_dir, not the model.
NOT_MODEL_CONTENT = ("training_args.bin",)


def config_hash(payload: Any) -> str:
    text = json.dumps(payload, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(data, dict):
        return {prefix: data}
    out: dict[str, Any] = {}
    for key, value in data.items():
        out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def describe_change(old: Any, new: Any, limit: int = 4) -> str:
    """'rlvr.max_steps: 2 -> 3' for the keys that differ between two hashed payloads."""
    a, b = _flatten(old or {}), _flatten(new)
    changed = [f"{k}: {a.get(k, '<unset>')} -> {b.get(k, '<unset>')}"
               for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    if not changed:
        return "config changed"
    more = f" (+{len(changed) - limit} more)" if len(changed) > limit else ""
    return "; ".join(changed[:limit]) + more


def complete_checkpoints(out: Path) -> list[Path]:
    """The valid checkpoint-N folders (COMPLETE marker, hashes, step; see ops.checkpoints), oldest first."""
    return [status.path for status in scan(out, check_finite=False) if status.valid]


# What a stage folder may hold; anything else means --out points somewhere we must not wipe.
STAGE_FOLDER_ITEMS = {FINAL, "log_history.json", "README.md", "runs", "mlruns", DONE, STARTED, "metrics.json",
                      "predictions.jsonl", "eval_run.json", RECOVERIES, TRAINED_SAMPLES, METRICS_TEXTFILE}


def _owned(out: Path) -> bool:
    if (out / STARTED).exists() or (out / DONE).exists():
        return True
    return all(p.name in STAGE_FOLDER_ITEMS or p.name.startswith(("checkpoint-", ".")) for p in out.iterdir())


def _clean(out: Path) -> None:
    if out.exists():
        if not _owned(out):
            raise UserInputError(f"{out} is not empty and does not look like an srl-rlvr stage folder; "
                                 "refusing to clean it (choose a new or empty --out)")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


@dataclass
class StepOutcome:
    name: str
    skipped: bool
    seconds: float
    global_step: int | None = None
    resumed_from: str | None = None
    config_hash: str = ""


def run_step(name: str, out: Path, payload: dict[str, Any], work: Callable[[bool], int | None], *,
             resume: bool = False, artifact: str = FINAL, resumable: bool = True,
             ranks: Ranks = SINGLE, checkpoints: CheckpointSettings | None = None) -> StepOutcome:
    """Run ``work(resuming) -> global_step`` in ``out`` unless a finished run with the same config is there.

    ``artifact`` must exist in ``out`` for a finished run to count (a deleted final re-runs the stage).
    With several ``ranks`` every rank runs ``work``; the main one alone cleans and writes the bookkeeping.
    ``checkpoints.remote``: with ``resume``, a run with no valid local checkpoint continues from the newest
    valid one in the bucket (saved under the same config hash).
    """
    digest = config_hash(payload)
    done = read_json(out / DONE)  # every rank reads the same files, so every rank decides the same
    if done is not None and done.get("config_hash") == digest and (out / artifact).exists():
        say(f"skip {name}: done ({done.get('finished_at', '?')})")
        return StepOutcome(name, True, float(done.get("seconds", 0.0)), done.get("global_step"), None, digest)
    if ranks.is_main:
        if done is not None:
            why = (describe_change(done.get("config"), payload) if done.get("config_hash") != digest
                   else f"{out / artifact} is missing")
            say(f"rerun {name}: {why}")
            _clean(out)
        resuming = _prepare_folder(name, out, payload, resume and resumable, checkpoints)
        write_json(out / STARTED, {"config_hash": digest, "config": payload, "started_at": _now(),
                                   "resume_from": resuming})
    ranks.barrier()
    if not ranks.is_main:
        resuming = (read_json(out / STARTED) or {}).get("resume_from")
    started = time.perf_counter()
    global_step = work(resuming is not None)
    seconds = time.perf_counter() - started
    if ranks.is_main:
        done = {"stage": name, "finished_at": _now(), "global_step": global_step, "config_hash": digest,
                "seconds": round(seconds, 2), "resumed_from": resuming, "config": payload}
        if (out / artifact).is_dir():  # a model folder: what downstream stages key on (upstream_identity)
            done["artifact_digest"] = folder_digest(out / artifact, NOT_MODEL_CONTENT)
        write_json(out / DONE, done)
        (out / STARTED).unlink(missing_ok=True)
    ranks.barrier()  # the next stage's hash reads this _DONE.json on every rank
    return StepOutcome(name, False, seconds, global_step, resuming, digest)


def upstream_identity(stage_dir: Path) -> str | None:
    """What a downstream stage keys on: the digest of the finished stage's weights (``final/``), recorded in
    its ``_DONE.json``, so a retrained upstream reruns what depends on it even with an unchanged config.
    None when the stage has not finished."""
    done = read_json(stage_dir / DONE)
    if done is None:
        return None
    if done.get("artifact_digest"):
        return str(done["artifact_digest"])
    final = stage_dir / FINAL  # a _DONE.json from before digests were recorded: digest the folder itself
    return folder_digest(final, NOT_MODEL_CONTENT) if final.is_dir() else None


def _pull_remote(name: str, out: Path, digest: str, checkpoints: CheckpointSettings | None) -> Path | None:
    if checkpoints is None or not checkpoints.remote:
        return None
    from srl_rlvr.ops.remote import RemoteCheckpoints

    remote = RemoteCheckpoints.for_stage(checkpoints, out, digest)
    say(f"{name}: no valid local checkpoint; looking in {remote.url}")
    return remote.download_newest(out, check_finite=checkpoints.check_finite)


def _prepare_folder(name: str, out: Path, payload: dict[str, Any], resume: bool,
                    checkpoints: CheckpointSettings | None = None) -> str | None:
    """Make ``out`` ready for a fresh or resumed run; return the checkpoint name resumed from, if any.

    Only a valid checkpoint saved under this config's hash is resumed from (the marker records it)."""
    digest = config_hash(payload)
    if not out.exists() or not any(out.iterdir()):
        out.mkdir(parents=True, exist_ok=True)
        pulled = _pull_remote(name, out, digest, checkpoints) if resume else None
        if pulled is not None:
            say(f"resume {name} from {pulled.name} (downloaded)")
            return pulled.name
        return None
    if resume:
        clear_staging(out)  # a save that was cut short
        check = checkpoints.check_finite if checkpoints else True
        checkpoint = newest_valid(out, check_finite=check, config_hash=digest)
        if checkpoint is None:
            checkpoint = _pull_remote(name, out, digest, checkpoints)
        if checkpoint is not None:
            if (out / FINAL).exists():  # a final without _DONE.json was cut short while saving
                shutil.rmtree(out / FINAL)
            say(f"resume {name} from {checkpoint.name}")
            return checkpoint.name
        started = read_json(out / STARTED) or {}
        if checkpoint_dirs(out) and started.get("config_hash") not in (None, digest):
            say(f"{name}: config changed since the interrupted run "
                f"({describe_change(started.get('config'), payload)}); starting over in {out}")
        else:
            say(f"{name}: no valid checkpoint to resume from; starting over in {out}")
    else:
        found = complete_checkpoints(out)
        hint = f" (pass --resume to continue from {found[-1].name})" if found else ""
        say(f"{name}: unfinished run found; starting over, cleaning {out}{hint}")
    _clean(out)
    return None


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
