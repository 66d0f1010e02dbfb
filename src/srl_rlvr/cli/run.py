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
def run_command(config_path: str, out_dir: str | None, resume: bool, only: str | None, overrides: tuple[str, ...]) -> None:
    """Run the stages of CONFIG.yaml (data, srl, rlvr, sft, eval), then write OUT/report.md.

    Finished stages are skipped on a rerun unless their config changed.

    \b
    Example:
      srl-rlvr run configs/demo-cpu.yaml --out out/demo
      srl-rlvr run configs/demo-cpu.yaml --out out/demo --resume --only srl,rlvr --set srl.max_steps=5
    """
    from srl_rlvr.config import load_pipeline_config, parse_set_options
    from srl_rlvr.training.pipeline import run_pipeline

    config = load_pipeline_config(config_path, parse_set_options(overrides))
    out = Path(out_dir) if out_dir else Path("out") / Path(config_path).stem
    run_pipeline(config, out, resume=resume, only=split_stage_list(only), command=invoked_command())
