"""``srl-rlvr run``: the whole pipeline from one YAML config.

    srl-rlvr run configs/demo-cpu.yaml --out out/demo --set srl.max_steps=5
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click


def invoked_command() -> str:
    """The command line as typed, for the report (``srl-rlvr ...`` whatever launched it)."""
    return shlex.join(["srl-rlvr", *sys.argv[1:]])


def split_stage_list(value: str | None) -> list[str] | None:
    return [s.strip() for s in value.split(",") if s.strip()] if value else None


@click.command("run")
@click.argument("config_path", metavar="CONFIG.yaml", type=click.Path(dir_okay=False))
@click.option("--out", "out_dir", default=None, help="Output folder [default: out/<config name>].")
@click.option("--resume", is_flag=True, help="Continue an interrupted stage from its last checkpoint-*.")
@click.option("--only", default=None, metavar="STAGES", help="Comma-separated stages to run, e.g. srl,rlvr.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config key (dotted, value parsed as YAML); repeatable.")
@click.option("--seeds", default=None, metavar="S1,S2,...",
              help="Train once per seed (OUT/seed-<s>) and report the mean and spread across seeds, e.g. 0,1,2.")
@click.option("--inject-fault", "inject_fault", default=None, metavar="KIND@STEP",
              help="Drill: a real fault (nan, oom, sigterm, enospc, kill) once, in the first training stage that "
                   "reaches optimiser step STEP. See docs/training.md.")
def run_command(config_path: str, out_dir: str | None, resume: bool, only: str | None, overrides: tuple[str, ...],
                seeds: str | None, inject_fault: str | None) -> None:
    """Run the stages of CONFIG.yaml (data, srl, rlvr, sft, eval), then write OUT/report.md.

    Finished stages are skipped on a rerun unless their config changed.

    \b
    Example:
      srl-rlvr run configs/demo-cpu.yaml --out out/demo
      srl-rlvr run configs/demo-cpu.yaml --out out/demo --resume --only srl,rlvr --set srl.max_steps=5
      srl-rlvr run configs/demo-cpu.yaml --out out/demo3 --seeds 0,1,2
    """
    from srl_rlvr.core.yamlconf import parse_set_options
    from srl_rlvr.ops.failures import FaultPlan
    from srl_rlvr.pipelines.config import load_pipeline_config
    from srl_rlvr.pipelines.run import run_pipeline

    options = parse_set_options(overrides)
    fault = FaultPlan.parse(inject_fault)
    out = Path(out_dir) if out_dir else Path("out") / Path(config_path).stem
    if seeds is not None:
        from srl_rlvr.pipelines.seeds import parse_seeds, run_seeds, seed_overrides

        run_seeds(lambda seed: load_pipeline_config(config_path, {**options, **seed_overrides(seed)}), out,
                  parse_seeds(seeds), run_pipeline, invoked_command(), resume=resume, only=split_stage_list(only),
                  fault=fault)
        return
    config = load_pipeline_config(config_path, options)
    run_pipeline(config, out, resume=resume, only=split_stage_list(only), command=invoked_command(), fault=fault)
