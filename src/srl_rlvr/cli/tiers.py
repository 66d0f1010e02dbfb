"""``srl-rlvr tiers ...``: the packaged hardware tiers, and how long (and how much) a run on one takes."""

from __future__ import annotations

from typing import Any

import click


@click.group("tiers")
def tiers_group() -> None:
    """Hardware tiers (cpu, gold, silver, bronze): list them, estimate a run.

    \b
    Example:
      srl-rlvr tiers list
      srl-rlvr tiers estimate --tier gold --examples 5000
    """


def describe_hardware(hw: dict[str, Any]) -> str:
    """One line for ``tiers list``.

    >>> describe_hardware({"nodes": 5, "gpus_per_node": 8, "gpu": "H100 80GB"})
    '5 nodes x 8 x H100 80GB'
    >>> describe_hardware({"gpus": 0, "cpu_cores": 2})
    '2 CPU cores, no GPU'
    """
    nodes = int(hw.get("nodes") or 1)
    gpus = hw.get("gpus_per_node", hw.get("gpus", 0)) or 0
    if not gpus:
        return f"{hw.get('cpu_cores', '?')} CPU cores, no GPU"
    card = f"{gpus} x {hw.get('gpu', 'GPU')}"
    return f"{nodes} nodes x {card}" if nodes > 1 else card


def _throughput_label(block: Any) -> str:
    if not isinstance(block, dict) or block.get("tokens_per_s") is None:
        return "no throughput figures"
    kind = "measured" if block.get("measured") is True else "assumed"
    return f"{block['tokens_per_s']:,} tok/s ({kind})"


@tiers_group.command("list", short_help="List the packaged tiers.")
def list_command() -> None:
    """List the packaged tiers: model, hardware, and whether their throughput is measured or assumed."""
    from srl_rlvr.tiers import read_tier, tier_names

    rows = []
    for name in tier_names():
        _, tier = read_tier(name)
        rows.append((name, str(tier.get("model", "?")), describe_hardware(tier.get("hardware") or {}),
                     _throughput_label(tier.get("throughput"))))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for row in rows:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[3])


@tiers_group.command("estimate", short_help="Estimate the wall time and cost of an SRL run on a tier.")
@click.option("--tier", "tier_name", required=True, metavar="NAME|YAML", help="Tier name (gold) or a YAML path.")
@click.option("--examples", type=int, required=True, help="Number of SRL instances (steps) to train on.")
@click.option("--epochs", type=float, default=None,
              help="Passes over the data [default: the tier's num_train_epochs, or 1].")
@click.option("--price-per-hour", type=float, default=None,
              help="USD per hour for the tier's hardware [default: the tier's].")
def estimate_command(tier_name: str, examples: int, epochs: float | None, price_per_hour: float | None) -> None:
    """Estimate the SRL stage's wall time and cost from the tier's throughput figures.

    Wall time = examples x epochs x rollouts x mean completion tokens / tokens-per-second, plus the
    training share of each step. Every figure is labelled measured (on what) or assumed (from what).

    \b
    Example:
      srl-rlvr tiers estimate --tier cpu --examples 1500
      srl-rlvr tiers estimate --tier gold --examples 5000 --epochs 2 --price-per-hour 2.5
      srl-rlvr tiers estimate --tier configs/demo-cpu.yaml --examples 1500
    """
    from srl_rlvr.tiers import read_tier
    from srl_rlvr.tiers.estimate import estimate, format_estimate

    label, tier = read_tier(tier_name)
    click.echo(format_estimate(estimate(tier, examples, epochs, price_per_hour, label=label)))
