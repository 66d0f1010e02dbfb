"""The demo arithmetic task: deterministic, disjoint splits, and every expert step's arithmetic is right."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from srl_rlvr.data.demo import ANSWER_PHRASE, make_demo_task, write_demo_task
from srl_rlvr.data.schema import validate_trajectory

STEP_MATH = re.compile(r"(\d+) ([-+*]) (\d+) = (\d+)")
TIMES_WORDS = {"2": "doubles", "3": "triples", "4": "quadruples"}
OPS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}


@pytest.fixture(scope="module")
def task() -> tuple[list[dict], list[dict]]:
    return make_demo_task(n_train=400, n_test=100, seed=0)


@pytest.fixture(scope="module")
def small_task() -> tuple[list[dict], list[dict]]:
    return make_demo_task(n_train=400, n_test=100, seed=0, min_ops=1, max_ops=3, numbers="small")


@pytest.fixture(params=["task", "small_task"])
def any_task(request: pytest.FixtureRequest) -> tuple[list[dict], list[dict]]:
    return request.getfixturevalue(request.param)


def test_counts_ids_and_fields(task: tuple[list[dict], list[dict]]) -> None:
    train, test = task
    assert (len(train), len(test)) == (400, 100)
    assert train[0]["id"] == "demo-train-0001" and test[-1]["id"] == "demo-test-0100"
    assert len({r["id"] for r in train + test}) == 500
    for i, row in enumerate(train + test):
        assert set(row) == {"id", "problem", "steps", "answer", "domain", "num_ops"}
        assert row["domain"] == "math" and row["num_ops"] == len(row["steps"])
        validate_trajectory(row, "demo", i + 1)  # the public trajectory contract accepts every row


def test_deterministic_for_a_seed() -> None:
    assert make_demo_task(50, 20, seed=3) == make_demo_task(50, 20, seed=3)
    assert make_demo_task(50, 20, seed=3) != make_demo_task(50, 20, seed=4)


def test_test_split_does_not_depend_on_n_train() -> None:
    assert make_demo_task(10, 30, seed=1)[1] == make_demo_task(300, 30, seed=1)[1]


def test_splits_share_no_problem_text(task: tuple[list[dict], list[dict]]) -> None:
    train, test = task
    train_problems = {r["problem"] for r in train}
    assert len(train_problems) == len(train)
    assert train_problems.isdisjoint(r["problem"] for r in test)


def test_two_to_four_steps_with_all_operations(task: tuple[list[dict], list[dict]]) -> None:
    rows = task[0] + task[1]
    assert {len(r["steps"]) for r in rows} == {2, 3, 4}
    used = {STEP_MATH.search(s).group(2) for r in rows for s in r["steps"]}
    assert used == {"+", "-", "*"}


def test_every_step_is_correct_and_chains_to_the_answer(any_task: tuple[list[dict], list[dict]]) -> None:
    for row in any_task[0] + any_task[1]:
        running = None
        for k, step in enumerate(row["steps"]):
            assert len(step) <= 100, step
            found = STEP_MATH.findall(step)
            assert len(found) == 1, f"{row['id']}: one operation per step: {step!r}"
            a, op, b, c = found[0]
            assert OPS[op](int(a), int(b)) == int(c), f"{row['id']}: wrong arithmetic in {step!r}"
            assert 0 < int(c) < 1000
            if running is not None:
                assert int(a) == running, f"{row['id']}: step {k + 1} does not continue from {running}"
            elif op != "*" or "starts with" not in step:
                # A plain start: the first operation must begin from the number in the problem.
                assert f" has {a} " in row["problem"]
            running = int(c)
        assert row["answer"] == str(running)
        assert row["steps"][-1].endswith(f"{ANSWER_PHRASE} {row['answer']}.")
        assert all(ANSWER_PHRASE not in s for s in row["steps"][:-1])
        for step in row["steps"]:
            # Every operand the steps use was given in the problem, as a number or as "doubles" etc.
            b = STEP_MATH.search(step).group(3)
            assert re.search(rf"\b{b}\b", row["problem"]) or TIMES_WORDS.get(b, "-") in row["problem"], step


def test_small_numbers_keep_operands_and_values_small(small_task: tuple[list[dict], list[dict]]) -> None:
    rows = small_task[0] + small_task[1]
    assert {len(r["steps"]) for r in rows} == {1, 2, 3}
    for row in rows:
        for step in row["steps"]:
            a, op, b, c = STEP_MATH.search(step).groups()
            assert int(b) <= 9 and 0 < int(c) <= 50, f"{row['id']}: {step!r}"
    # Same seed, other scale: other problems (the scale is part of the task's identity).
    assert small_task[1] != make_demo_task(0, 100, seed=0, min_ops=1, max_ops=3)[1]


def test_rejects_unknown_number_scale() -> None:
    with pytest.raises(ValueError, match="numbers must be one of standard, small"):
        make_demo_task(1, 1, numbers="huge")


def test_write_demo_task(tmp_path: Path) -> None:
    info = write_demo_task(tmp_path / "demo", n_train=30, n_test=10, seed=2)
    assert (info["n_train"], info["n_test"]) == (30, 10)
    train_lines = Path(info["train"]).read_text(encoding="utf-8").splitlines()
    test_lines = Path(info["test"]).read_text(encoding="utf-8").splitlines()
    assert [json.loads(x) for x in train_lines] == make_demo_task(30, 10, seed=2)[0]
    assert [json.loads(x) for x in test_lines] == make_demo_task(30, 10, seed=2)[1]
    assert sorted(p.name for p in (tmp_path / "demo").iterdir()) == ["test.jsonl", "train.jsonl"]


def test_rejects_negative_counts() -> None:
    with pytest.raises(ValueError):
        make_demo_task(-1, 10)
