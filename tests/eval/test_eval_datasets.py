"""Eval data: CHAMP through the same harness, with unscorable answers skipped and counted, never silently."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from srl_rlvr.data.loaders.champ import load_champ
from srl_rlvr.data.schema import Trajectory
from srl_rlvr.errors import UserInputError
from srl_rlvr.eval import rescore_predictions
from srl_rlvr.eval.datasets import load_eval_items, split_scorable, unscorable_reason
from srl_rlvr.rewards.math import math_answer_reward


@pytest.mark.parametrize("answer", ["239", "2^(n-1)", "\\frac{1}{2}", "x=6, y=5", "(x+y+z)(x^2+y^2+z^2-xy-yz-xz)",
                                    "[-1, 1]", "sqrt(3)", "n!", "-2x+2", "\\text{(C)}"])
def test_math_answers_are_scorable(answer):
    assert unscorable_reason(answer) is None
    assert math_answer_reward(f"The answer is \\boxed{{{answer}}}.", answer) == 1.0


@pytest.mark.parametrize("answer, why", [
    ("No", "prose answer"), ("0 is the only possible value", "prose answer"), ("376 and 625", "prose answer"),
    ("C(10, 5), or equivalently 252", "prose answer"), ("sum_(k=1)^n 1/k", "prose answer"),
    ("x(x-1)(x-2)...(x-2022)", "cannot parse"), ("2^floor(n/2)*floor(n/2)!", "cannot parse"), ("  ", "no answer"),
])
def test_prose_and_unparseable_answers_are_not(answer, why):
    assert why in unscorable_reason(answer)


def test_a_prose_gold_answer_really_cannot_be_matched():
    """Why they are skipped: even the gold text itself scores 0 against a prose answer."""
    assert math_answer_reward("The answer is No.", "No") == 0.0


def test_champ_split_is_counted_and_every_kept_answer_scores_its_own_boxed_text():
    items = load_eval_items("champ")
    champ = load_champ()
    assert items.total == len(champ) == 270
    assert len(items.rows) + len(items.skipped) == 270 and 0 < len(items.skipped) < 270
    assert {r["id"] for r in items.skipped}.isdisjoint({t.id for t in items.rows})
    assert all(r["reason"] for r in items.skipped)
    for t in items.rows:
        assert math_answer_reward(f"The answer is \\boxed{{{t.answer}}}.", t.answer) == 1.0, t.answer
    assert f"skipped {len(items.skipped)} of 270" in items.summary()
    assert len(load_eval_items("champ", limit=5).rows) == 5


def test_a_row_without_an_answer_is_still_an_error():
    rows = [Trajectory(id="a", problem="p", steps=["x"], answer="1"), Trajectory(id="b", problem="q", steps=["y"])]
    with pytest.raises(UserInputError, match="item 'b' has no 'answer'"):
        split_scorable(rows, "f.jsonl")


def test_eval_cli_on_champ_prints_the_skip_count_and_rescoring_matches(tiny_model_dir, tmp_path):
    from srl_rlvr.cli.eval import eval_command

    out = tmp_path / "eval"
    result = CliRunner().invoke(eval_command, ["--model", str(tiny_model_dir), "--data", "champ", "--out", str(out),
                                               "--limit", "2", "--max-new-tokens", "4"])
    assert result.exit_code == 0, result.output
    skipped = [json.loads(line) for line in (out / "skipped.jsonl").read_text().splitlines()]
    assert f"champ: skipped {len(skipped)} of 270 problems" in result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n"] == 2
    run = json.loads((out / "eval_run.json").read_text())
    assert run["data"] == "champ" and run["skipped_unscorable"] == len(skipped)
    rescored = rescore_predictions(out / "predictions.jsonl", "champ")
    assert rescored["n"] == 2 and rescored["disagreements"] == []
    assert rescored["greedy_accuracy"] == metrics["greedy_accuracy"]
