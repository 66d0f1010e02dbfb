"""Name-keyed reward registry (verl style): configs name a reward, this turns the name into a TRL function."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from srl_rlvr.errors import UserInputError
from srl_rlvr.rewards.adapters import (
    code_test_reward_batch,
    math_answer_reward_batch,
    srl_step_reward_batch,
    srl_step_reward_lenient_batch,
)

RewardFunc = Callable[..., list[float]]
F = TypeVar("F", bound=Callable[..., Any])

REWARD_FUNCS: dict[str, RewardFunc] = {
    "srl": srl_step_reward_batch,
    "srl_strict": srl_step_reward_batch,
    "srl_lenient": srl_step_reward_lenient_batch,
    "math": math_answer_reward_batch,
    "code": code_test_reward_batch,
}


def get_reward_func(name: str) -> RewardFunc:
    """The TRL-style reward function registered under ``name``.

    >>> get_reward_func("srl").__name__
    'srl_step_reward'
    >>> get_reward_func("bleu")
    Traceback (most recent call last):
    ...
    srl_rlvr.errors.UserInputError: unknown reward 'bleu'; known rewards: code, math, srl, srl_lenient, srl_strict
    """
    try:
        return REWARD_FUNCS[name]
    except KeyError:
        known = ", ".join(sorted(REWARD_FUNCS))
        raise UserInputError(f"unknown reward {name!r}; known rewards: {known}") from None


def register_reward(name: str) -> Callable[[F], F]:
    """Decorator: register a TRL-style ``f(completions, **columns) -> list[float]`` under ``name``.

    Names are unique; registering a taken name raises ValueError rather than silently replacing it.

    >>> @register_reward("length_demo")
    ... def length_reward(completions, **kwargs):
    ...     return [float(len(c)) for c in completions]
    >>> get_reward_func("length_demo")(["ab", "abc"])
    [2.0, 3.0]
    >>> del REWARD_FUNCS["length_demo"]
    """
    if not name or not isinstance(name, str):
        raise ValueError(f"reward name must be a non-empty string, got {name!r}")

    def decorator(func: F) -> F:
        if name in REWARD_FUNCS:
            raise ValueError(f"reward {name!r} is already registered (to {REWARD_FUNCS[name].__name__})")
        REWARD_FUNCS[name] = func
        return func

    return decorator
