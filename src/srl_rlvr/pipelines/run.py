"""The pipeline: data → SRL → RLVR (→ SFT baseline) → eval → report, each stage feeding the next.

    srl-rlvr run configs/demo-cpu.yaml --out out/demo [--resume] [--only srl,rlvr] [--set srl.max_steps=5]

Layout of OUT::

    data/            train.jsonl, test.jsonl, dev.jsonl, transfer.jsonl (trajectory format; the demo writes all
                     four, other data the ones configured), srl_train.jsonl (SRL instances)
    srl/ rlvr/ sft/  checkpoint-*/, final/ (loadable model + srl_rlvr_stage.json), log_history.json, _DONE.json
    eval/<set>/<label>/  metrics.json, predictions.jsonl, _DONE.json  (set: eval.sets; label: base, srl, srl_rlvr, sft)
    models/          srl/, srl_rlvr/: copies of the finals (hard links where the filesystem allows)
    report.json, report.md, reward_curves.png, accuracy.png, config.yaml (the merged config)

Reruns are incremental: a stage whose ``_DONE.json`` records the same config hash is skipped; a changed
config, changed data or changed upstream *weights* (the digest of ``final/`` its ``_DONE.json`` records)
re-runs it, so a retrained SRL reruns RLVR and the evals even when no config changed. A stage that was
interrupted starts over, unless ``resume`` is set, in which case it continues from its last complete
``checkpoint-*``.

Under a distributed launch (``accelerate launch``/``torchrun`` start this in every process) all ranks
train, but only the main process writes OUT's bookkeeping, data, eval, report and model copies; the
others wait at barriers and read its decisions from disk, so OUT must be on a file system all nodes see.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import yaml

from srl_rlvr.core.console import Ranks, rule, say
from srl_rlvr.core.io import link_or_copy, read_json
from srl_rlvr.errors import UserInputError
from srl_rlvr.ops.failures import FaultPlan
from srl_rlvr.ops.ledger import DONE, StepOutcome, config_hash, run_step, upstream_identity
from srl_rlvr.ops.tracking import tracking_args
from srl_rlvr.pipelines.config import PipelineConfig
from srl_rlvr.pipelines.data import DataFiles, prepare_data, read_trajectories
from srl_rlvr.registry.manifest import FINAL, STAGE_MANIFEST
from srl_rlvr.training.stages import train_rlvr, train_srl

MODEL_LABEL_STAGE = {"srl": "srl", "srl_rlvr": "rlvr", "sft": "sft"}  # eval label → stage whose final it is


# --- stages --------------------------------------------------------------------------------------------
def rlvr_source_stage(config: PipelineConfig) -> str:
    """RLVR starts from the last SRL/SFT stage listed before it (SRL when none is)."""
    before = config.stages[: config.stages.index("rlvr")] if "rlvr" in config.stages else []
    sources = [s for s in before if s in ("srl", "sft")]
    return sources[-1] if sources else "srl"


def _run_srl(config: PipelineConfig, out_dir: Path, data: DataFiles, resume: bool, ranks: Ranks,
             fault: FaultPlan | None = None) -> StepOutcome:
    out = out_dir / "srl"
    payload = {"model": config.model, "srl": config.srl, "lora": config.lora, "data": data.digests["srl_train.jsonl"]}

    def work(resuming: bool) -> int:
        args = config.srl_args(out, **tracking_args(config, out_dir, "srl"))
        return train_srl(config.model, data.srl_train, args, lora=config.lora, resume=resuming,
                         guard=guard).global_step

    guard = config.stage_guard("srl", fault)
    return run_step("srl", out, payload, work, resume=resume, ranks=ranks, checkpoints=guard.checkpoints)


def _run_rlvr(config: PipelineConfig, out_dir: Path, data: DataFiles, resume: bool, ranks: Ranks,
              fault: FaultPlan | None = None) -> StepOutcome:
    source = rlvr_source_stage(config)
    init_from = out_dir / source / FINAL
    out = out_dir / "rlvr"
    payload = {"rlvr": config.rlvr, "init_from": source, "upstream": upstream_identity(out_dir / source),
               "data": data.digests["train.jsonl"]}
    if not (init_from / STAGE_MANIFEST).is_file() and not _same(out, payload):
        # Loud, before anything is touched: RLVR must never quietly train the base model instead.
        raise UserInputError(f"rlvr starts from {init_from}, which is missing or unfinished; "
                             f"run the {source} stage first (srl-rlvr run CONFIG --only {source})")

    def work(resuming: bool) -> int:
        args = config.rlvr_args(out, **tracking_args(config, out_dir, "rlvr"))
        return train_rlvr(init_from, data.train, args, resume=resuming, guard=guard).global_step

    guard = config.stage_guard("rlvr", fault)
    return run_step("rlvr", out, payload, work, resume=resume, ranks=ranks, checkpoints=guard.checkpoints)


def _same(out: Path, payload: dict[str, Any]) -> bool:
    done = read_json(out / DONE) or {}
    return done.get("config_hash") == config_hash(payload) and (out / FINAL).exists()


def _run_sft(config: PipelineConfig, out_dir: Path, data: DataFiles, resume: bool, ranks: Ranks,
             fault: FaultPlan | None = None) -> StepOutcome:
    try:
        from srl_rlvr.training.sft import train_sft
    except ImportError:
        raise UserInputError("the sft stage is not available in this build "
                             "(srl_rlvr.training.sft is missing)") from None
    out = out_dir / "sft"
    payload = {"model": config.model, "sft": config.sft, "lora": config.lora, "data": data.digests["train.jsonl"]}

    def work(resuming: bool) -> int | None:
        args = config.sft_args(out, **tracking_args(config, out_dir, "sft"))
        final = train_sft(config.model, data.train, out, args, lora=config.lora, resume=resuming, guard=guard)
        return (read_json(Path(final) / STAGE_MANIFEST) or {}).get("global_step")

    guard = config.stage_guard("sft", fault)
    return run_step("sft", out, payload, work, resume=resume, ranks=ranks, checkpoints=guard.checkpoints)


def eval_model_path(config: PipelineConfig, out_dir: Path, label: str) -> str:
    if label == "base":
        from srl_rlvr.models import resolve_model

        return resolve_model(config.model)
    final = out_dir / MODEL_LABEL_STAGE[label] / FINAL
    if not (final / STAGE_MANIFEST).is_file():
        stage = MODEL_LABEL_STAGE[label]
        raise UserInputError(f"eval model '{label}' is {final}, which is missing; run the {stage} stage first")
    return str(final)


def _run_eval(config: PipelineConfig, out_dir: Path, data: DataFiles, ranks: Ranks) -> StepOutcome:
    """Evaluate each model on each eval set (OUT/eval/<set>/<label>), in the main process only."""
    from srl_rlvr.eval import harness

    if not ranks.is_main:
        return StepOutcome("eval", True, 0.0)
    paths = {name: data.eval_set(name) for name in config.eval.sets}  # a set without data: an error before any eval
    eval_config = config.eval.eval_config()
    seconds, ran = 0.0, False
    for set_name, path in paths.items():
        for label in config.eval.models:
            model = eval_model_path(config, out_dir, label)
            identity = config.model if label == "base" else upstream_identity(out_dir / MODEL_LABEL_STAGE[label])
            payload = {"eval": config.eval.settings, "model": identity, "data": data.digests[path.name]}
            target = eval_dir(out_dir, set_name, label)

            def work(_resuming: bool, model: str = model, target: Path = target, label: str = label,
                     path: Path = path, set_name: str = set_name) -> None:
                say(f"eval {label} on {set_name}: {model}")
                result = harness.evaluate(model, read_trajectories(path), eval_config)
                harness.write_eval_outputs(result, target)
                m = result.metrics
                say(f"eval {label} on {set_name}: greedy accuracy {m.get('greedy_accuracy', float('nan')):.3f} "
                    f"on n={m.get('n')}")

            outcome = run_step(f"eval {label} on {set_name}", target, payload, work, artifact="metrics.json",
                               resumable=False)
            ran = ran or not outcome.skipped
            seconds += outcome.seconds  # a skipped model counts the time its recorded run took
    return StepOutcome("eval", not ran, seconds)


def eval_dir(out_dir: Path, set_name: str, label: str) -> Path:
    return out_dir / "eval" / set_name / label


# --- models ----------------------------------------------------------------------------------------------
def publish_models(out_dir: Path) -> dict[str, str]:
    """Copy each finished final to OUT/models/<label> (loadable with ``srl-rlvr eval --model``)."""
    published = {}
    for label, stage in MODEL_LABEL_STAGE.items():
        final = out_dir / stage / FINAL
        if not (final / STAGE_MANIFEST).is_file():
            continue
        target = out_dir / "models" / label
        tmp = target.with_name(f".{label}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(final, tmp, copy_function=link_or_copy)
        shutil.rmtree(target, ignore_errors=True)
        tmp.replace(target)
        published[label] = str(target)
    return published


# --- the pipeline ----------------------------------------------------------------------------------------
STAGE_RUNNERS = {"srl": _run_srl, "rlvr": _run_rlvr, "sft": _run_sft}


def _selected(config: PipelineConfig, only: list[str] | None) -> list[str]:
    if not only:
        return list(config.stages)
    unknown = [s for s in only if s not in config.stages]
    if unknown:
        raise UserInputError(f"--only {','.join(unknown)}: not in this config's stages {config.stages}")
    return [s for s in config.stages if s in only]


def run_pipeline(config: PipelineConfig, out_dir: str | Path, resume: bool = False, only: list[str] | None = None,
                 command: str | None = None, fault: FaultPlan | None = None) -> dict[str, Any]:
    """Run the configured stages into ``out_dir``; write and return the report (``OUT/report.json``).

    ``fault`` (``--inject-fault KIND@STEP``) fires once, in the first training stage that reaches STEP.

    In a distributed launch only the main process returns the report; the others return ``{}``.
    """
    from srl_rlvr.pipelines import report

    out = Path(out_dir)
    stages = _selected(config, only)
    ranks = Ranks()
    if ranks.is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False), encoding="utf-8")
    command = command or (f"srl-rlvr run {config.source} --out {out}" if config.source
                          else f"run_pipeline(out_dir={out})")
    timings: dict[str, float] = {}

    rule("data")
    started = time.perf_counter()
    data = prepare_data(config, out, need_test="eval" in config.stages, ranks=ranks)
    timings["data"] = round(time.perf_counter() - started, 2)

    for stage in stages:
        rule(stage)
        if stage == "eval":
            outcome = _run_eval(config, out, data, ranks)
        else:
            outcome = STAGE_RUNNERS[stage](config, out, data, resume, ranks, fault)
        timings[stage] = round(outcome.seconds, 2)
        if not outcome.skipped:
            step = f", global step {outcome.global_step}" if outcome.global_step is not None else ""
            say(f"{stage} finished in {outcome.seconds:.1f}s{step}")

    if not ranks.is_main:
        return {}  # the report is the main process's job
    rule("report")
    models = publish_models(out)
    if "eval" in stages:  # register what was evaluated (pipelines/register.py); the report shows it
        from srl_rlvr.pipelines.register import register_run

        base = eval_model_path(config, out, "base") if "base" in config.eval.models else None
        register_run(config, out, models, base)
    result = report.write_report(out, config, timings=timings, command=command, models=models)
    say(f"report: {out / 'report.md'}")
    for label, path in models.items():
        say(f"model {label}: {path}")
    return result
