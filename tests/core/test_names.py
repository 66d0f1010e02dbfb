"""Every registry is one NameTable: a taken name is refused (never silently replaced), an unknown name is a
UserInputError listing the known names and the closest one."""

from __future__ import annotations

import pytest

from srl_rlvr.core.names import NameTable
from srl_rlvr.errors import UserInputError


def _registries():
    from srl_rlvr.data.loaders.registry import LOADERS
    from srl_rlvr.rewards.registry import REWARD_FUNCS
    from srl_rlvr.routing.backends import TARGET_BACKENDS
    from srl_rlvr.serving.backends import BACKENDS

    return {"reward": (REWARD_FUNCS, "math"), "format": (LOADERS, "s1k"),
            "route-target backend": (TARGET_BACKENDS, "hf"), "serving backend": (BACKENDS, "openai")}


@pytest.mark.parametrize("kind", ["reward", "format", "route-target backend", "serving backend"])
def test_each_registry_refuses_a_taken_name_and_explains_an_unknown_one(kind):
    table, taken = _registries()[kind]
    assert isinstance(table, NameTable) and table.kind == kind
    original = table.get(taken)  # loads a lazy entry (the openai serving backend) first
    with pytest.raises(ValueError, match="already registered"):
        table.add(taken, object())
    assert table.get(taken) is original
    with pytest.raises(UserInputError, match=rf"unknown {kind} '{taken}x' \(did you mean '{taken}'\?\); known"):
        table.get(f"{taken}x")


def test_a_lazy_entry_loads_on_first_get_and_only_once():
    loads = []
    table: NameTable[str] = NameTable("widget", lazy={"late": lambda: (loads.append(1), table.add("late", "ok"))})
    assert "late" in table and table.names() == ["late"]
    assert table.get("late") == "ok" and table.get("late") == "ok" and loads == [1]


def test_bad_names_are_refused():
    table: NameTable[int] = NameTable("widget")
    for bad in ("", None, 3):
        with pytest.raises(ValueError, match="non-empty string"):
            table.add(bad, 1)  # type: ignore[arg-type]
