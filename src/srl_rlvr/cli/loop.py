"""``srl-rlvr loop``: one turn of the closed loop (docs/distillation.md, "The closed loop")."""

from __future__ import annotations

import click


@click.command("loop")
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False),
              help="Loop config YAML (see configs/loop-cpu.yaml).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Folder for the turn: data/, bootstrap/, serve/, distill/, train/, router/, loop_report.*.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config key, e.g. --set teacher.samples=2 (repeatable).")
def loop_command(config_path: str, out_dir: str, overrides: tuple[str, ...]) -> None:
    """Serve the champion, send traffic to its cascade, distill the escalations from the teacher tier,
    train SRL (then RLVR) from the champion on them, gate the result against the champion, and check
    that the server hot-swapped to whichever holds the alias; then refit the router's predictor.

    \b
    Example:
      srl-rlvr loop --config configs/loop-cpu.yaml --out out/loop
      srl-rlvr registry list --registry sqlite:///$PWD/out/loop/registry/registry.db
    """
    import shlex
    import sys

    from srl_rlvr.core.yamlconf import parse_set_options
    from srl_rlvr.pipelines.loop import LoopStopped, load_loop_config, run_loop

    config = load_loop_config(config_path, parse_set_options(overrides))
    command = "srl-rlvr " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:] else None
    try:
        report = run_loop(config, out_dir, command=command)
    except LoopStopped as exc:
        click.echo(f"loop stopped early: {exc}", err=True)
        raise SystemExit(3) from None
    for step in report["steps"]:
        click.echo(f"{step['step']:>10}  {step['seconds']:7.1f}s  {step.get('summary', '')}")
    click.echo(f"total {report['total_seconds']:.0f}s; report {out_dir}/loop_report.md")
