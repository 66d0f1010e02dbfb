"""Console output for long jobs: one copy of each line on a distributed launch, and who may write OUT.

    >>> say("SRL: 24 steps")   # printed by rank 0 only
    SRL: 24 steps
"""

from __future__ import annotations

import os


def _console():
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)


def _is_rank_zero() -> bool:
    return os.environ.get("RANK", "0") == "0"


def say(message: str) -> None:
    if _is_rank_zero():  # one copy of each line, not one per process
        _console().print(message, markup=False)


def rule(title: str) -> None:
    if _is_rank_zero():
        _console().rule(f"[bold cyan]{title}")


class Ranks:
    """Who may write OUT: the main process of a distributed launch (or the only process)."""

    def __init__(self, distributed: bool | None = None):
        if distributed is None:
            distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
        self.state = None
        if distributed:
            from accelerate import PartialState  # the same process group the trainers will use

            self.state = PartialState()

    @property
    def is_main(self) -> bool:
        return self.state is None or self.state.is_main_process

    def barrier(self) -> None:
        if self.state is not None:
            self.state.wait_for_everyone()


SINGLE = Ranks(distributed=False)  # for work only the main process does (eval): no barriers
