"""The paper's comparison at small scale: six arms trained on the same data, evaluated on the same problems.

    srl-rlvr compare configs/compare-cpu.yaml --out out/compare [--docs docs/results.md] [--set rlvr.max_steps=4]

Arms (rows of the paper's Table 1, plus SFT→RLVR); S = ``srl.max_steps``, R = ``rlvr.max_steps``:

=========  ========================================  ===============================================
arm        stages (optimiser steps)                  starts from
=========  ========================================  ===============================================
base       none                                      the base model
sft        SFT (S+R)                                 base
rlvr       RLVR (S+R)                                base, by the explicit ``init_from: base`` below
srl        SRL (S+R)                                 base
srl_rlvr   SRL (S), then RLVR (R)                    base, then the SRL stage's final
sft_rlvr   SFT (S), then RLVR (R)                    base, then the SFT stage's final
=========  ========================================  ===============================================

Equal budgets are counted in optimiser steps: every trained arm runs S+R of them, and the two-stage
arms split them the same way. The report also states each arm's generated tokens (rollout completions:
TRL's logged ``completions/mean_length`` × completions generated per step, dynamic-sampling refills
included; SFT generates none) and processed tokens (TRL's ``num_tokens``: prompt + completion tokens
the optimiser saw), because one SFT step and one RL step cost very different amounts.

RLVR from the base model is refused by the pipeline on purpose (RLVR must never quietly start from the
base instead of SRL). The RLVR arm asks for it by name: it writes ``arms/rlvr/base_init/final``, the
base weights (hard links) or, with LoRA, a fresh zero-effect adapter, with a stage manifest saying
``stage: base``, and calls :func:`~srl_rlvr.training.stages.train_rlvr` with ``expect=("base",)``;
nothing else accepts such a folder. Its manifest sets ``think_prefill`` to ``srl.think_prefill`` so
both RLVR runs prompt alike and differ only in their starting weights.

Config: any pipeline config (``tier``, ``model``, ``data``, ``srl``, ``rlvr``, ``sft``, ``lora``, ``eval``)
plus a ``compare`` section (``stages`` and ``eval.models`` are not used)::

    compare:
      arms: [base, sft, rlvr, srl, srl_rlvr, sft_rlvr]     # default: all six, in this order
      eval_data:                                          # more eval sets besides the test split
        champ: champ                                      # 'champ', a file, or {path, format, limit}
        aime25: {path: data/aime25.jsonl, format: aime25, limit: 30}
      docs: docs/results.md                               # same as --docs
      test_name: test                                     # label of the config's own test split

Layout of OUT::

    data/                     train/test/srl_train.jsonl, eval_<set>.jsonl (scored rows), eval_<set>.skipped.jsonl
    arms/<arm>/<stage>/       final/ (loadable by `srl-rlvr eval --model`), log_history.json, _DONE.json
    arms/rlvr/base_init/      final/: the base model as the RLVR arm's explicit starting point
    arms/<arm>/eval/<set>/    metrics.json, predictions.jsonl, eval_run.json, _DONE.json
    compare.json, compare.md, compare_reward_curves.png, compare_accuracy.png, config.yaml

Reruns skip every stage and eval whose ``_DONE.json`` records the same config hash (the pipeline's
bookkeeping, :func:`srl_rlvr.pipelines.run.run_step`); a change re-runs it and what depends on it.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from srl_rlvr.core.console import rule, say
from srl_rlvr.core.io import file_digest, link_or_copy, read_json, write_json
from srl_rlvr.errors import UserInputError
from srl_rlvr.ops.ledger import DONE, run_step, upstream_identity
from srl_rlvr.ops.tracking import tracking_args
from srl_rlvr.pipelines.compare.report import (
    PLOTS,
    plot_accuracy,
    plot_reward_curves,
    render_markdown,
    render_table,
    update_docs,
)
from srl_rlvr.pipelines.config import PipelineConfig
from srl_rlvr.pipelines.data import prepare_data
from srl_rlvr.prompts import normalise_prefill
from srl_rlvr.registry.manifest import FINAL, STAGE_MANIFEST
from srl_rlvr.training.stages import train_rlvr, train_srl

ARMS = ("base", "sft", "rlvr", "srl", "srl_rlvr", "sft_rlvr")
ARM_TITLES = {"base": "Base", "sft": "SFT", "rlvr": "RLVR", "srl": "SRL", "srl_rlvr": "SRL→RLVR",
              "sft_rlvr": "SFT→RLVR"}
STAGE_TITLES = {"srl": "SRL", "rlvr": "RLVR", "sft": "SFT"}
TEST_SET = "test"  # the config's own test split (data.test or the demo's)
BASE_INIT = "base_init"
SECTION_KEYS = ("arms", "eval_data", "docs", "test_name")
EVAL_SOURCE_KEYS = ("path", "format", "limit")


def train_sft(*args: Any, **kwargs: Any) -> Path:
    """:func:`srl_rlvr.training.sft.train_sft`, imported on first use (a module attribute tests can replace)."""
    from srl_rlvr.training.sft import train_sft as real

    return real(*args, **kwargs)


# --- settings ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EvalSource:
    source: str  # a file, or "champ"
    format: str = "auto"
    limit: int | None = None  # first N scorable problems (default: eval.limit)


@dataclass
class CompareSettings:
    arms: list[str] = field(default_factory=lambda: list(ARMS))
    eval_data: dict[str, EvalSource] = field(default_factory=dict)
    docs: str | None = None
    test_name: str = TEST_SET  # the column label of the config's own test split


def compare_settings(config: PipelineConfig, cli_overrides: dict[str, Any] | None = None) -> CompareSettings:
    """Check the config's ``compare`` section. File paths in it are relative to the config file's folder,
    except those given with ``--set`` (``cli_overrides``), which are relative to the working directory."""
    from srl_rlvr.core.yamlconf import expand_dotted

    raw = config.raw.get("compare") or {}
    given = expand_dotted(cli_overrides or {}).get("compare") or {}
    given = given if isinstance(given, dict) else {}

    def origin(key: str) -> str:  # where a bad value came from: --set, or the config file
        return "--set" if key in given else (config.source or "--set")

    if not isinstance(raw, dict):
        raise UserInputError(f"{origin('compare')}: 'compare' must be a mapping")
    for key in raw:
        if key not in SECTION_KEYS:
            raise UserInputError(f"{origin(key)}: section 'compare': unknown key '{key}'; "
                                 f"choose from {', '.join(SECTION_KEYS)}")
    cli_sets = set(given.get("eval_data") or {})
    cli_docs = "docs" in given
    base = Path(config.source).resolve().parent if config.source else Path.cwd()

    arms = raw.get("arms", list(ARMS))
    if not isinstance(arms, list) or not arms:
        raise UserInputError(f"{origin('arms')}: 'compare.arms' must be a non-empty list of {', '.join(ARMS)}")
    for arm in arms:
        if arm not in ARMS:
            raise UserInputError(f"{origin('arms')}: 'compare.arms': unknown arm {arm!r}; "
                                 f"choose from {', '.join(ARMS)}")
    if len(set(arms)) != len(arms):
        raise UserInputError(f"{origin('arms')}: 'compare.arms' lists an arm twice: {arms}")

    test_name = raw.get("test_name", TEST_SET)
    if not _good_set_name(test_name):
        raise UserInputError(f"{origin('test_name')}: 'compare.test_name' must be a name of letters, digits, - and _, "
                             f"got {test_name!r}")
    eval_data: dict[str, EvalSource] = {}
    for name, spec in (raw.get("eval_data") or {}).items():
        if not _good_set_name(name) or name == test_name:
            raise UserInputError(f"{origin('eval_data')}: 'compare.eval_data': bad set name {name!r} "
                                 f"(letters, digits, - and _; '{test_name}' is the config's own test split)")
        if isinstance(spec, str):
            spec = {"path": spec}
        if not isinstance(spec, dict) or not isinstance(spec.get("path"), str):
            raise UserInputError(f"{origin('eval_data')}: 'compare.eval_data.{name}' must be a path, 'champ', "
                                 "or {path, format, limit}")
        unknown = [k for k in spec if k not in EVAL_SOURCE_KEYS]
        if unknown:
            raise UserInputError(f"{origin('eval_data')}: 'compare.eval_data.{name}': unknown key '{unknown[0]}'; "
                                 f"choose from {', '.join(EVAL_SOURCE_KEYS)}")
        limit = spec.get("limit")
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise UserInputError(f"{origin('eval_data')}: 'compare.eval_data.{name}.limit' must be a positive "
                                 f"integer, got {limit!r}")
        path = spec["path"]
        if path != "champ":
            path = str((Path.cwd() if name in cli_sets else base).joinpath(Path(path).expanduser()).resolve())
        eval_data[name] = EvalSource(path, str(spec.get("format", "auto")), limit)

    docs = raw.get("docs")
    if docs is not None and not isinstance(docs, str):
        raise UserInputError(f"{origin('docs')}: 'compare.docs' must be a file path")
    if docs is not None:
        docs = str((Path.cwd() if cli_docs else base).joinpath(Path(docs).expanduser()).resolve())
    return CompareSettings(arms=list(arms), eval_data=eval_data, docs=docs, test_name=test_name)


def _good_set_name(name: Any) -> bool:
    return isinstance(name, str) and bool(name) and name.replace("_", "").replace("-", "").isalnum()


# --- the plan ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StagePlan:
    kind: str  # "srl" | "sft" | "rlvr"
    steps: int
    init_from: str | None = None  # rlvr: "base", or the kind of this arm's previous stage


def budget_steps(config: PipelineConfig) -> tuple[int, int]:
    """(S, R): ``srl.max_steps`` and ``rlvr.max_steps``, which every budget is counted in."""
    where = config.source or "--set"
    out = []
    for section in ("srl", "rlvr"):
        steps = getattr(config, section).get("max_steps")
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise UserInputError(f"{where}: compare counts budgets in optimiser steps, "
                                 f"so '{section}.max_steps' must be "
                                 f"a positive integer (got {steps!r}); set it, e.g. --set {section}.max_steps=2")
        out.append(steps)
    return out[0], out[1]


def plan_arms(srl_steps: int, rlvr_steps: int) -> dict[str, list[StagePlan]]:
    """Each arm's stages; every trained arm gets ``srl_steps + rlvr_steps`` optimiser steps."""
    total = srl_steps + rlvr_steps
    return {
        "base": [],
        "sft": [StagePlan("sft", total)],
        "rlvr": [StagePlan("rlvr", total, init_from="base")],
        "srl": [StagePlan("srl", total)],
        "srl_rlvr": [StagePlan("srl", srl_steps), StagePlan("rlvr", rlvr_steps, init_from="srl")],
        "sft_rlvr": [StagePlan("sft", srl_steps), StagePlan("rlvr", rlvr_steps, init_from="sft")],
    }


def stage_args(config: PipelineConfig, kind: str, output_dir: Path, steps: int, **extra: Any) -> Any:
    """The stage's TRL config with the arm's step budget."""
    build = {"srl": config.srl_args, "rlvr": config.rlvr_args, "sft": config.sft_args}[kind]
    return build(output_dir, **{**extra, "max_steps": steps})


# --- data ----------------------------------------------------------------------------------------------
@dataclass
class EvalSet:
    name: str
    source: str
    path: Path  # OUT/data/eval_<name>.jsonl: the rows scored, in trajectory format
    digest: str
    n: int
    total: int
    skipped: list[dict[str, Any]]


def prepare_eval_sets(config: PipelineConfig, out: Path, test_file: Path, settings: CompareSettings,
                      transfer_file: Path | None = None) -> dict[str, EvalSet]:
    """Write each eval set's scorable rows (after ``limit``) to OUT/data; say how many were skipped and why.
    The data's transfer split (the demo writes one: problems phrased unlike training) is always one of them."""
    from srl_rlvr.data.srl import write_jsonl
    from srl_rlvr.eval.datasets import load_eval_items

    default_limit = config.eval.settings.get("limit")
    sources = {settings.test_name: EvalSource(str(test_file))}
    if transfer_file is not None and "transfer" not in settings.eval_data:
        sources["transfer"] = EvalSource(str(transfer_file))
    sources |= settings.eval_data
    sets = {}
    for name, spec in sources.items():
        items = load_eval_items(spec.source, fmt=spec.format, limit=spec.limit or default_limit)
        path = out / "data" / f"eval_{name}.jsonl"
        tmp = path.with_name(path.name + ".tmp")
        write_jsonl(tmp, (t.model_dump(exclude_none=True) for t in items.rows))
        tmp.replace(path)
        skipped_file = path.with_name(f"eval_{name}.skipped.jsonl")
        if items.skipped:
            skipped_file.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in items.skipped),
                                    encoding="utf-8")
            say(f"eval set {name} ({spec.source}): {items.summary(with_source=False)} (list: {skipped_file})")
        else:
            skipped_file.unlink(missing_ok=True)
            say(f"eval set {name}: {len(items.rows)} problems from {spec.source}")
        sets[name] = EvalSet(name, spec.source, path, file_digest(path), len(items.rows), items.total, items.skipped)
    return sets


# --- stages --------------------------------------------------------------------------------------------
@dataclass
class StageRun:
    arm: str
    plan: StagePlan
    dir: Path
    skipped: bool = False

    @property
    def final(self) -> Path:
        return self.dir / FINAL


def write_base_init(model: str, target: Path, lora: dict[str, Any] | None, think_prefill: bool | str) -> None:
    """The RLVR arm's explicit starting point: the base model as a stage folder whose manifest says ``base``.

    Full fine-tuning: the base model's files, hard-linked where the filesystem allows. LoRA: a freshly
    initialised adapter (LoRA's B matrices start at zero, so it computes exactly the base model), so RLVR
    trains an adapter as it does after SRL.
    """
    from srl_rlvr.models import resolve_model
    from srl_rlvr.training.stages import load_base_policy, peft_config_from

    base = resolve_model(model)
    final, tmp = target / FINAL, target / ".final.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    local = Path(base)
    if lora:
        from peft import get_peft_model

        policy, tokenizer = load_base_policy(base)
        get_peft_model(policy, peft_config_from(lora)).save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
    elif local.is_dir() and (local / "config.json").is_file() and not (local / "adapter_config.json").exists():
        shutil.copytree(local, tmp, copy_function=link_or_copy, ignore=shutil.ignore_patterns(STAGE_MANIFEST, ".*"))
    else:  # a hub id: save what loads
        policy, tokenizer = load_base_policy(base)
        policy.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
    manifest = {"stage": "base", "base_model": base, "global_step": 0, "lora": bool(lora),
                "think_prefill": think_prefill,
                "why": "srl-rlvr compare's RLVR arm starts RLVR from the base model on purpose (init_from: base)"}
    (tmp / STAGE_MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    shutil.rmtree(final, ignore_errors=True)
    tmp.replace(final)


def _run_base_init(config: PipelineConfig, arm_dir: Path) -> tuple[Path, str]:
    target = arm_dir / BASE_INIT
    think_prefill = normalise_prefill(config.srl.get("think_prefill"))
    payload = {"model": config.model, "lora": config.lora, "think_prefill": think_prefill}

    def work(_resuming: bool) -> int:
        write_base_init(config.model, target, config.lora, think_prefill)
        return 0

    run_step("base_init", target, payload, work, resumable=False)
    return target / FINAL, upstream_identity(target) or ""


def run_stage(config: PipelineConfig, out: Path, arm: str, plan: StagePlan, previous: StageRun | None,
              digests: dict[str, str], resume: bool) -> StageRun:
    """Train one stage of one arm (skipped when its _DONE.json matches); return where it lives."""
    arm_dir = out / "arms" / arm
    stage_dir = arm_dir / plan.kind
    tracking = tracking_args(config, out, f"{arm}/{plan.kind}")
    section = {**getattr(config, plan.kind), "max_steps": plan.steps}
    data_file = out / "data" / ("srl_train.jsonl" if plan.kind == "srl" else "train.jsonl")
    if plan.kind in ("srl", "sft"):
        payload = {"model": config.model, plan.kind: section, "lora": config.lora, "data": digests[data_file.name]}

        def work(resuming: bool) -> int | None:
            args = stage_args(config, plan.kind, stage_dir, plan.steps, **tracking)
            if plan.kind == "srl":
                return train_srl(config.model, data_file, args, lora=config.lora, resume=resuming).global_step
            final = train_sft(config.model, data_file, stage_dir, args, lora=config.lora)
            return (read_json(Path(final) / STAGE_MANIFEST) or {}).get("global_step")

        resumable = plan.kind == "srl"
    else:
        if plan.init_from == "base":
            init_final, upstream = _run_base_init(config, arm_dir)
            expect: tuple[str, ...] = ("base",)  # the one caller that may start RLVR from the base model
        else:
            if previous is None or previous.plan.kind != plan.init_from:
                raise ValueError(f"arm {arm}: RLVR must follow its {plan.init_from} stage")
            init_final, upstream, expect = previous.final, upstream_identity(previous.dir) or "", (plan.init_from,)
        if not (init_final / STAGE_MANIFEST).is_file():
            raise UserInputError(f"arm {arm}: RLVR starts from {init_final}, which is missing or unfinished")
        payload = {"rlvr": section, "init_from": plan.init_from, "upstream": upstream, "data": digests["train.jsonl"]}

        def work(resuming: bool) -> int:
            args = stage_args(config, "rlvr", stage_dir, plan.steps, **tracking)
            return train_rlvr(init_final, data_file, args, resume=resuming, expect=expect).global_step

        resumable = True
    outcome = run_step(f"{arm}/{plan.kind}", stage_dir, payload, work, resume=resume and resumable,
                       resumable=resumable)
    if not outcome.skipped:
        say(f"{arm}/{plan.kind} finished in {outcome.seconds:.1f}s, global step {outcome.global_step}")
    return StageRun(arm, plan, stage_dir, outcome.skipped)


# --- eval ----------------------------------------------------------------------------------------------
def arm_model(config: PipelineConfig, stages: list[StageRun]) -> tuple[str, str]:
    """(model to evaluate, its identity for the eval hash)."""
    if not stages:
        from srl_rlvr.models import resolve_model

        return resolve_model(config.model), f"base:{config.model}"
    last = stages[-1]
    return str(last.final), upstream_identity(last.dir) or ""


def run_evals(config: PipelineConfig, out: Path, arm: str, model: str, identity: str,
              sets: dict[str, EvalSet]) -> None:
    """Evaluate one arm's model on every eval set (loaded once, only if some eval must run)."""
    from srl_rlvr.eval import harness

    eval_config = config.eval.eval_config()
    eval_config.limit = None  # each set's limit was applied when its file was written (prepare_eval_sets)
    loaded: dict[str, Any] = {}

    def load() -> tuple[Any, Any]:
        if not loaded:
            import torch

            from srl_rlvr.models import load_model_and_tokenizer

            device = "cuda" if torch.cuda.is_available() else None
            loaded["pair"] = load_model_and_tokenizer(model, device=device)
        return loaded["pair"]

    for name, eval_set in sets.items():
        target = out / "arms" / arm / "eval" / name
        payload = {"eval": config.eval.settings, "model": identity, "data": eval_set.digest}

        def work(_resuming: bool, eval_set: EvalSet = eval_set, target: Path = target) -> None:
            from srl_rlvr.data.loaders.registry import load_source

            policy, tokenizer = load()
            rows = load_source(str(eval_set.path)).rows
            result = harness.evaluate(model, rows, eval_config, model=policy, tokenizer=tokenizer)
            result.run["data"] = str(eval_set.path)
            harness.write_eval_outputs(result, target)
            m = result.metrics
            say(f"eval {arm} on {eval_set.name}: greedy accuracy {m['greedy_accuracy']:.3f} (n={m['n']})")

        run_step(f"eval {arm}/{name}", target, payload, work, artifact="metrics.json", resumable=False)


# --- results -------------------------------------------------------------------------------------------
def stage_tokens(log_history: list[dict[str, Any]], args: Any) -> tuple[int, int]:
    """(generated, processed) tokens of one stage from its log history.

    Generated: each logged ``completions/mean_length`` × completions generated per optimiser step
    (:func:`srl_rlvr.training.callbacks.generated_rows_per_step`) × the steps that log covers.
    Processed: the last logged ``num_tokens`` (TRL's running count of tokens fed to the model in training).
    """
    from srl_rlvr.training.callbacks import generated_rows_per_step

    generated, previous_step, processed = 0.0, 0, 0
    for entry in log_history:
        step = entry.get("step")
        if not isinstance(step, int):
            continue
        if "num_tokens" in entry:
            processed = max(processed, int(entry["num_tokens"]))
        if "completions/mean_length" in entry:
            covered = max(1, step - previous_step)
            generated += float(entry["completions/mean_length"]) * generated_rows_per_step(args, entry) * covered
            previous_step = step
    return round(generated), processed


def _stage_result(config: PipelineConfig, run: StageRun) -> dict[str, Any]:
    from srl_rlvr.pipelines.report import stage_summary

    history = read_json_list(run.dir / "log_history.json")
    done = read_json(run.dir / DONE) or {}
    args = stage_args(config, run.plan.kind, run.dir, run.plan.steps)
    generated, processed = stage_tokens(history, args)
    summary = stage_summary(run.plan.kind, history, done.get("global_step"))
    manifest = read_json(run.final / STAGE_MANIFEST) or {}
    return {
        "kind": run.plan.kind, "dir": str(run.dir), "planned_steps": run.plan.steps,
        "global_step": done.get("global_step"), "init_from": manifest.get("init_from"),
        "generated_tokens": generated if run.plan.kind != "sft" else 0, "processed_tokens": processed,
        "seconds": done.get("seconds"), "reward_first": summary["reward_first10"],
        "reward_last": summary["reward_last10"], "rewards": summary["steps"],
        "losses": [e["loss"] for e in history if "loss" in e and isinstance(e.get("step"), int)],
    }


def read_json_list(path: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return data if isinstance(data, list) else []


def collect_results(config: PipelineConfig, out: Path, settings: CompareSettings, plans: dict[str, list[StagePlan]],
                    runs: dict[str, list[StageRun]], models: dict[str, str], sets: dict[str, EvalSet],
                    command: str) -> dict[str, Any]:
    srl_steps, rlvr_steps = budget_steps(config)
    arms: dict[str, Any] = {}
    for arm in settings.arms:
        stages = [_stage_result(config, run) for run in runs[arm]]
        evals = {name: read_json(out / "arms" / arm / "eval" / name / "metrics.json") for name in sets}
        arms[arm] = {
            "title": ARM_TITLES[arm],
            "stages": stages,
            "steps": sum(int(s["global_step"] or 0) for s in stages),
            "planned_steps": sum(p.steps for p in plans[arm]),
            "generated_tokens": sum(s["generated_tokens"] for s in stages),
            "processed_tokens": sum(s["processed_tokens"] for s in stages),
            "model": models[arm],
            "eval": evals,
        }
    trained = {arm: a["steps"] for arm, a in arms.items() if plans[arm]}
    budget = {"srl_steps": srl_steps, "rlvr_steps": rlvr_steps, "steps_per_trained_arm": srl_steps + rlvr_steps,
              "equal": all(steps == srl_steps + rlvr_steps for steps in trained.values()), "actual": trained}
    k = int(config.eval.settings.get("k", 1))
    return {
        "command": command,
        "budget": budget,
        "k": k,
        "eval_sets": {name: {"source": s.source, "n": s.n, "total": s.total, "skipped": len(s.skipped),
                             "file": str(s.path)} for name, s in sets.items()},
        "arms": arms,
        "ordering": {name: ordering(arms, name) for name in sets},
        "config": config.to_dict(),
    }


def ordering(arms: dict[str, Any], eval_set: str) -> list[list[str]]:
    """Arms grouped by greedy accuracy on ``eval_set``, best first (ties share a group)."""
    scores: dict[float, list[str]] = {}
    for arm, result in arms.items():
        metrics = result["eval"].get(eval_set)
        if metrics:
            scores.setdefault(round(float(metrics["greedy_accuracy"]), 6), []).append(arm)
    return [scores[s] for s in sorted(scores, reverse=True)]


# --- the command ---------------------------------------------------------------------------------------
def _print_plan(plans: dict[str, list[StagePlan]], arms: list[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="compare: arms and budgets")
    table.add_column("arm")
    table.add_column("stages (optimiser steps)")
    table.add_column("total", justify="right")
    for arm in arms:
        stages = " → ".join(f"{STAGE_TITLES[p.kind]} {p.steps}" for p in plans[arm]) or "no training"
        table.add_row(ARM_TITLES[arm], stages, str(sum(p.steps for p in plans[arm])))
    Console(highlight=False).print(table)


def run_compare(config: PipelineConfig, out_dir: str | Path, *, command: str | None = None, docs: str | None = None,
                resume: bool = False, cli_overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train and evaluate the arms into ``out_dir``; write compare.json/.md and the plots; return the result."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise UserInputError("srl-rlvr compare runs in one process (one GPU or the CPU); launch it without torchrun/"
                             "accelerate's multi-process mode")
    out = Path(out_dir)
    settings = compare_settings(config, cli_overrides)
    srl_steps, rlvr_steps = budget_steps(config)
    plans = plan_arms(srl_steps, rlvr_steps)
    command = command or (f"srl-rlvr compare {config.source} --out {out}" if config.source
                          else f"run_compare(out_dir={out})")
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False), encoding="utf-8")
    started = time.perf_counter()

    rule("data")
    data = prepare_data(config, out, need_test=True)
    if data.test is None:
        raise UserInputError(f"{config.source or 'config'}: compare needs a test split (data.test or data.demo)")
    sets = prepare_eval_sets(config, out, data.test, settings, data.eval_sets.get("transfer"))
    _print_plan(plans, settings.arms)

    runs: dict[str, list[StageRun]] = {}
    models: dict[str, str] = {}
    for index, arm in enumerate(settings.arms, 1):
        rule(f"arm {index}/{len(settings.arms)}: {ARM_TITLES[arm]}")
        runs[arm] = []
        for plan in plans[arm]:
            previous = runs[arm][-1] if runs[arm] else None
            runs[arm].append(run_stage(config, out, arm, plan, previous, data.digests, resume))
        model, identity = arm_model(config, runs[arm])
        models[arm] = model
        run_evals(config, out, arm, model, identity, sets)

    rule("report")
    result = collect_results(config, out, settings, plans, runs, models, sets, command)
    plots = {"reward_curves": plot_reward_curves(result, out / PLOTS["reward_curves"]),
             "accuracy": plot_accuracy(result, out / PLOTS["accuracy"])}
    result["plots"] = {key: str(out / PLOTS[key]) for key, made in plots.items() if made}
    result["seconds"] = round(time.perf_counter() - started, 1)
    write_json(out / "compare.json", result)
    (out / "compare.md").write_text(render_markdown(result, {k: PLOTS[k] for k, made in plots.items() if made}),
                                    encoding="utf-8")
    say(f"compare: {out / 'compare.md'}")
    for line in render_table(result):
        say(line)
    docs = docs or settings.docs
    if docs:
        say(f"docs: updated {update_docs(docs, result, out, plots)}")
    return result
