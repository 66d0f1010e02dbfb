"""``srl-rlvr data``: make the demo task, build SRL instances, inspect trajectory files."""

from __future__ import annotations

import statistics
from collections import Counter

import click
from rich.console import Console
from rich.table import Table

from srl_rlvr.data.demo import NUMBER_SCALES, STYLES
from srl_rlvr.data.loaders.registry import LOADERS, load_source
from srl_rlvr.data.srl import SRLBuildConfig, build_instances, trajectory_actions, write_jsonl
from srl_rlvr.errors import UserInputError

FORMATS = click.Choice(["auto", *LOADERS])
err_console = Console(stderr=True, soft_wrap=True)


@click.group("data")
def data_group() -> None:
    """Expert trajectories → SRL step instances."""


@data_group.command("demo")
@click.option("--out", "out_dir", default="data/demo", show_default=True,
              help="Folder for train.jsonl, dev.jsonl, test.jsonl and transfer.jsonl.")
@click.option("--n-train", default=400, show_default=True)
@click.option("--n-dev", default=100, show_default=True,
              help="Problems for tuning (choose recipes and settings on these).")
@click.option("--n-test", default=100, show_default=True, help="Held-out problems to publish; never tune on them.")
@click.option("--n-transfer", default=100, show_default=True,
              help="Same arithmetic in a phrasing family that no split trains on.")
@click.option("--seed", default=0, show_default=True)
@click.option("--style", type=click.Choice(STYLES), default="prose", show_default=True,
              help="Step wording: prose sentences, or one terse equation per step (same problems).")
@click.option("--min-ops", default=2, show_default=True, help="Fewest steps per problem (1 adds one-step problems).")
@click.option("--max-ops", default=4, show_default=True, help="Most steps per problem.")
@click.option("--numbers", type=click.Choice(list(NUMBER_SCALES)), default="standard", show_default=True,
              help="standard: values up to 999; small: operands <= 9, values <= 50.")
@click.option("--answer-step", is_flag=True, help="Write the final answer as a step of its own ('The answer is N.').")
def demo_data(out_dir: str, n_train: int, n_dev: int, n_test: int, n_transfer: int, seed: int, style: str,
              min_ops: int, max_ops: int, numbers: str, answer_step: bool) -> None:
    """Write the seeded multi-step arithmetic demo task: train, dev (tune on it), test (publish it, never tune
    on it) and transfer (the same arithmetic in wording no split trains on), sharing no problem text.

    \b
    Example:
      srl-rlvr data demo --out data/demo --n-train 400 --n-dev 100 --n-test 100 --n-transfer 100 --seed 0
    """
    from srl_rlvr.data.demo import SPLITS, write_demo_task

    if not 1 <= min_ops <= max_ops:
        raise UserInputError(f"need 1 <= --min-ops <= --max-ops, got {min_ops} and {max_ops}")
    negative = [f"--n-{name}" for name, n in zip(SPLITS, (n_train, n_dev, n_test, n_transfer)) if n < 0]
    if negative:
        raise UserInputError(f"{', '.join(negative)} must be >= 0")
    info = write_demo_task(out_dir, n_train=n_train, n_test=n_test, seed=seed, style=style, min_ops=min_ops,
                           max_ops=max_ops, numbers=numbers, n_dev=n_dev, n_transfer=n_transfer,
                           answer_step=answer_step)
    click.echo(f"wrote {info['n_train']} train, {info['n_dev']} dev, {info['n_test']} test and "
               f"{info['n_transfer']} transfer problems to {out_dir}:")
    for name in SPLITS:
        click.echo(f"  {info[name]}  ({info['n_' + name]} problems)")


@data_group.command("build")
@click.option("--input", "input_path", required=True, help="Trajectory file, or 'champ' for the CHAMP package data.")
@click.option("--output", "output_path", required=True, help="SRL instance JSONL to write.")
@click.option("--format", "fmt", type=FORMATS, default="auto", show_default=True)
@click.option("--skip-invalid", is_flag=True, help="Skip and count bad rows instead of stopping at the first.")
@click.option("--min-steps", default=1, show_default=True, help="Skip trajectories with fewer steps.")
@click.option("--max-steps", default=None, type=int, help="Skip trajectories with more steps.")
def build(input_path: str, output_path: str, fmt: str, skip_invalid: bool, min_steps: int,
          max_steps: int | None) -> None:
    """Build SRL step instances: step k's prompt is the problem plus expert steps 1..k-1.

    \b
    Example:
      srl-rlvr data build --input data/demo/train.jsonl --output data/demo/srl_train.jsonl
    """
    loaded = load_source(input_path, fmt=fmt, skip_invalid=skip_invalid)
    result = build_instances(loaded.rows, SRLBuildConfig(min_steps=min_steps, max_steps=max_steps))
    written = write_jsonl(output_path, result.instances)
    for bad in loaded.skipped:
        err_console.print(f"skipped {bad}", markup=False, highlight=False)
    for tid, reason in result.skipped:
        err_console.print(f"skipped trajectory {tid}: {reason}", markup=False, highlight=False)
    click.echo(
        f"trajectories: {len(loaded.rows)} valid, {len(loaded.skipped)} invalid rows skipped, "
        f"{len(result.skipped)} out of step range; instances written: {written} → {output_path}"
    )


@data_group.command("inspect")
@click.option("--input", "input_path", required=True, help="Trajectory file, or 'champ'.")
@click.option("--format", "fmt", type=FORMATS, default="auto", show_default=True)
def inspect(input_path: str, fmt: str) -> None:
    """Counts, the step-count and step-length distributions, and every skipped row with its reason.

    \b
    Example:
      srl-rlvr data inspect --input tests/fixtures/s1k_sample.jsonl
    """
    loaded = load_source(input_path, fmt=fmt, skip_invalid=True)
    actions = {t.id: trajectory_actions(t) for t in loaded.rows}
    steps_per = Counter(len(a) for a in actions.values())
    lengths = sorted(len(x.text) for a in actions.values() for x in a)
    console = Console(soft_wrap=True)
    console.print(
        f"[bold]{input_path}[/]: {len(loaded.rows)} valid trajectories, {len(loaded.skipped)} skipped rows, "
        f"{sum(steps_per[n] * n for n in steps_per)} SRL instances (one per step)"
    )
    table = Table("steps per trajectory", "trajectories", title="step counts")
    for n in sorted(steps_per):
        table.add_row(str(n), str(steps_per[n]))
    console.print(table)
    if lengths:
        q = statistics.quantiles(lengths, n=10) if len(lengths) > 1 else [lengths[0]] * 9
        console.print(
            f"step length (chars): min {lengths[0]}, p10 {q[0]:.0f}, median {statistics.median(lengths):.0f}, "
            f"p90 {q[-1]:.0f}, max {lengths[-1]}"
        )
    for bad in loaded.skipped:
        console.print(f"skipped {bad}", markup=False, highlight=False)
