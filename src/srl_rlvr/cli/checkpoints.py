"""``srl-rlvr checkpoints list|verify``: which checkpoints of a stage are whole, and why the others are not.

    srl-rlvr checkpoints list runs/srl
    srl-rlvr checkpoints verify runs/srl/checkpoint-40
"""

from __future__ import annotations

from pathlib import Path

import click

_finite_option = click.option("--no-finite-check", is_flag=True,
                              help="Skip the scan that every saved tensor is finite (faster on big models).")


def _folder(path: str) -> Path:
    from srl_rlvr.errors import UserInputError

    folder = Path(path)
    if not folder.exists():
        raise UserInputError(f"{folder}: no such folder")
    if not folder.is_dir():
        raise UserInputError(f"{folder}: not a folder (give a stage folder or one checkpoint-N folder)")
    return folder


def _is_one_checkpoint(folder: Path) -> bool:
    from srl_rlvr.ops.checkpoints import COMPLETE, checkpoint_step

    return checkpoint_step(folder) is not None or (folder / COMPLETE).is_file()


def _statuses(folder: Path, check_finite: bool) -> list:
    """Every checkpoint of a stage folder, oldest first, or just ``folder`` when it is one checkpoint."""
    from srl_rlvr.core.io import read_json
    from srl_rlvr.ops.checkpoints import COMPLETE, CheckpointStatus, checkpoint_step, scan, verify_checkpoint

    if _is_one_checkpoint(folder):
        reason = verify_checkpoint(folder, check_finite=check_finite)
        return [CheckpointStatus(folder, checkpoint_step(folder) or 0, reason, read_json(folder / COMPLETE))]
    return scan(folder, check_finite=check_finite)


def _partial_saves(folder: Path) -> list[Path]:
    from srl_rlvr.ops.checkpoints import STAGING

    staging = folder / STAGING
    return sorted(staging.iterdir()) if staging.is_dir() else []


def _size_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6


def _metrics(marker: dict | None) -> str:
    metrics = (marker or {}).get("metrics") if isinstance(marker, dict) else None
    if not isinstance(metrics, dict):
        return ""
    return "  " + " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items())


@click.group("checkpoints")
def checkpoints_group() -> None:
    """Inspect a stage's checkpoints: which are whole (their COMPLETE marker matches every file) and why
    the others are not. Resume uses the newest valid one.

    \b
    Example:
      srl-rlvr checkpoints list runs/srl
      srl-rlvr checkpoints verify runs/srl
    """


@checkpoints_group.command("list", short_help="Every checkpoint-N of a stage: step, valid or why not, size.")
@click.argument("stage_dir", type=click.Path())
@_finite_option
def list_command(stage_dir: str, no_finite_check: bool) -> None:
    """List the checkpoint-N folders of a stage folder, oldest first: step, valid or INVALID with the
    reason, size in MB and the metrics logged at that step. A partial save left in .staging is named too
    (resume ignores it).

    \b
    Example:
      srl-rlvr checkpoints list runs/srl
      srl-rlvr checkpoints list runs/srl --no-finite-check
    """
    from srl_rlvr.core.io import read_json
    from srl_rlvr.ops.checkpoints import COMPLETE, STAGING

    folder = _folder(stage_dir)
    statuses = _statuses(folder, check_finite=not no_finite_check)
    if not statuses:
        click.echo(f"no checkpoints in {folder}")
    width = max((len(s.path.name) for s in statuses), default=0)
    for status in statuses:
        state = "valid" if status.valid else f"INVALID: {status.reason}"
        marker = status.marker if status.marker is not None else read_json(status.path / COMPLETE)
        click.echo(f"{status.path.name:<{width}}  step {status.step}  {state}  {_size_mb(status.path):.1f} MB"
                   f"{_metrics(marker)}")
    for partial in _partial_saves(folder):
        click.echo(f"partial save in {STAGING}/{partial.name} (ignored)")


@checkpoints_group.command("verify", short_help="Check every file of each checkpoint; exit 1 if one is bad.")
@click.argument("path", type=click.Path())
@_finite_option
@click.pass_context
def verify_command(ctx: click.Context, path: str, no_finite_check: bool) -> None:
    """Verify a stage folder's checkpoints (or one checkpoint-N folder): the COMPLETE marker, each file's
    size and sha256, the safetensors headers and that every tensor is finite. Prints "ok checkpoint-N" or
    "BAD checkpoint-N: <file>: <why>" for each; exits 1 if any is bad or there is none.

    \b
    Example:
      srl-rlvr checkpoints verify runs/srl
      srl-rlvr checkpoints verify runs/srl/checkpoint-40 --no-finite-check
    """
    from srl_rlvr.ops.checkpoints import STAGING

    folder = _folder(path)
    statuses = _statuses(folder, check_finite=not no_finite_check)
    if not statuses:
        partial = _partial_saves(folder)
        note = f" (only a partial save in {STAGING}/{partial[-1].name}, which does not count)" if partial else ""
        click.echo(f"no checkpoint-N folders in {folder}{note}", err=True)
        ctx.exit(1)
    bad = 0
    for status in statuses:
        if status.valid:
            click.echo(f"ok {status.path.name}")
        else:
            bad += 1
            click.echo(f"BAD {status.path.name}: {status.reason}")
    if bad:
        click.echo(f"{bad} of {len(statuses)} checkpoint(s) failed verification", err=True)
        ctx.exit(1)
