"""The checkpoint manager: a checkpoint is whole and checked, or it is not used.

    srl-rlvr checkpoints list runs/srl          # every checkpoint-N, valid or why not
    srl-rlvr checkpoints verify runs/srl        # exit 1 naming the first bad file

A save goes to ``OUT/.staging/checkpoint-N``, is renamed to ``OUT/checkpoint-N`` (one atomic rename on
the same filesystem) and gets its ``COMPLETE`` marker last: a JSON file with the sha256 and size of every
other file, the global step, the stage's config hash and the step's logged metrics. A kill at any moment
leaves either a staging folder or an unmarked one, never a checkpoint that looks finished.

:func:`verify_checkpoint` accepts a checkpoint only when its marker exists and parses, every listed file
exists with its recorded size and hash and no file is unlisted, every safetensors header parses and
every tensor is finite, and the step in the folder name, the marker and ``trainer_state.json`` agree.
Resume (and the ledger's choice of what to continue) takes the newest checkpoint that passes, printing
why each newer one was skipped. :func:`rotate` keeps the newest ``keep`` valid checkpoints, never the
newest valid one nor the best by ``best_metric``, and removes invalid ones older than the newest valid.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from srl_rlvr.core.console import say
from srl_rlvr.core.io import read_json, sha256_file

COMPLETE = "COMPLETE"
STAGING = ".staging"
PREFIX = "checkpoint-"
MARKER_FORMAT = 1
MARKER_TMP = f".{COMPLETE}.tmp"  # the marker before its atomic rename
TRAINER_STATE = "trainer_state.json"


@dataclass
class CheckpointSettings:
    """The pipeline YAML's ``checkpoints:`` section (also read by ``srl-rlvr train``)."""

    keep: int | None = field(default=None, metadata={
        "help": "Newest valid checkpoints to keep; None means the stage's save_total_limit (None there: all)."})
    best_metric: str | None = field(default=None, metadata={
        "help": "A logged training metric (e.g. 'reward'); the checkpoint best by it is never rotated away."})
    greater_is_better: bool = field(default=True, metadata={"help": "Direction of best_metric."})
    remote: str | None = field(default=None, metadata={
        "help": "s3://bucket/prefix: upload each completed checkpoint there (the stage folder's name is "
                "appended); --resume downloads the newest valid one when none is valid locally."})
    endpoint_url: str | None = field(default=None, metadata={
        "help": "S3 endpoint (a moto server, MinIO); default: boto3's own (AWS_ENDPOINT_URL or AWS)."})
    check_finite: bool = field(default=True, metadata={
        "help": "Verify that every saved tensor is finite (reads the weights once per checkpoint)."})

    def __post_init__(self) -> None:
        if self.keep is not None and self.keep < 1:
            raise ValueError(f"checkpoints.keep must be >= 1 (or null: the stage's save_total_limit), got {self.keep}")
        if self.remote is not None and not self.remote.startswith("s3://"):
            raise ValueError(f"checkpoints.remote must be an s3://bucket/prefix URL, got {self.remote!r}")


@dataclass
class CheckpointStatus:
    path: Path
    step: int
    reason: str | None  # None: valid
    marker: dict[str, Any] | None = None

    @property
    def valid(self) -> bool:
        return self.reason is None


def checkpoint_step(path: Path) -> int | None:
    name = path.name
    if not name.startswith(PREFIX) or not name[len(PREFIX):].isdigit():
        return None
    return int(name[len(PREFIX):])


def checkpoint_dirs(out: Path) -> list[Path]:
    """``checkpoint-N`` folders in ``out`` (staging excluded), oldest first."""
    if not out.is_dir():
        return []
    found = [p for p in out.iterdir() if p.is_dir() and checkpoint_step(p) is not None]
    return sorted(found, key=lambda p: checkpoint_step(p) or 0)


def file_manifest(folder: Path) -> dict[str, dict[str, Any]]:
    """Every file under ``folder`` but the marker: relative path → sha256 and size."""
    files = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if path.is_file() and rel not in (COMPLETE, MARKER_TMP):
            files[rel] = {"sha256": sha256_file(path), "size": path.stat().st_size}
    return files


def _fsync_tree(folder: Path) -> None:
    """Flush file contents before the rename that publishes them (a crash must not publish empty files)."""
    for path in folder.rglob("*"):
        if path.is_file():
            with path.open("rb") as handle:
                os.fsync(handle.fileno())


def write_marker(folder: Path, step: int, config_hash: str, metrics: dict[str, Any] | None = None) -> dict:
    marker = {"format": MARKER_FORMAT, "global_step": step, "config_hash": config_hash,
              "metrics": metrics or {}, "files": file_manifest(folder),
              "written_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    tmp = folder / MARKER_TMP
    with tmp.open("w", encoding="utf-8") as handle:
        json.dump(marker, handle, indent=1)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, folder / COMPLETE)
    _fsync_dir(folder)
    return marker


def _fsync_dir(folder: Path) -> None:
    """Make a rename inside ``folder`` durable (POSIX; a no-op where directories cannot be opened)."""
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


def staging_dir(out: Path) -> Path:
    return out / STAGING


def commit(staged: Path, out: Path, config_hash: str, metrics: dict[str, Any] | None = None) -> Path:
    """Publish a fully written staging folder as ``out/checkpoint-N``: fsync, rename, then the marker."""
    step = checkpoint_step(staged)
    if step is None:
        raise ValueError(f"{staged} is not named checkpoint-N")
    _fsync_tree(staged)
    target = out / staged.name
    if target.exists():  # an older save of the same step (an invalid one, or one before a rollback)
        shutil.rmtree(target)
    os.replace(staged, target)
    if staged.parent.name == STAGING:
        try:
            staged.parent.rmdir()  # empty now; a staging folder left behind means a save was cut short
        except OSError:
            pass
    _fsync_dir(out)
    write_marker(target, step, config_hash, metrics)
    return target


def clear_staging(out: Path) -> None:
    staging = staging_dir(out)
    if staging.exists():
        shutil.rmtree(staging, ignore_errors=True)


# --- validation --------------------------------------------------------------------------------------
def _tensor_problem(path: Path, check_finite: bool) -> str | None:
    """A reason if a safetensors file's header does not parse or one of its tensors is not finite."""
    import torch
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            keys = list(handle.keys())
            if not check_finite:
                return None
            for key in keys:
                tensor = handle.get_tensor(key)
                if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                    return f"{path.name}: tensor {key!r} holds NaN or Inf"
    except Exception as exc:  # safetensors raises its own error types for a bad header
        return f"{path.name}: unreadable safetensors ({exc})"
    return None


def verify_checkpoint(folder: Path, *, check_finite: bool = True, config_hash: str | None = None) -> str | None:
    """None when ``folder`` is a valid checkpoint, else why not (naming the file)."""
    step = checkpoint_step(folder)
    if step is None:
        return f"{folder.name} is not named checkpoint-N"
    marker_path = folder / COMPLETE
    if not marker_path.is_file():
        return f"{COMPLETE} marker missing (the save did not finish)"
    try:
        marker = json.loads(marker_path.read_text(encoding="utf-8"))
        files = marker["files"]
        marked_step = int(marker["global_step"])
        if not isinstance(files, dict) or not all(isinstance(e, dict) for e in files.values()):
            raise TypeError("'files' must map each path to its sha256 and size")
    except (ValueError, KeyError, TypeError) as exc:
        return f"{COMPLETE}: unreadable marker ({exc})"
    if marked_step != step:
        return f"{COMPLETE} says step {marked_step}, the folder says {step}"
    if config_hash is not None and marker.get("config_hash") != config_hash:
        return f"saved by a different config (hash {marker.get('config_hash')}, this run {config_hash})"
    present = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()} - {COMPLETE}
    for rel, entry in files.items():
        path = folder / rel
        if rel not in present:
            return f"{rel}: missing"
        if path.stat().st_size != entry.get("size"):
            return f"{rel}: size {path.stat().st_size} != recorded {entry.get('size')} (truncated or rewritten)"
        if sha256_file(path) != entry.get("sha256"):
            return f"{rel}: sha256 mismatch (corrupted)"
    unlisted = sorted(present - set(files))
    if unlisted:
        return f"{unlisted[0]}: not in the {COMPLETE} manifest (written after the save)"
    state = read_json(folder / TRAINER_STATE)
    if state is None:
        return f"{TRAINER_STATE}: missing or unreadable"
    if not isinstance(state, dict) or state.get("global_step") != step:
        said = state.get("global_step") if isinstance(state, dict) else state
        return f"{TRAINER_STATE} says step {said!r}, the folder says {step}"
    for path in sorted(folder.glob("*.safetensors")):
        problem = _tensor_problem(path, check_finite)
        if problem:
            return problem
    return None


def scan(out: Path, *, check_finite: bool = True, config_hash: str | None = None) -> list[CheckpointStatus]:
    statuses = []
    for path in checkpoint_dirs(out):
        reason = verify_checkpoint(path, check_finite=check_finite, config_hash=config_hash)
        statuses.append(CheckpointStatus(path, checkpoint_step(path) or 0, reason,
                                         read_json(path / COMPLETE) if reason is None else None))
    return statuses


def newest_valid(out: Path, *, check_finite: bool = True, config_hash: str | None = None,
                 announce: bool = True) -> Path | None:
    """The newest valid checkpoint in ``out``; each newer invalid one is named with its reason.
    Checks newest first and stops at the first valid one (hashing every checkpoint would be wasted)."""
    for path in reversed(checkpoint_dirs(out)):
        reason = verify_checkpoint(path, check_finite=check_finite, config_hash=config_hash)
        if reason is None:
            return path
        if announce:
            say(f"  skipping {path.name}: {reason}")
    return None


def _best(statuses: list[CheckpointStatus], metric: str | None, greater: bool) -> Path | None:
    def value(status: CheckpointStatus) -> float | None:
        found = ((status.marker or {}).get("metrics") or {}).get(metric)
        return float(found) if isinstance(found, (int, float)) and not isinstance(found, bool) else None

    scored = [(value(s), s.step, s.path) for s in statuses if s.valid and value(s) is not None]
    if not scored:
        return None
    pick = max if greater else min
    return pick(scored, key=lambda t: (t[0], t[1]))[2]


def rotate(out: Path, keep: int | None, best_metric: str | None = None, greater_is_better: bool = True,
           check_finite: bool = False) -> list[Path]:
    """Delete old checkpoints; return what was deleted.

    Kept: the newest ``keep`` valid ones (all when ``keep`` is None), always the newest valid one, the best
    by ``best_metric``, and anything newer than the newest valid one (a save may be in progress, and an
    invalid newer checkpoint is evidence for ``checkpoints verify``). Hashes are checked again here, so a
    checkpoint corrupted since its save never counts as the one to keep.
    """
    statuses = scan(out, check_finite=check_finite)
    valid = [s for s in statuses if s.valid]
    if not valid:
        return []
    newest = valid[-1]
    protected = {s.path for s in valid[-keep:]} if keep else {s.path for s in valid}
    protected.add(newest.path)
    best = _best(statuses, best_metric, greater_is_better)
    if best is not None:
        protected.add(best)
    removed = []
    for status in statuses:
        if status.path in protected or status.step > newest.step:
            continue
        shutil.rmtree(status.path, ignore_errors=True)
        removed.append(status.path)
        if not status.valid:
            say(f"  removed invalid {status.path.name}: {status.reason}")
    return removed
