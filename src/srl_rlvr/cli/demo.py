"""``srl-rlvr demo``: the main job on the embedded default model, end to end.

    srl-rlvr demo --out out/demo            # same run as: srl-rlvr run configs/demo-cpu.yaml --out out/demo
    srl-rlvr demo --out /tmp/demo --quick   # a few steps of each stage: a smoke test of the whole path

Prepares the embedded SmolLM2-135M (once), writes the seeded arithmetic task, trains SRL then RLVR with
the ``cpu`` tier's settings and evaluates the base, SRL and SRL→RLVR models on the held-out test split and
the transfer split (same arithmetic, wording no split trains on), with intervals and paired tests. Writes
DIR/report.md, DIR/report.json and DIR/models/{srl,srl_rlvr}.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

# configs/demo-cpu.yaml as overrides (the configs/ folder is not installed with the package);
# tests/test_config.py checks the two stay the same run.
DEMO_OVERRIDES: dict[str, Any] = {
    "tier": "cpu",
    "model": "smollm2-135m",
    "data.demo": {"n_train": 400, "n_test": 100, "n_transfer": 60, "seed": 0, "min_ops": 1, "max_ops": 3,
                  "numbers": "small"},
    "stages": ["srl", "rlvr", "eval"],
    "rlvr.max_steps": 4,
    "eval.models": ["base", "srl", "srl_rlvr"],
    "eval.sets": ["test", "transfer"],
    "registry": {"name": "demo-math", "promote": "srl_rlvr"},
}
# --quick: enough steps to run every code path, nowhere near enough to learn anything. One generation
# round per step: the untrained model fails every RLVR problem, so refills would triple the RLVR step.
QUICK_OVERRIDES: dict[str, Any] = {"srl.max_steps": 2, "rlvr.max_steps": 1, "eval.limit": 4,
                                   "srl.max_refill_rounds": 1, "rlvr.max_refill_rounds": 1}


def demo_config(quick: bool = False, overrides: dict[str, Any] | None = None):
    from srl_rlvr.pipelines.config import load_pipeline_config

    return load_pipeline_config(None, {**DEMO_OVERRIDES, **(QUICK_OVERRIDES if quick else {}), **(overrides or {})})


@click.command("demo")
@click.option("--out", "out_dir", default="out/demo", show_default=True, help="Output folder.")
@click.option("--quick", is_flag=True,
              help="Tiny step counts (srl 2, rlvr 1, one generation round, eval on 4 problems): a smoke test.")
@click.option("--resume", is_flag=True, help="Continue an interrupted stage from its last checkpoint-*.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config key (dotted, value parsed as YAML); repeatable.")
def demo_command(out_dir: str, quick: bool, resume: bool, overrides: tuple[str, ...]) -> None:
    """Run the main job on the embedded default model (cpu tier): SRL, RLVR, eval, report.

    \b
    Example:
      srl-rlvr demo --out out/demo
      srl-rlvr demo --out /tmp/demo_quick --quick
    """
    from srl_rlvr.cli.run import invoked_command
    from srl_rlvr.core.console import say
    from srl_rlvr.core.yamlconf import parse_set_options
    from srl_rlvr.models import resolve_model
    from srl_rlvr.pipelines.run import run_pipeline

    config = demo_config(quick, parse_set_options(overrides))
    say(f"model: {resolve_model(config.model)}")  # converts the embedded GGUF on first use
    report = run_pipeline(config, Path(out_dir), resume=resume, command=invoked_command())
    accuracy = ", ".join(f"{label} {acc:.1%}" for label, acc in report["accuracy"].items() if acc is not None)
    if accuracy:
        say(f"greedy accuracy on the test split: {accuracy}")
