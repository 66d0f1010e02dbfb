"""``srl-rlvr compare``: the paper's Table 1 at small scale (Base, SFT, RLVR, SRL, SRL→RLVR, SFT→RLVR)."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("compare")
@click.argument("config_path", metavar="CONFIG.yaml", type=click.Path(dir_okay=False))
@click.option("--out", "out_dir", default=None, help="Output folder [default: out/<config name>].")
@click.option("--docs", "docs", default=None, metavar="FILE",
              help="Also write the table, plots and command between the compare markers of FILE "
              "(e.g. docs/results.md).")
@click.option("--resume", is_flag=True, help="Continue an interrupted SRL/RLVR stage from its last checkpoint-*.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config key (dotted, value parsed as YAML); repeatable.")
@click.option("--seeds", default=None, metavar="S1,S2,...",
              help="Run the comparison once per training seed (OUT/seed-<s>); OUT/compare_seeds.md gives means, "
                   "spread and paired tests.")
def compare_command(config_path: str, out_dir: str | None, docs: str | None, resume: bool,
                    overrides: tuple[str, ...], seeds: str | None) -> None:
    """Train and evaluate six arms with equal optimiser-step budgets; write OUT/compare.md and plots.

    Every trained arm gets srl.max_steps + rlvr.max_steps optimiser steps. Finished stages and evals
    are skipped on a rerun unless their config changed.

    \b
    Example:
      srl-rlvr compare configs/compare-cpu.yaml --out out/compare --docs docs/results.md
      srl-rlvr compare configs/compare-cpu.yaml --out /tmp/c --set srl.max_steps=1 --set rlvr.max_steps=1
      srl-rlvr compare configs/compare-cpu.yaml --out out/compare3 --seeds 0,1,2
    """
    from srl_rlvr.cli.run import invoked_command
    from srl_rlvr.core.yamlconf import parse_set_options
    from srl_rlvr.pipelines.compare.run import run_compare
    from srl_rlvr.pipelines.config import load_pipeline_config

    cli_overrides = parse_set_options(overrides)
    out = Path(out_dir) if out_dir else Path("out") / Path(config_path).stem
    if seeds is not None:
        from srl_rlvr.pipelines.seeds import parse_seeds, run_compare_seeds, seed_overrides

        run_compare_seeds(lambda seed: load_pipeline_config(config_path, {**cli_overrides, **seed_overrides(seed)}),
                          out, parse_seeds(seeds), invoked_command(), docs=docs, resume=resume,
                          cli_overrides=cli_overrides)
        return
    config = load_pipeline_config(config_path, cli_overrides)
    run_compare(config, out, command=invoked_command(), docs=docs, resume=resume, cli_overrides=cli_overrides)
