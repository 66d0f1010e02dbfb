"""The SIMULATED teacher solves every demo problem from its text and nothing else."""

from __future__ import annotations

import pytest

from srl_rlvr.data.demo import make_demo_task
from srl_rlvr.data.demo.solver import UNSOLVED, solve_demo_completion, solve_demo_problem
from srl_rlvr.rewards.math import math_answer_reward


@pytest.mark.parametrize("kind", [{}, {"min_ops": 1, "max_ops": 3, "numbers": "small"}],
                         ids=["standard", "small-1to3"])
def test_solves_every_demo_problem(kind):
    # The small 1-3 operation task has one-step "a containers with b each" problems: no clause follows.
    train, test = make_demo_task(n_train=400, n_test=100, seed=7, **kind)
    wrong = [r["id"] for r in train + test
             if (s := solve_demo_problem(r["problem"])) is None or str(s[0]) != r["answer"]]
    assert wrong == []


def test_completion_scores_with_the_rlvr_reward():
    row = make_demo_task(n_train=0, n_test=3, seed=1)[1][2]
    assert math_answer_reward(solve_demo_completion(row["problem"]), row["answer"]) == 1.0


def test_refuses_other_problems():
    assert solve_demo_completion("Compute the integral of x^2 from 0 to 1.") == UNSOLVED
