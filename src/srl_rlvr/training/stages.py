"""Stage runners: build a trainer from files on disk, train (resumably), save a loadable final model.

Every stage writes ``OUT/final`` (a full model folder, or a LoRA adapter folder whose base is recorded)
plus ``OUT/final/srl_rlvr_stage.json`` naming the stage and what it started from, and
``OUT/log_history.json`` (TRL's per-step metrics). RLVR refuses to start from anything but a finished
SRL (or SFT) stage: a missing or incompatible checkpoint is an error, never a silent fallback to the base.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datasets import Dataset

from srl_rlvr.core.io import read_json, sha256_file
from srl_rlvr.data.loaders.jsonl import load_jsonl
from srl_rlvr.data.loaders.registry import load_source
from srl_rlvr.data.srl import SRLBuildConfig, instances_for, trajectory_actions
from srl_rlvr.errors import InvalidRecord, UserInputError
from srl_rlvr.ops.failures import TRAINED_SAMPLES, Adjustments, is_disk_full
from srl_rlvr.prompts import full_problem_messages, normalise_prefill, render_generation_prompt, srl_step_messages
from srl_rlvr.registry.manifest import FINAL, STAGE_MANIFEST, read_manifest, write_manifest
from srl_rlvr.training.callbacks import ReleaseMemoryCallback, add_throughput_callback
from srl_rlvr.training.resilience import (
    MetricsCallback,
    PreemptionCallback,
    RecoveryTagCallback,
    StageGuard,
    disk_full,
    stop_signals,
)
from srl_rlvr.training.rlvr_config import RLVRConfig
from srl_rlvr.training.rlvr_trainer import RLVRTrainer
from srl_rlvr.training.srl_config import SRLConfig
from srl_rlvr.training.srl_trainer import SRLTrainer

INSTANCE_FIELDS = ("prompt", "expert_step")


@dataclass
class StageResult:
    final_dir: Path
    global_step: int
    log_history: list[dict[str, Any]]


# --- data -------------------------------------------------------------------------------------------
def _validate_instance(obj: Any, path: str, line: int) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise InvalidRecord(path, line, "<row>", "expected a JSON object (an SRL instance)")
    for name in INSTANCE_FIELDS:
        if name not in obj:
            raise InvalidRecord(path, line, name, "is required (build instances with `srl-rlvr data build`)")
    if not isinstance(obj["expert_step"], str) or not obj["expert_step"].strip():
        raise InvalidRecord(path, line, "expert_step", "must be a non-empty string")
    prompt = obj["prompt"]
    messages_ok = isinstance(prompt, list) and all(isinstance(m, dict) and isinstance(m.get("content"), str)
                                                   for m in prompt)
    if not messages_ok:
        raise InvalidRecord(path, line, "prompt", "must be a list of chat messages with string content")
    return {"prompt": prompt, "expert_step": obj["expert_step"]}


def _prompt(messages: list[dict[str, Any]], tokenizer, think_prefill: bool | str | None):
    # with a prefill the prompt is rendered text (TRL then uses it as is); otherwise chat messages
    return render_generation_prompt(tokenizer, messages, think_prefill) if think_prefill else messages


def srl_dataset(path: str | Path, tokenizer=None, think_prefill: bool | str | None = False) -> Dataset:
    """SRL instance JSONL → the columns the SRL reward reads."""
    rows = load_jsonl(path, _validate_instance).rows
    if not rows:
        raise UserInputError(f"{path}: no SRL instances")
    for row in rows:
        row["prompt"] = _prompt(row["prompt"], tokenizer, think_prefill)
    return Dataset.from_list(rows)


# a step that only states the answer ("The answer is 48."), with no work of its own
_ANSWER_ONLY = re.compile(r"^\s*the (?:final )?answer is\s*[-\d.,/]+\s*\.?\s*$", re.IGNORECASE)


def rlvr_messages(trajectory, prompt_mode: str = "full") -> list[dict[str, Any]]:
    """The RLVR prompt of one trajectory: the full problem, or (``final_step``) the SRL prompt for the step
    that reaches the answer with the expert's earlier steps given: the last step, or the one before it when
    the last only states the answer ("The answer is 48.", ``data.demo.answer_step``), which is a copy."""
    if prompt_mode == "full":
        return full_problem_messages(trajectory.problem)
    if prompt_mode == "stepwise":  # the first call's prompt; the trainer builds the later ones from its own steps
        return srl_step_messages(trajectory.problem, [], 1)
    if prompt_mode == "final_step":
        # the SRL builder's own prompts, so RLVR and SRL prompts can never drift apart
        instances = instances_for(trajectory, trajectory_actions(trajectory), SRLBuildConfig())
        if len(instances) > 1 and _ANSWER_ONLY.match(instances[-1]["expert_step"]):
            return instances[-2]["prompt"]
        return instances[-1]["prompt"]
    raise ValueError(f"unknown RLVR prompt_mode {prompt_mode!r}")


def rlvr_dataset(path: str | Path, reward: str = "math", tokenizer=None, think_prefill: bool | str | None = False,
                 prompt_mode: str = "full") -> Dataset:
    """Trajectories with answers (or tests) → RLVR prompts (see :func:`rlvr_messages`) plus the reward's column."""
    rows = []
    for t in load_source(str(path)).rows:
        prompt = _prompt(rlvr_messages(t, prompt_mode), tokenizer, think_prefill)
        if reward == "math":
            if t.answer is None:
                raise UserInputError(f"{path}: trajectory {t.id!r} has no 'answer', which RLVR's math reward needs")
            stepwise = ({"problem": t.problem, "expert_steps": [a.text for a in trajectory_actions(t)]}
                        if prompt_mode == "stepwise" else {})
            rows.append({"prompt": prompt, "answer": t.answer, **stepwise})
        else:
            if t.tests is None:
                raise UserInputError(f"{path}: trajectory {t.id!r} has no 'tests', which RLVR's code reward needs")
            rows.append({"prompt": prompt, "tests": t.tests, "entry_point": t.metadata.get("entry_point")})
    if not rows:
        raise UserInputError(f"{path}: no trajectories")
    return Dataset.from_list(rows)


# --- models -------------------------------------------------------------------------------------------
def load_base_policy(model: str):
    """A model name/id/folder → (model, tokenizer) in float32 (mixed precision is the trainer's business)."""
    from srl_rlvr.models import load_model_and_tokenizer

    return load_model_and_tokenizer(model)


def load_stage_checkpoint(folder: str | Path, expect: tuple[str, ...] = ("srl", "sft")):
    """Load a finished stage's final model for further training; raise UserInputError if it is not one.

    A LoRA stage gives back its adapter, trainable, so RLVR keeps training the adapter SRL trained.
    """
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = Path(folder)
    if not folder.is_dir():
        raise UserInputError(f"checkpoint to start from not found: {folder} (run the SRL stage first)")
    manifest = read_manifest(folder)
    if manifest is None:
        raise UserInputError(f"{folder} is not a finished srl-rlvr stage: {STAGE_MANIFEST} is missing")
    if manifest.get("stage") not in expect:
        raise UserInputError(f"{folder} is a {manifest.get('stage')!r} stage; expected one of {list(expect)}")
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
        if (folder / "adapter_config.json").is_file():
            base, _ = load_base_policy(manifest["base_model"])
            model = PeftModel.from_pretrained(base, folder, is_trainable=True)
        else:
            model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise UserInputError(f"cannot load the checkpoint in {folder}: {exc}") from None
    return model, tokenizer, manifest


def peft_config_from(lora: dict[str, Any] | None):
    if not lora:
        return None
    from peft import LoraConfig

    settings = {"r": 16, "lora_alpha": 32, "lora_dropout": 0.0, "target_modules": "all-linear",
                "task_type": "CAUSAL_LM"}
    settings.update(lora)
    return LoraConfig(**settings)


# --- trainers ------------------------------------------------------------------------------------------
def build_srl_trainer(model: str, data: str | Path, args: SRLConfig, lora: dict[str, Any] | None = None,
                      callbacks=None):
    policy, tokenizer = load_base_policy(model)
    dataset = srl_dataset(data, tokenizer, args.think_prefill)
    return SRLTrainer(model=policy, args=args, train_dataset=dataset, processing_class=tokenizer,
                      peft_config=peft_config_from(lora), callbacks=callbacks)


def build_rlvr_trainer(init_from: str | Path, data: str | Path, args: RLVRConfig, callbacks=None,
                       expect: tuple[str, ...] = ("srl", "sft")):
    """RLVR continues from a finished SRL (or SFT) stage's weights: the handoff the paper's result rests on."""
    policy, tokenizer, manifest = load_stage_checkpoint(init_from, expect)
    if args.think_prefill is None:  # the prompt format travels with the model
        args.think_prefill = normalise_prefill(manifest.get("think_prefill", False))
    dataset = rlvr_dataset(data, args.reward, tokenizer, args.think_prefill, args.prompt_mode)
    trainer = RLVRTrainer(model=policy, args=args, train_dataset=dataset,
                          processing_class=tokenizer, callbacks=callbacks)
    trainer.srl_rlvr_init = {"init_from": str(init_from), "base_model": manifest["base_model"]}
    return trainer


def run_stage(make_trainer: Callable[[Any], Any], args: Any, stage: str, base_model: str, resume: bool = False,
              extra: dict[str, Any] | None = None, guard: StageGuard | None = None) -> StageResult:
    """Train (from the newest valid checkpoint when ``resume``), then save ``OUT/final`` with its manifest.

    ``make_trainer(args)`` builds a fresh trainer; the failure handler calls it again for each recovery
    (a NaN rollback, a batch halving), with adjusted copies of ``args`` (see ops/failures.py).
    """
    from srl_rlvr.ops.checkpoints import newest_valid
    from srl_rlvr.ops.failures import FailureHandler, RecoveryLog
    from srl_rlvr.ops.ledger import STARTED

    out = Path(args.output_dir)
    guard = guard or StageGuard(stage)
    guard.config_hash = guard.config_hash or str((read_json(out / STARTED) or {}).get("config_hash", ""))
    guard.log = RecoveryLog(out, stage)
    check = guard.checkpoints.check_finite
    if guard.checkpoints.remote and guard.remote is None:
        from srl_rlvr.ops.remote import RemoteCheckpoints

        guard.remote = RemoteCheckpoints.for_stage(guard.checkpoints, out, guard.config_hash)
    start = newest_valid(out, check_finite=check, config_hash=guard.config_hash or None) if resume else None
    pristine = copy.deepcopy(args)  # trainers mutate their args; every attempt starts from the same ones
    if guard.exporter is None and _is_main_process():
        guard.exporter = _exporter(out, stage, args, guard)
        guard.log.on_change = guard.exporter.set_recoveries
        guard.exporter.set_recoveries(guard.log.entries)

    def attempt(adjust: Adjustments):
        guard.adjust = adjust
        trainer = make_trainer(adjusted_args(pristine, adjust))
        trainer.srl_rlvr_guard = guard
        add_throughput_callback(trainer)
        trainer.add_callback(PreemptionCallback(guard))
        trainer.add_callback(ReleaseMemoryCallback())
        trainer.add_callback(RecoveryTagCallback(guard))
        if guard.exporter is not None:
            trainer.add_callback(MetricsCallback(guard.exporter))
        checkpoint = str(out / adjust.resume_from) if adjust.resume_from else None
        if guard.mlflow_run_id:  # a retry logs into the stage's MLflow run, not a second one
            os.environ["MLFLOW_RUN_ID"] = guard.mlflow_run_id
        try:
            trainer.train(resume_from_checkpoint=checkpoint)
            if guard.stop_signal:
                raise _preempted(trainer, guard, out)
            trainer.assert_finite_weights()  # a NaN in the last steps must not reach final/ either
            return trainer, _save_final(trainer, out, stage, base_model, extra, guard)
        except OSError as exc:
            _close_tracking(trainer)
            if is_disk_full(exc):
                shutil.rmtree(out / FINAL, ignore_errors=True)  # a half-written final is no model
                raise disk_full(trainer.state.global_step, out, exc) from None
            raise
        except BaseException:
            _close_tracking(trainer)
            raise

    def rollback_point() -> str | None:
        found = newest_valid(out, check_finite=check, config_hash=guard.config_hash or None)
        return found.name if found else None

    handler = FailureHandler(guard.failures, guard.log, pristine.per_device_train_batch_size)
    run_id_before = os.environ.get("MLFLOW_RUN_ID")
    try:
        with stop_signals(guard):
            trainer, final = handler.run(attempt, rollback_point, resume_from=start.name if start else None)
    finally:
        if run_id_before is None:
            os.environ.pop("MLFLOW_RUN_ID", None)
        else:
            os.environ["MLFLOW_RUN_ID"] = run_id_before
    return StageResult(final, trainer.state.global_step, list(trainer.state.log_history))


def _is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _exporter(out: Path, stage: str, args: Any, guard: StageGuard):
    """The stage's live metrics (monitoring/training.py): metrics.prom, and a port when monitoring.port is set."""
    from srl_rlvr.monitoring.training import MonitoringSettings, TrainingExporter

    settings = guard.monitoring or MonitoringSettings()
    return TrainingExporter(out, stage, max_steps=int(getattr(args, "max_steps", 0) or 0),
                            price_per_hour=guard.price_per_hour, budget_usd=settings.budget_usd,
                            port=settings.port, textfile=settings.textfile)


def _close_tracking(trainer) -> None:
    """End a failed attempt's MLflow run now, and stop its callback from ending one later (HF's MLflowCallback
    ends the active run when garbage-collected, which would be the retry's); the retry resumes the run."""
    for callback in trainer.callback_handler.callbacks:
        if type(callback).__name__ == "MLflowCallback":
            callback._auto_end_run = False
            mlflow = getattr(callback, "_ml_flow", None)
            if mlflow is not None and mlflow.active_run() is not None:
                mlflow.end_run()


def data_sha256(*paths: str | Path) -> dict[str, str]:
    """File name -> full sha256 of each training data file (the lineage the registry records)."""
    out = {}
    for path in paths:
        if str(path) == "champ" or not Path(path).is_file():
            continue
        out[Path(path).name] = sha256_file(path)
    return out


def adjusted_args(args: Any, adjust: Adjustments) -> Any:
    """A copy of ``args`` with the recoveries applied: learning rate x ``lr_scale``; per-device batch
    ÷ ``batch_divisor`` with accumulation (and GRPO's steps per generation) x it, the same effective batch."""
    new = copy.deepcopy(args)
    new.learning_rate = args.learning_rate * adjust.lr_scale
    if adjust.batch_divisor > 1:
        new.per_device_train_batch_size = args.per_device_train_batch_size // adjust.batch_divisor
        new.gradient_accumulation_steps = args.gradient_accumulation_steps * adjust.batch_divisor
        if getattr(args, "steps_per_generation", None):
            new.steps_per_generation = args.steps_per_generation * adjust.batch_divisor
    return new


def _preempted(trainer, guard: StageGuard, out: Path):
    from srl_rlvr.ops.failures import EXIT_PREEMPTED, Preempted, Recovery

    step = trainer.state.global_step
    guard.log.record(Recovery("sigterm", step, f"{guard.stop_signal}: saved checkpoint-{step}, exited "
                                               f"{EXIT_PREEMPTED} for --resume"))
    return Preempted(f"stopped by {guard.stop_signal} after step {step}; checkpoint-{step} is saved in {out}: "
                     "rerun the same command with --resume")


def _save_final(trainer, out: Path, stage: str, base_model: str, extra: dict[str, Any] | None,
                guard: StageGuard) -> Path:
    final = out / FINAL
    trainer.save_model(str(final))
    if trainer.accelerator.is_main_process:
        trainer.processing_class.save_pretrained(str(final))
        manifest = {"stage": stage, "base_model": base_model, "global_step": trainer.state.global_step,
                    "lora": (final / "adapter_config.json").is_file(),
                    "think_prefill": normalise_prefill(getattr(trainer.args, "think_prefill", False)),
                    # lineage the model registry records (registry/lineage.py)
                    "config_hash": guard.config_hash, "mlflow_run_id": guard.mlflow_run_id or "", **(extra or {})}
        write_manifest(final, manifest)
        history = list(trainer.state.log_history) + [
            {"step": r["step"], "recovery": r["reason"], "action": r["action"]} for r in guard.log.entries]
        history.sort(key=lambda e: (e.get("step", 0), "recovery" in e))
        (out / "log_history.json").write_text(json.dumps(history, indent=1), encoding="utf-8")
        if getattr(trainer, "trained_samples", None) is not None:
            (out / TRAINED_SAMPLES).write_text(json.dumps(trainer.trained_samples), encoding="utf-8")
    return final


def train_srl(model: str, data: str | Path, args: SRLConfig, lora: dict[str, Any] | None = None,
              resume: bool = False, callbacks=None, guard: StageGuard | None = None) -> StageResult:
    """SRL stage: ``model`` is a name (``smollm2-135m``), HF id or folder; ``data`` SRL instance JSONL."""
    from srl_rlvr.models import resolve_model

    base = resolve_model(model)
    return run_stage(lambda a: build_srl_trainer(base, data, a, lora, callbacks), args, "srl", base, resume,
                     extra={"data_sha256": data_sha256(data)}, guard=guard)


def train_rlvr(init_from: str | Path, data: str | Path, args: RLVRConfig, resume: bool = False, callbacks=None,
               expect: tuple[str, ...] = ("srl", "sft"), guard: StageGuard | None = None) -> StageResult:
    """RLVR stage from a finished SRL/SFT stage folder (``OUT/final``); ``data`` trajectories with answers."""
    if not Path(init_from).is_dir():
        raise UserInputError(f"checkpoint to start from not found: {init_from} (run the SRL stage first)")
    manifest = read_manifest(Path(init_from))
    if manifest is None:  # checked again by load_stage_checkpoint; here so the base model is known up front
        raise UserInputError(f"{init_from} is not a finished srl-rlvr stage: {STAGE_MANIFEST} is missing")
    return run_stage(lambda a: build_rlvr_trainer(init_from, data, a, callbacks, expect), args, "rlvr",
                     manifest.get("base_model", ""), resume, guard=guard,
                     extra={"init_from": str(init_from), "data_sha256": {**manifest.get("data_sha256", {}),
                                                                        **data_sha256(data)}})
