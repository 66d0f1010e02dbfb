"""Fault tolerance inside the trainer: marked atomic checkpoints, NaN/Inf guards, preemption, injected
faults and the state that makes a resumed run train exactly what an uninterrupted one would.

    srl-rlvr train srl --model TINY --data srl.jsonl --out runs/srl --set max_steps=6 --inject-fault sigterm@3
    srl-rlvr train srl --model TINY --data srl.jsonl --out runs/srl --set max_steps=6 --resume

:class:`ResilienceMixin` goes first in a HF/TRL trainer's bases. The policies (rollback, batch halving,
exit codes) live in :mod:`srl_rlvr.ops.failures`; the checkpoint format in :mod:`srl_rlvr.ops.checkpoints`;
:func:`srl_rlvr.training.stages.run_stage` drives the attempts.

What a resumed run restores besides HF's own state (weights, optimizer, scheduler, python/numpy/torch
RNG): TRL's micro-step counter, the refill sampler's epoch and position, and the ids of the samples
trained so far (``srl_rlvr_state.json`` in each checkpoint).
"""

from __future__ import annotations

import errno
import json
import math
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

from srl_rlvr.core.console import say
from srl_rlvr.ops.checkpoints import CheckpointSettings, clear_staging, commit, rotate, staging_dir
from srl_rlvr.ops.failures import (
    Adjustments,
    DiskFull,
    FailurePolicy,
    FaultPlan,
    NonFiniteError,
    RecoveryLog,
    is_disk_full,
)

RESUME_STATE = "srl_rlvr_state.json"


@dataclass
class StageGuard:
    """What one stage's trainers share: settings, the injected fault, the recovery log, a stop request."""

    stage: str
    checkpoints: CheckpointSettings = field(default_factory=CheckpointSettings)
    failures: FailurePolicy = field(default_factory=FailurePolicy)
    fault: FaultPlan | None = None
    config_hash: str = ""  # the ledger's hash of the stage config, recorded in every COMPLETE marker
    log: RecoveryLog | None = None
    adjust: Adjustments = field(default_factory=Adjustments)
    stop_signal: str | None = None
    remote: Any = None  # ops.remote.RemoteCheckpoints when checkpoints.remote is set
    mlflow_run_id: str | None = None  # the stage's MLflow run, which a retry keeps logging into
    monitoring: Any = None  # monitoring.training.MonitoringSettings (None: defaults)
    price_per_hour: float = 0.0  # the tier's, for the cost gauges
    exporter: Any = None  # monitoring.training.TrainingExporter, made by run_stage


def disk_full(step: int, where: Path, exc: OSError) -> DiskFull:
    return DiskFull(f"disk full while saving step {step} in {where} ({exc.strerror or exc}); nothing half-written "
                    "was left behind: free space, then rerun with --resume")


class ResilienceMixin:
    """Mix in first: ``class T(ResilienceMixin, ..., GRPOTrainer)``. Reads ``self.srl_rlvr_guard``."""

    srl_rlvr_guard: StageGuard | None = None
    _staging_output: Path | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if hasattr(self, "reward_funcs"):  # GRPO: a reward that returns NaN/Inf is a fault, not a score
            self.reward_funcs = [f if isinstance(f, torch.nn.Module) else _finite_reward(f, self)
                                 for f in self.reward_funcs]

    # --- helpers -------------------------------------------------------------------------------------
    @property
    def guard(self) -> StageGuard:
        if self.srl_rlvr_guard is None:
            self.srl_rlvr_guard = StageGuard("train")
        return self.srl_rlvr_guard

    def step_in_progress(self) -> int:
        return self.state.global_step + 1

    def _fault_due(self, kind: str, step: int | None = None) -> bool:
        fault = self.guard.fault
        return fault is not None and fault.due(kind, self.step_in_progress() if step is None else step)

    def assert_finite_weights(self) -> None:
        for name, param in self.model.named_parameters():
            if not bool(torch.isfinite(param.detach()).all()):
                raise NonFiniteError(self.state.global_step, f"weight {name} holds NaN or Inf")

    # --- the training step ---------------------------------------------------------------------------
    def training_step(self, model, inputs, num_items_in_batch=None):
        step = self.step_in_progress()
        if step in self.guard.adjust.skip_steps:
            # the batch that produced a NaN: no forward, no backward, so no gradient and AdamW leaves every
            # parameter alone; TRL's micro-step counter still advances to keep its generation schedule
            if hasattr(self, "_step"):
                self._step += 1
            return torch.zeros((), device=self.args.device)
        if self._fault_due("sigterm", step):
            os.kill(os.getpid(), signal.SIGTERM)
        if self._fault_due("oom", step):
            error = torch.OutOfMemoryError(f"CUDA out of memory (injected by --inject-fault oom@{step})")
            error.step = step
            raise error
        try:
            loss = super().training_step(model, inputs, num_items_in_batch)
        except torch.OutOfMemoryError as exc:
            exc.step = step
            raise
        if not bool(torch.isfinite(loss.detach()).all()):
            raise NonFiniteError(step, f"loss is {float(loss.detach().float().mean())}")
        return loss

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        result = super().compute_loss(model, inputs, return_outputs=return_outputs,
                                      num_items_in_batch=num_items_in_batch)
        if self._fault_due("nan"):  # a real NaN: it goes through backward into the gradients
            if return_outputs:
                return result[0] * float("nan"), result[1]
            return result * float("nan")
        return result

    def _get_grad_norm(self, model, grad_norm=None):
        value = super()._get_grad_norm(model, grad_norm=grad_norm)
        if value is not None and not math.isfinite(float(value)):
            raise NonFiniteError(self.step_in_progress(), f"gradient norm is {float(value)}")
        return value

    # --- checkpoints ---------------------------------------------------------------------------------
    def _get_output_dir(self, trial):
        if self._staging_output is not None:  # HF's save writes run_dir/checkpoint-N: make that the staging
            return str(self._staging_output)
        return super()._get_output_dir(trial)

    def _save_checkpoint(self, model, trial):
        step = self.state.global_step
        self.assert_finite_weights()  # never save a non-finite checkpoint
        out = Path(super()._get_output_dir(trial))
        staging = staging_dir(out)
        if self.args.should_save:
            clear_staging(out)
        limit = self.args.save_total_limit
        self.args.save_total_limit = None  # rotation is ours: never the newest valid or the best one
        self._staging_output = staging
        try:
            super()._save_checkpoint(model, trial)
            if self.args.should_save:
                staged = staging / f"checkpoint-{step}"
                self._save_resume_state(staged)
                path = commit(staged, out, self.guard.config_hash, self._step_metrics(step))
        except OSError as exc:
            if is_disk_full(exc):
                clear_staging(out)
                raise disk_full(step, out, exc) from None
            raise
        finally:
            self.args.save_total_limit = limit
            self._staging_output = None
        if not self.args.should_save:
            return
        settings = self.guard.checkpoints
        if self.guard.remote is not None:
            self.guard.remote.upload(path)
        removed = rotate(out, settings.keep or limit, settings.best_metric, settings.greater_is_better)
        if self.guard.remote is not None:
            for gone in removed:
                self.guard.remote.delete(gone.name)

    def _save_optimizer_and_scheduler(self, output_dir):
        super()._save_optimizer_and_scheduler(output_dir)
        step = self.state.global_step
        if self._fault_due("kill", step):  # kill -9 in the middle of the save: model and optimizer written, rest not
            os.kill(os.getpid(), signal.SIGKILL)
        if self._fault_due("enospc", step):
            raise OSError(errno.ENOSPC, f"No space left on device (injected by --inject-fault enospc@{step})",
                          output_dir)

    def _step_metrics(self, step: int) -> dict[str, float]:
        for entry in reversed(self.state.log_history):
            if entry.get("step") == step:
                return {k: v for k, v in entry.items() if isinstance(v, (int, float)) and k != "step"}
        return {}

    def _save_resume_state(self, folder: Path) -> None:
        state = {"trl_step": getattr(self, "_step", None),
                 "refill": self.refill_state() if hasattr(self, "refill_state") else None,
                 "trained_samples": getattr(self, "trained_samples", None)}
        (folder / RESUME_STATE).write_text(json.dumps(state), encoding="utf-8")

    def _load_optimizer_and_scheduler(self, checkpoint):
        super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint is None:
            return
        state_file = Path(checkpoint) / RESUME_STATE
        if state_file.is_file():
            state = json.loads(state_file.read_text(encoding="utf-8"))
            if state.get("trl_step") is not None and hasattr(self, "_step"):
                self._step = int(state["trl_step"])
            if state.get("refill") is not None and hasattr(self, "load_refill_state"):
                self.load_refill_state(state["refill"])
            if state.get("trained_samples") is not None and hasattr(self, "trained_samples"):
                self.trained_samples = list(state["trained_samples"])
        if self.guard.adjust.lr_scale != 1.0:
            self._rescale_learning_rate(self.args.learning_rate)

    def _rescale_learning_rate(self, target: float) -> None:
        """After a NaN rollback: the checkpoint's scheduler carries the old base rate; make it ``target``."""
        scheduler = self.lr_scheduler
        bases = list(getattr(scheduler, "base_lrs", []))
        for index, group in enumerate(self.optimizer.param_groups):
            base = bases[index] if index < len(bases) else group.get("initial_lr", group["lr"])
            ratio = target / base if base else 1.0
            group["lr"] *= ratio
            group["initial_lr"] = target
        if bases:
            scheduler.base_lrs = [target] * len(bases)
        say(f"  learning rate now {target:g} (rolled back)")


def _finite_reward(func, trainer: ResilienceMixin):
    def checked(*args: Any, **kwargs: Any):
        values = func(*args, **kwargs)
        for value in values or []:
            if value is not None and not math.isfinite(float(value)):
                raise NonFiniteError(trainer.step_in_progress(),
                                     f"reward {getattr(func, '__name__', 'reward')} returned {value}")
        return values

    checked.__name__ = getattr(func, "__name__", "reward")
    return checked


class PreemptionCallback(TrainerCallback):
    """On SIGTERM/SIGINT: finish the step, save a complete checkpoint, stop (the stage then exits 75)."""

    def __init__(self, guard: StageGuard):
        self.guard = guard

    def on_step_end(self, args, state, control, **kwargs):
        if self.guard.stop_signal:
            control.should_save = True
            control.should_training_stop = True
        return control


class MetricsCallback(TrainerCallback):
    """Feeds the stage's TrainingExporter (metrics.prom, and the port when configured) on every log and save."""

    def __init__(self, exporter: Any):
        self.exporter = exporter

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero and state.max_steps > 0:  # an epoch-based run knows it only now
            self.exporter.set_max_steps(state.max_steps)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and state.is_world_process_zero:
            self.exporter.on_log(state.global_step, logs)

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.exporter.on_checkpoint()


class RecoveryTagCallback(TrainerCallback):
    """The recoveries so far as MLflow tags on the run the trainer's MLflow callback opened; remembers that
    run so a retry continues it (run_stage sets ``MLFLOW_RUN_ID``, which HF's MLflow callback honours)."""

    def __init__(self, guard: StageGuard):
        self.guard = guard
        self.tagged = -1

    def _tag(self) -> None:
        log = self.guard.log
        if log is None or (len(log.entries) == self.tagged and self.guard.mlflow_run_id):
            return
        try:
            import mlflow
        except ImportError:
            return
        if mlflow.active_run() is None:
            return
        self.guard.mlflow_run_id = mlflow.active_run().info.run_id
        from srl_rlvr.ops.failures import recoveries_json

        mlflow.set_tags({"srl_rlvr.recoveries": str(len(log.entries)),
                         "srl_rlvr.recoveries.detail": recoveries_json(log.entries)[:5000],
                         **{f"srl_rlvr.recoveries.{k}": str(v) for k, v in log.counts().items()}})
        self.tagged = len(log.entries)

    def on_train_begin(self, args, state, control, **kwargs):
        self._tag()

    def on_step_end(self, args, state, control, **kwargs):
        self._tag()


@contextmanager
def stop_signals(guard: StageGuard) -> Iterator[None]:
    """SIGTERM and SIGINT request a save-and-stop at the next step boundary; a second one acts as usual."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}

    def request_stop(signum, _frame):
        guard.stop_signal = signal.Signals(signum).name
        say(f"{guard.stop_signal}: saving a checkpoint at the end of this step, then stopping (resume with --resume)")
        signal.signal(signum, previous[signum])

    for sig in previous:
        signal.signal(sig, request_stop)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
