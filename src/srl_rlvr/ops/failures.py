"""The failure handler: one policy per kind of fault, each recovery recorded.

    srl-rlvr train srl --model TINY --data srl.jsonl --out runs/srl --set max_steps=6 --inject-fault nan@3

=============  ================================================================================  =========
fault          what happens                                                                      exit code
=============  ================================================================================  =========
NaN/Inf        loss, grad norm, rewards or weights non-finite: roll back to the newest valid     0 (or 1)
               checkpoint (the start when there is none), scale the learning rate by
               ``lr_factor``, skip the offending step's batch, retry; ``nan_retries`` times,
               then stop with a message. A non-finite checkpoint is never saved.
out of memory  halve the per-device batch, double gradient accumulation (same effective          0 (or 1)
               batch), continue from the newest valid checkpoint; ``oom_retries`` times.
SIGTERM/INT    finish the current step, save a complete checkpoint, exit ``EXIT_PREEMPTED``;     75
               ``--resume`` continues from it.
disk full      remove the half-written checkpoint, print one line, exit ``EXIT_DISK_FULL``;     74
               ``--resume`` continues from the newest valid checkpoint once space is freed.
transient      a remote endpoint's connection error, timeout, 429 or 5xx: retry with            (caller's)
               exponential backoff ``transient_retries`` times, then fail naming the endpoint.
=============  ================================================================================  =========

Every recovery lands in the stage folder's ``recoveries.json`` (then ``report.json["recoveries"]`` and
the MLflow tags ``srl_rlvr.recoveries*``) and in ``metrics.prom``, a Prometheus text file (node
exporter's textfile collector format) with ``srl_rlvr_training_recoveries_total{reason,stage}``.

``--inject-fault KIND@STEP`` (KIND: nan, oom, sigterm, enospc, kill) raises the real fault once, in the
first training stage that reaches STEP; ``kill`` is kill -9 of the own process in the middle of that
step's checkpoint save. Drills: ``pytest tests/ops``.
"""

from __future__ import annotations

import datetime as _dt
import errno
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from srl_rlvr.core.console import say
from srl_rlvr.core.io import read_json, write_json
from srl_rlvr.errors import UserInputError

RECOVERIES = "recoveries.json"
TRAINED_SAMPLES = "trained_samples.json"
EXIT_PREEMPTED = 75  # EX_TEMPFAIL: a complete checkpoint was saved; rerun with --resume
EXIT_DISK_FULL = 74  # EX_IOERR: nothing half-written was left; free space, rerun with --resume
FAULT_KINDS = ("nan", "oom", "sigterm", "enospc", "kill")

T = TypeVar("T")


@dataclass
class FailurePolicy:
    """The pipeline YAML's ``failures:`` section."""

    nan_retries: int = field(default=3, metadata={"help": "Rollbacks after a NaN/Inf before the stage stops."})
    lr_factor: float = field(default=0.5, metadata={"help": "Learning-rate factor applied at each NaN rollback."})
    oom_retries: int = field(default=2, metadata={"help": "Batch halvings after out-of-memory before stopping."})
    transient_retries: int = field(default=3, metadata={"help": "Retries of a remote call that failed transiently."})
    backoff_s: float = field(default=1.0, metadata={"help": "First retry delay; doubles each retry."})
    backoff_max_s: float = field(default=30.0, metadata={"help": "Cap on one retry delay."})

    def __post_init__(self) -> None:
        for name in ("nan_retries", "oom_retries", "transient_retries"):
            if getattr(self, name) < 0:
                raise ValueError(f"failures.{name} must be >= 0, got {getattr(self, name)}")
        if not 0 < self.lr_factor <= 1:
            raise ValueError(f"failures.lr_factor must be in (0, 1], got {self.lr_factor}")


# --- faults -------------------------------------------------------------------------------------------
class TrainingFault(Exception):
    """A fault the handler knows; ``step`` is the optimiser step being trained (1-based)."""

    kind = "fault"

    def __init__(self, step: int, detail: str):
        self.step, self.detail = step, detail
        super().__init__(f"{self.kind} at step {step}: {detail}")


class NonFiniteError(TrainingFault):
    kind = "nan"


class StageStopped(UserInputError):
    """The stage stopped on purpose and can be resumed; the CLI exits with ``exit_code``."""

    exit_code = 1


class Preempted(StageStopped):
    exit_code = EXIT_PREEMPTED


class DiskFull(StageStopped):
    exit_code = EXIT_DISK_FULL


class RetriesExhausted(StageStopped):
    exit_code = 1


def is_out_of_memory(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.OutOfMemoryError) or (
        isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower())


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno == errno.ENOSPC


@dataclass
class FaultPlan:
    """``--inject-fault KIND@STEP``: fire one real fault, once per process."""

    kind: str
    step: int
    fired: bool = False

    @classmethod
    def parse(cls, text: str | None) -> FaultPlan | None:
        if not text:
            return None
        kind, _, step = text.partition("@")
        if kind not in FAULT_KINDS or not step.isdigit() or int(step) < 1:
            raise UserInputError(f"--inject-fault {text!r}: expected KIND@STEP with KIND one of "
                                 f"{', '.join(FAULT_KINDS)} and STEP >= 1 (e.g. nan@3)")
        return cls(kind, int(step))

    def due(self, kind: str, step: int) -> bool:
        """True exactly once: the first time ``kind`` is asked about at ``step``."""
        if self.fired or self.kind != kind or step != self.step:
            return False
        self.fired = True
        say(f"injecting fault {kind}@{step}")
        return True


# --- recording ----------------------------------------------------------------------------------------
@dataclass
class Recovery:
    reason: str  # nan | oom | sigterm | enospc | transient
    step: int
    action: str
    stage: str = ""
    attempt: int = 0
    at: str = field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))


class RecoveryLog:
    """A stage folder's ``recoveries.json``; kept across resumes. ``on_change`` (the stage's TrainingExporter)
    turns the entries into the ``srl_rlvr_training_recoveries_total`` counter of ``metrics.prom``."""

    def __init__(self, folder: Path, stage: str):
        self.folder, self.stage = Path(folder), stage
        self.entries: list[dict[str, Any]] = read_recoveries(self.folder)
        self.on_change: Callable[[list[dict[str, Any]]], None] | None = None

    def record(self, recovery: Recovery) -> None:
        recovery.stage = recovery.stage or self.stage
        self.entries.append(recovery.__dict__.copy())
        say(f"recovery ({recovery.reason} at step {recovery.step}): {recovery.action}")
        self.folder.mkdir(parents=True, exist_ok=True)
        write_json(self.folder / RECOVERIES, {"stage": self.stage, "recoveries": self.entries})
        if self.on_change is not None:
            self.on_change(self.entries)

    def counts(self) -> dict[str, int]:
        return counts_by_reason(self.entries)


def counts_by_reason(entries: list[dict[str, Any]]) -> dict[str, int]:
    """How many recoveries of each kind.

    >>> counts_by_reason([{"reason": "nan"}, {"reason": "oom"}, {"reason": "nan"}])
    {'nan': 2, 'oom': 1}
    """
    out: dict[str, int] = {}
    for entry in entries:
        out[entry["reason"]] = out.get(entry["reason"], 0) + 1
    return out


def read_recoveries(stage_dir: Path) -> list[dict[str, Any]]:
    """A stage folder's recoveries (``recoveries.json``), oldest first; [] when there were none."""
    return list((read_json(Path(stage_dir) / RECOVERIES) or {}).get("recoveries") or [])


def collect_recoveries(stage_dirs: list[Path]) -> list[dict[str, Any]]:
    """Every stage's recoveries, oldest first (what report.json lists)."""
    out = []
    for folder in stage_dirs:
        out.extend(read_recoveries(folder))
    return sorted(out, key=lambda e: e.get("at", ""))


# --- the handler ---------------------------------------------------------------------------------------
@dataclass
class Adjustments:
    """What the next attempt changes: where it resumes, the learning-rate scale, the batch split, and the
    optimiser steps whose batch it skips."""

    resume_from: str | None = None
    lr_scale: float = 1.0
    batch_divisor: int = 1
    skip_steps: set[int] = field(default_factory=set)


class FailureHandler:
    """Run ``attempt(adjustments)`` until it succeeds or a policy gives up.

    ``rollback_point()`` names the newest valid checkpoint (None: the start). Faults the handler does not
    recover from (preemption, disk full, anything else) pass through unchanged.
    """

    def __init__(self, policy: FailurePolicy, log: RecoveryLog, per_device_batch: int):
        self.policy, self.log, self.per_device_batch = policy, log, per_device_batch
        self.nan_rollbacks = 0
        self.oom_halvings = 0

    def run(self, attempt: Callable[[Adjustments], T], rollback_point: Callable[[], str | None],
            resume_from: str | None = None) -> T:
        adjust = Adjustments(resume_from=resume_from)
        while True:
            try:
                return attempt(adjust)
            except NonFiniteError as fault:
                self._after_nan(fault, adjust, rollback_point())
            except Exception as exc:
                if not is_out_of_memory(exc):
                    raise
                self._after_oom(exc, adjust, rollback_point())

    def _after_nan(self, fault: NonFiniteError, adjust: Adjustments, checkpoint: str | None) -> None:
        if self.nan_rollbacks >= self.policy.nan_retries:
            raise RetriesExhausted(f"{fault}; still non-finite after {self.nan_rollbacks} rollback(s) "
                                   f"(failures.nan_retries={self.policy.nan_retries}): lower the learning rate "
                                   "or check the data and reward") from None
        self.nan_rollbacks += 1
        adjust.resume_from = checkpoint
        adjust.lr_scale *= self.policy.lr_factor
        adjust.skip_steps.add(fault.step)
        self.log.record(Recovery("nan", fault.step, attempt=self.nan_rollbacks, action=(
            f"{fault.detail}; rolled back to {checkpoint or 'the start'}, learning rate x{adjust.lr_scale:g}, "
            f"skipping the batch of step {fault.step}")))

    def _after_oom(self, exc: BaseException, adjust: Adjustments, checkpoint: str | None) -> None:
        batch = self.per_device_batch // (adjust.batch_divisor * 2)
        if self.oom_halvings >= self.policy.oom_retries or batch < 1:
            raise RetriesExhausted(f"out of memory ({str(exc).splitlines()[0][:200]}) after {self.oom_halvings} "
                                   f"batch halving(s) (failures.oom_retries={self.policy.oom_retries}); "
                                   "use a smaller model, shorter completions or a larger tier") from None
        _free_accelerator_memory()
        self.oom_halvings += 1
        adjust.batch_divisor *= 2
        adjust.resume_from = checkpoint
        step = getattr(exc, "step", 0)
        self.log.record(Recovery("oom", step, attempt=self.oom_halvings, action=(
            f"per-device batch -> {batch}, gradient accumulation x{adjust.batch_divisor} (same effective "
            f"batch); continuing from {checkpoint or 'the start'}")))


def _free_accelerator_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# --- transient errors from remote endpoints ---------------------------------------------------------------
TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


def backoff_delays(policy: FailurePolicy) -> list[float]:
    """The waits before each retry.

    >>> backoff_delays(FailurePolicy(transient_retries=4, backoff_s=1.0, backoff_max_s=3.0))
    [1.0, 2.0, 3.0, 3.0]
    """
    return [min(policy.backoff_s * 2 ** i, policy.backoff_max_s) for i in range(policy.transient_retries)]


class HTTPStatusFailure(Exception):
    """An HTTP error status from a remote endpoint (a model upstream, a teacher), with the server's
    ``Retry-After`` in seconds when it sent one."""

    def __init__(self, status: int, text: str, retry_after: float | None = None):
        self.status, self.text, self.retry_after = status, text, retry_after
        super().__init__(f"HTTP {status}")


def is_transient_http(exc: BaseException) -> bool:
    """A failure worth retrying: HTTP 408/425/429/5xx, or a connect/read error or timeout (not misuse)."""
    import httpx

    if isinstance(exc, HTTPStatusFailure):
        return exc.status in TRANSIENT_STATUS
    return isinstance(exc, httpx.TransportError)


def retry_after_hint(exc: BaseException) -> float | None:
    """The server's Retry-After of an HTTPStatusFailure (a ``wait_hint`` for the retry functions)."""
    return exc.retry_after if isinstance(exc, HTTPStatusFailure) else None


class TransientFailure(Exception):
    """A remote call still failing after every retry."""


WaitHint = Callable[[BaseException], "float | None"]


def _next_delay(delays: list[float], attempt: int, exc: Exception, what: str,
                is_transient: Callable[[BaseException], bool],
                on_retry: Callable[[int, BaseException], None] | None, wait_hint: WaitHint | None) -> float:
    """How long to wait before retrying after ``exc`` on ``attempt`` (0-based); raises when not to retry.
    ``wait_hint(exc)``, when it gives a number (a server's Retry-After), replaces the backoff wait."""
    if not is_transient(exc):
        raise exc
    if attempt == len(delays):
        raise TransientFailure(f"{what}: still failing after {attempt} retries: {exc}") from exc
    if on_retry is not None:
        on_retry(attempt + 1, exc)
    hinted = wait_hint(exc) if wait_hint is not None else None
    return delays[attempt] if hinted is None else hinted


def retry_transient(call: Callable[[], T], what: str, policy: FailurePolicy,
                    is_transient: Callable[[BaseException], bool], sleep: Callable[[float], None] = time.sleep,
                    on_retry: Callable[[int, BaseException], None] | None = None,
                    wait_hint: WaitHint | None = None) -> T:
    """``call()``, retried with exponential backoff while it fails transiently; then a clear TransientFailure."""
    delays = backoff_delays(policy)
    for attempt in range(len(delays) + 1):
        try:
            return call()
        except Exception as exc:
            sleep(_next_delay(delays, attempt, exc, what, is_transient, on_retry, wait_hint))
    raise AssertionError("unreachable")


async def retry_transient_async(call: Callable[[], Any], what: str, policy: FailurePolicy,
                                 is_transient: Callable[[BaseException], bool],
                                 on_retry: Callable[[int, BaseException], None] | None = None,
                                 wait_hint: WaitHint | None = None) -> Any:
    """The asyncio twin of :func:`retry_transient` (``call`` returns an awaitable)."""
    import asyncio

    delays = backoff_delays(policy)
    for attempt in range(len(delays) + 1):
        try:
            return await call()
        except Exception as exc:
            await asyncio.sleep(_next_delay(delays, attempt, exc, what, is_transient, on_retry, wait_hint))
    raise AssertionError("unreachable")


def recoveries_json(entries: list[dict[str, Any]]) -> str:
    return json.dumps(entries, separators=(",", ":"))
