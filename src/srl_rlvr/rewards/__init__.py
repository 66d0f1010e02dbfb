"""Reward functions: pure per-completion scores plus TRL-style batch adapters in a name-keyed registry.

* ``srl_step_reward`` / ``parse_think_action``: SRL next-step similarity (``srl.py``).
* ``math_answer_reward`` / ``extract_answer``: math-verify answer check (``math.py``).
* ``code_test_reward``: test pass fraction in a subprocess sandbox (``code.py``, ``sandbox.py``).
* ``REWARD_FUNCS`` / ``get_reward_func`` / ``register_reward``: the registry (``registry.py``).
"""

from __future__ import annotations

from srl_rlvr.rewards.code import code_test_reward
from srl_rlvr.rewards.math import extract_answer, math_answer_reward
from srl_rlvr.rewards.registry import REWARD_FUNCS, get_reward_func, register_reward
from srl_rlvr.rewards.srl import parse_think_action, srl_step_reward

__all__ = [
    "REWARD_FUNCS",
    "code_test_reward",
    "extract_answer",
    "get_reward_func",
    "math_answer_reward",
    "parse_think_action",
    "register_reward",
    "srl_step_reward",
]
