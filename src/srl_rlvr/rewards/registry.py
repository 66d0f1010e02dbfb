"""Name-keyed reward registry (verl style): configs name a reward, this turns the name into a TRL function.

Built on :class:`srl_rlvr.core.names.NameTable`, like every registry here: a taken name is refused, an
unknown one is answered with the close matches.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from srl_rlvr.core.names import NameTable
from srl_rlvr.rewards.trl_batch import (
    code_test_reward_batch,
    math_answer_reward_batch,
    srl_step_reward_batch,
    srl_step_reward_lenient_batch,
)

RewardFunc = Callable[..., list[float]]
F = TypeVar("F", bound=Callable[..., Any])

REWARD_FUNCS: NameTable[RewardFunc] = NameTable("reward")
for _name, _func in (("srl", srl_step_reward_batch), ("srl_strict", srl_step_reward_batch),
                     ("srl_lenient", srl_step_reward_lenient_batch), ("math", math_answer_reward_batch),
                     ("code", code_test_reward_batch)):
    REWARD_FUNCS.add(_name, _func)


def get_reward_func(name: str) -> RewardFunc:
    """The TRL-style reward function registered under ``name``.

    >>> get_reward_func("srl").__name__
    'srl_step_reward'
    >>> get_reward_func("mathh")
    Traceback (most recent call last):
    ...
    srl_rlvr.errors.UserInputError: unknown reward 'mathh' (did you mean 'math'?); known rewards: code, math, srl, srl_lenient, srl_strict
    """  # noqa: E501 - the doctest's expected exception line above cannot be wrapped
    return REWARD_FUNCS.get(name)


def register_reward(name: str) -> Callable[[F], F]:
    """Decorator: register a TRL-style ``f(completions, **columns) -> list[float]`` under ``name``.

    Names are unique; registering a taken name raises ValueError rather than silently replacing it.

    >>> @register_reward("length_demo")
    ... def length_reward(completions, **kwargs):
    ...     return [float(len(c)) for c in completions]
    >>> get_reward_func("length_demo")(["ab", "abc"])
    [2.0, 3.0]
    >>> REWARD_FUNCS.remove("length_demo")
    """
    return REWARD_FUNCS.register(name)
