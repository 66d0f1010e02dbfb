"""``srl-rlvr route``: evaluate the cost-benefit router and the cascade on problems with answers."""

from __future__ import annotations

import click


@click.group("route")
def route_group() -> None:
    """Cost-benefit router (router-<name>-<threshold>) and escalation cascade."""


def _fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _print(metrics: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    tiers = Table(title=f"tiers (n={metrics['n']}, score={metrics['score']})")
    for column in ("tier", "acc", "$/req", "$/1M in/out", "source"):
        tiers.add_column(column, overflow="fold")
    for name, t in metrics["tiers"].items():
        label = name + (" [SIMULATED]" if t["simulated"] else "")
        tiers.add_row(label, _fmt(t["accuracy"]), f"{t['mean_cost']:.2e}",
                      f"{t['usd_per_mtok_input']:.3g}/{t['usd_per_mtok_output']:.3g}", t["source"])
    console.print(tiers)
    pair = metrics["pair"]
    table = Table(title=f"{pair['weak']} -> {pair['strong']} ({metrics['held_out'].split(':')[0]}); "
                        f"strong = share of calls to {pair['strong']}, $/req = mean USD per request")
    for column in ("router", "APGR", "CPT50", "CPT80", "strong", "acc", "$/req"):
        table.add_column(column, no_wrap=column == "router")
    table.add_row(metrics["router_model"], _fmt(metrics["apgr"]), _fmt(metrics["cpt50"]), _fmt(metrics["cpt80"]),
                  _fmt(metrics["strong_share"]), _fmt(metrics["accuracy"]), f"{metrics['cost']:.2e}")
    r = metrics["random"]
    table.add_row("random", _fmt(r["apgr"]), _fmt(r["cpt50"]), _fmt(r["cpt80"]), _fmt(r["strong_share"]),
                  _fmt(r["accuracy"]), f"{r['cost']:.2e}")
    o = metrics["oracle"]
    table.add_row("oracle (ceiling)", _fmt(o["apgr"]), _fmt(o["cpt50"]), _fmt(o["cpt80"]), "", "", "")
    c = metrics["cascade"]
    table.add_row(f"cascade (k={c['k']})", "", "", "", "", _fmt(c["accuracy"]), f"{c['cost']:.2e}")
    console.print(table)
    for key in ("simulated_note", "note"):
        if key in metrics:
            console.print(metrics[key])


@route_group.command("eval")
@click.option("--config", "config_path", required=True, help="Route config YAML (tiers, router, predictor, cascade).")
@click.option("--data", "data_path", required=True, help="Trajectory JSONL whose rows have an 'answer'.")
@click.option("--out", "out_dir", required=True,
              help="Folder for metrics.json, cost_quality.png, escalations.jsonl, ...")
@click.option("--limit", default=None, type=int, help="Evaluate only the first N problems.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config key, e.g. --set tiers.srl_rlvr.model=smollm2-135m (repeatable).")
def route_eval(config_path: str, data_path: str, out_dir: str, limit: int | None, overrides: tuple[str, ...]) -> None:
    """APGR, CPT(50%), CPT(80%), cost and accuracy of the router and of a random router, on held-out items.

    \b
    Example:
      srl-rlvr data demo --out data/demo
      srl-rlvr route eval --config configs/route-cpu.yaml --data data/demo/test.jsonl --out out/route_eval --limit 100
    """
    from srl_rlvr.core.yamlconf import parse_set_options
    from srl_rlvr.errors import UserInputError
    from srl_rlvr.routing.config import load_route_config
    from srl_rlvr.routing.evaluate import run_route_eval

    if limit is not None and limit < 1:
        raise UserInputError(f"--limit must be >= 1, got {limit}")
    config = load_route_config(config_path, parse_set_options(overrides))
    metrics = run_route_eval(config, data_path, out_dir, limit)
    _print(metrics)
    click.echo(f"metrics: {out_dir}/metrics.json")
    click.echo(f"plot: {metrics['files']['plot']}")
    click.echo(f"escalations: {metrics['files']['escalations']} ({metrics['cascade']['escalations_logged']} rows)")
