"""Under ``make test`` (SRL_RLVR_REQUIRE_TOOLS=1, after ``make system-deps`` installed bubblewrap) a
sandbox without its bwrap layer is a failure, not a skip: CI must test the layer the trainer gets."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def _bwrap_works_where_tools_are_required() -> None:
    if os.environ.get("SRL_RLVR_REQUIRE_TOOLS") == "1":
        from srl_rlvr.rewards.sandbox_launch import use_bwrap

        if not use_bwrap(True):
            pytest.fail("SRL_RLVR_REQUIRE_TOOLS=1 but bwrap does not work here (run `make system-deps`)")
