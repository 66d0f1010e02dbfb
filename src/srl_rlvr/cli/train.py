"""``srl-rlvr train srl|rlvr|sft``: one training stage on files you already have.

    srl-rlvr train srl --model smollm2-135m --data data/demo/srl_train.jsonl --out runs/srl
    srl-rlvr train rlvr --init-from runs/srl/final --data data/demo/train.jsonl --out runs/rlvr

Stage settings come from ``--config`` (a pipeline YAML: its ``srl:``/``rlvr:``/``sft:`` and ``lora:``
sections; default: the ``cpu`` tier) and ``--set`` (``max_steps=5`` means ``srl.max_steps=5`` here).
Like the pipeline, a finished run with the same settings is skipped, ``--resume`` continues from the
newest valid checkpoint, and an unfinished run without ``--resume`` starts over. Faults are handled as
ops/failures.py says (exit 75: preempted, 74: disk full; both resume with ``--resume``).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import click

from srl_rlvr.pipelines.config import TOP_LEVEL


def _stage_overrides(stage: str, items: tuple[str, ...]) -> dict[str, Any]:
    """``--set max_steps=5`` → ``srl.max_steps``; keys that start with a config section stay as given."""
    from srl_rlvr.core.yamlconf import parse_set_options

    out = {}
    for key, value in parse_set_options(items).items():
        out[key if key.split(".")[0] in TOP_LEVEL else f"{stage}.{key}"] = value
    return out


def _load(stage: str, config_path: str | None, items: tuple[str, ...]):
    from srl_rlvr.pipelines.config import load_pipeline_config

    overrides = _stage_overrides(stage, items)
    if config_path is None:
        overrides = {"tier": "cpu", **overrides}
    return load_pipeline_config(config_path, overrides)


def _report(name: str, outcome, out: Path) -> None:
    from srl_rlvr.core.console import say

    if not outcome.skipped:
        origin = f" (resumed from {outcome.resumed_from})" if outcome.resumed_from else ""
        say(f"{name} finished in {outcome.seconds:.1f}s at global step {outcome.global_step}{origin}")
    say(f"final model: {out / 'final'}")


_common = [
    click.option("--out", "out_dir", required=True, help="Stage folder (checkpoints, final/, log_history.json)."),
    click.option("--config", "config_path", default=None, type=click.Path(dir_okay=False),
                 help="Pipeline YAML whose stage section to use [default: the cpu tier]."),
    click.option("--resume", is_flag=True, help="Continue from the last checkpoint-* in --out."),
    click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                 help="Override a stage field (max_steps=5) or a config key (lora.r=8); repeatable."),
    click.option("--inject-fault", "inject_fault", default=None, metavar="KIND@STEP",
                 help="Drill: raise a real fault once at optimiser step STEP; KIND is nan, oom, sigterm, enospc or "
                      "kill (kill -9 in the middle of that step's checkpoint save). See docs/training.md."),
]


def common_options(func):
    for option in reversed(_common):
        func = option(func)
    return func


@click.group("train")
def train_group() -> None:
    """Train one stage: srl, rlvr (from a finished SRL stage) or sft.

    \b
    Example:
      srl-rlvr train srl --model smollm2-135m --data data/demo/srl_train.jsonl --out runs/srl
    """


@train_group.command("srl")
@click.option("--model", default=None, help="Model name, HF id or folder [default: the config's model].")
@click.option("--data", "data_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="SRL instance JSONL.")
@common_options
def train_srl_command(model: str | None, data_path: str, out_dir: str, config_path: str | None, resume: bool,
                      overrides: tuple[str, ...], inject_fault: str | None) -> None:
    """SRL: GRPO with the step-similarity reward on SRL step instances.

    \b
    Example:
      srl-rlvr data build --input data/demo/train.jsonl --output data/demo/srl_train.jsonl
      srl-rlvr train srl --model smollm2-135m --data data/demo/srl_train.jsonl --out runs/srl --set max_steps=5
    """
    from srl_rlvr.core.console import Ranks
    from srl_rlvr.core.io import file_digest
    from srl_rlvr.ops.failures import FaultPlan
    from srl_rlvr.ops.ledger import run_step
    from srl_rlvr.ops.tracking import tracking_args
    from srl_rlvr.training.stages import train_srl

    config = _load("srl", config_path, overrides)
    model = model or config.model
    out = Path(out_dir)
    payload = {"model": model, "srl": config.srl, "lora": config.lora, "data": file_digest(data_path)}

    def work(resuming: bool) -> int:
        args = config.srl_args(out, **tracking_args(config, out, "srl"))
        return train_srl(model, data_path, args, lora=config.lora, resume=resuming, guard=guard).global_step

    guard = config.stage_guard("srl", FaultPlan.parse(inject_fault))
    _report("srl", run_step("srl", out, payload, work, resume=resume, ranks=Ranks(), checkpoints=guard.checkpoints),
            out)


@train_group.command("rlvr")
@click.option("--init-from", "init_from", required=True, type=click.Path(file_okay=False),
              help="A finished SRL (or SFT) stage's final/ folder.")
@click.option("--data", "data_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Trajectories with answers (any supported format).")
@common_options
def train_rlvr_command(init_from: str, data_path: str, out_dir: str, config_path: str | None, resume: bool,
                       overrides: tuple[str, ...], inject_fault: str | None) -> None:
    """RLVR: GRPO with a verifiable reward, continuing from a finished SRL stage's weights.

    \b
    Example:
      srl-rlvr train rlvr --init-from runs/srl/final --data data/demo/train.jsonl --out runs/rlvr
    """
    from srl_rlvr.core.console import Ranks
    from srl_rlvr.core.io import file_digest, folder_digest
    from srl_rlvr.ops.failures import FaultPlan
    from srl_rlvr.ops.ledger import NOT_MODEL_CONTENT, run_step
    from srl_rlvr.ops.tracking import tracking_args
    from srl_rlvr.registry.manifest import STAGE_MANIFEST
    from srl_rlvr.training.stages import train_rlvr

    config = _load("rlvr", config_path, overrides)
    out = Path(out_dir)
    manifest = Path(init_from) / STAGE_MANIFEST
    # keyed on the starting weights, so a retrained SRL final reruns this stage (train_rlvr says why a
    # folder without a manifest is fatal)
    origin = folder_digest(init_from, NOT_MODEL_CONTENT) if manifest.is_file() else None
    payload = {"rlvr": config.rlvr, "init_from": str(Path(init_from).resolve()), "upstream": origin,
               "data": file_digest(data_path)}

    def work(resuming: bool) -> int:
        args = config.rlvr_args(out, **tracking_args(config, out, "rlvr"))
        return train_rlvr(init_from, data_path, args, resume=resuming, guard=guard).global_step

    guard = config.stage_guard("rlvr", FaultPlan.parse(inject_fault))
    _report("rlvr", run_step("rlvr", out, payload, work, resume=resume, ranks=Ranks(),
                             checkpoints=guard.checkpoints), out)


def _sft_available() -> bool:
    return importlib.util.find_spec("srl_rlvr.training.sft") is not None


if _sft_available():

    @train_group.command("sft")
    @click.option("--model", default=None, help="Model name, HF id or folder [default: the config's model].")
    @click.option("--data", "data_path", required=True, type=click.Path(exists=True, dir_okay=False),
                  help="Trajectories (any supported format).")
    @common_options
    def train_sft_command(model: str | None, data_path: str, out_dir: str, config_path: str | None, resume: bool,
                          overrides: tuple[str, ...], inject_fault: str | None) -> None:
        """SFT baseline: supervised fine-tuning on the expert trajectories.

        \b
        Example:
          srl-rlvr train sft --model smollm2-135m --data data/demo/train.jsonl --out runs/sft
        """
        from srl_rlvr.core.console import Ranks
        from srl_rlvr.core.io import file_digest
        from srl_rlvr.ops.failures import FaultPlan
        from srl_rlvr.ops.ledger import run_step
        from srl_rlvr.ops.tracking import tracking_args
        from srl_rlvr.training.sft import train_sft

        config = _load("sft", config_path, overrides)
        model = model or config.model
        out = Path(out_dir)
        payload = {"model": model, "sft": config.sft, "lora": config.lora, "data": file_digest(data_path)}

        def work(resuming: bool) -> int | None:
            from srl_rlvr.registry.manifest import read_manifest

            args = config.sft_args(out, **tracking_args(config, out, "sft"))
            final = train_sft(model, data_path, out, args, lora=config.lora, resume=resuming, guard=guard)
            return (read_manifest(Path(final)) or {}).get("global_step")

        guard = config.stage_guard("sft", FaultPlan.parse(inject_fault))
        _report("sft", run_step("sft", out, payload, work, resume=resume, ranks=Ranks(),
                                checkpoints=guard.checkpoints), out)
