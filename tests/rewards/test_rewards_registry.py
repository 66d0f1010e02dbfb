"""Registry and TRL-style adapters."""

from __future__ import annotations

import pytest

from srl_rlvr.errors import UserInputError
from srl_rlvr.rewards import REWARD_FUNCS, get_reward_func, register_reward

# What TRL's GRPOTrainer passes besides completions and dataset columns.
TRL_EXTRAS = {
    "prompts": ["p", "p"],
    "completion_ids": [[1], [2]],
    "trainer_state": None,
    "log_extra": None,
    "log_metric": None,
}


def test_known_names_and_log_names() -> None:
    assert {"srl", "srl_strict", "srl_lenient", "math", "code"} <= set(REWARD_FUNCS)
    assert get_reward_func("srl") is get_reward_func("srl_strict")
    assert {name: get_reward_func(name).__name__ for name in ["srl", "srl_lenient", "math", "code"]} == {
        "srl": "srl_step_reward",
        "srl_lenient": "srl_step_reward_lenient",
        "math": "math_answer_reward",
        "code": "code_test_reward",
    }


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(UserInputError) as error:
        get_reward_func("rouge")
    message = str(error.value)
    assert "'rouge'" in message
    for name in ["code", "math", "srl", "srl_lenient", "srl_strict"]:
        assert name in message


def test_register_reward_adds_and_refuses_duplicates() -> None:
    @register_reward("test_constant")
    def constant(completions, **kwargs):
        return [0.5] * len(completions)

    try:
        assert get_reward_func("test_constant") is constant
        with pytest.raises(ValueError, match="already registered"):
            register_reward("test_constant")(constant)
        with pytest.raises(ValueError, match="already registered"):
            register_reward("srl")(constant)
    finally:
        REWARD_FUNCS.remove("test_constant")
    with pytest.raises(ValueError):
        register_reward("")


@pytest.mark.parametrize("conversational", [False, True])
def test_srl_adapters_accept_trl_inputs(conversational: bool) -> None:
    texts = ["<think>add</think>x = 5", "x = 5"]
    completions = [[{"role": "assistant", "content": t}] for t in texts] if conversational else texts
    columns = {"expert_step": ["x = 5", "x = 5"], "extra_column": [1, 2], **TRL_EXTRAS}
    assert get_reward_func("srl")(completions, **columns) == [1.0, -1.0]
    assert get_reward_func("srl_lenient")(completions, **columns) == [1.0, 0.0]


def test_reasoning_split_off_by_trl_is_put_back() -> None:
    completions = [[{"role": "assistant", "reasoning_content": "add", "content": "x = 5"}]]
    assert get_reward_func("srl")(completions, expert_step=["x = 5"]) == [1.0]
    completions = [[{"role": "assistant", "thinking": "add", "content": [{"type": "text", "text": "x = 5"}]}]]
    assert get_reward_func("srl")(completions, expert_step=["x = 5"]) == [1.0]


def test_math_adapter() -> None:
    completions = [[{"role": "assistant", "content": "so \\boxed{12}"}], [{"role": "assistant", "content": "13"}]]
    assert get_reward_func("math")(completions, answer=["12", "12"], **TRL_EXTRAS) == [1.0, 0.0]


def test_code_adapter_with_and_without_entry_point() -> None:
    completions = ["def f(x):\n    return x + 1", "def f(x):\n    return x"]
    tests = [["assert f(1) == 2", "assert f(2) == 3"], ["assert f(1) == 2", "assert f(0) == 0"]]
    assert get_reward_func("code")(completions, tests=tests, **TRL_EXTRAS) == [1.0, 0.5]
    humaneval_style = "def check(candidate):\n    assert candidate(1) == 2\n"
    scores = get_reward_func("code")(
        completions, tests=[humaneval_style, humaneval_style], entry_point=["f", "f"], **TRL_EXTRAS
    )
    assert scores == [1.0, 0.0]


def test_missing_column_is_named() -> None:
    with pytest.raises(KeyError, match="expert_step"):
        get_reward_func("srl")(["x"], answer=["x"])
    with pytest.raises(ValueError, match="2 values for 1 completions"):
        get_reward_func("math")(["x"], answer=["1", "2"])
