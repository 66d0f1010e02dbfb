"""Entry point of the ``srl-rlvr`` console script.

User mistakes (UserInputError, bad flags) print one clear line and exit 2; a training stage that stopped
on purpose prints one line and exits with its code (75 preempted, 74 disk full: rerun with --resume; see
srl_rlvr.ops.failures); anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys

import click

from srl_rlvr import __version__
from srl_rlvr.errors import UserInputError


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="srl-rlvr")
def cli() -> None:
    """Post-train small LLMs with Supervised RL (SRL), then RLVR.

    \b
    Example:
      srl-rlvr demo --out out/demo
    """


def _register() -> None:
    from srl_rlvr.cli.checkpoints import checkpoints_group
    from srl_rlvr.cli.compare import compare_command
    from srl_rlvr.cli.data import data_group
    from srl_rlvr.cli.demo import demo_command
    from srl_rlvr.cli.distill import distill_command
    from srl_rlvr.cli.eval import eval_command
    from srl_rlvr.cli.loop import loop_command
    from srl_rlvr.cli.models import models_group
    from srl_rlvr.cli.monitor import monitor_group
    from srl_rlvr.cli.reference import reference_command
    from srl_rlvr.cli.registry import registry_group
    from srl_rlvr.cli.route import route_group
    from srl_rlvr.cli.run import run_command
    from srl_rlvr.cli.serve import serve_command
    from srl_rlvr.cli.tiers import tiers_group
    from srl_rlvr.cli.train import train_group

    cli.add_command(models_group)
    cli.add_command(data_group)
    cli.add_command(demo_command)
    cli.add_command(run_command)
    cli.add_command(train_group)
    cli.add_command(eval_command)
    cli.add_command(compare_command)
    cli.add_command(tiers_group)
    cli.add_command(serve_command)
    cli.add_command(route_group)
    cli.add_command(registry_group)
    cli.add_command(monitor_group)
    cli.add_command(checkpoints_group)
    cli.add_command(distill_command)
    cli.add_command(loop_command)
    cli.add_command(reference_command)


_register()


def main(argv: list[str] | None = None) -> None:
    try:
        rv = cli.main(args=argv, prog_name="srl-rlvr", standalone_mode=False)
    except UserInputError as exc:
        # a stage that stopped on purpose (preempted, disk full) exits with its documented code
        click.echo(f"error: {exc}", err=True)
        sys.exit(getattr(exc, "exit_code", 2))
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":
    main()
