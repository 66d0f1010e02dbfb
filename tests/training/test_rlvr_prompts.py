"""RLVR prompt modes: the full problem, or the SRL prompt of the last step (expert steps 1..N-1 given)."""

from __future__ import annotations

import json

import pytest

from srl_rlvr.data.loaders.registry import load_source
from srl_rlvr.data.srl import build_instances
from srl_rlvr.prompts import full_problem_messages
from srl_rlvr.training.rlvr_config import RLVRConfig
from srl_rlvr.training.stages import rlvr_dataset

ROWS = [
    {"id": "a", "problem": "Ann has 3 bags with 4 pens in each. She buys 5 more. How many pens?",
     "steps": ["Ann starts with 3 * 4 = 12 pens.", "After buying 5 more, she has 12 + 5 = 17 pens. The answer is 17."],
     "answer": "17"},
    {"id": "b", "problem": "Bo has 9 cards. He loses 2 cards. How many cards?",
     "steps": ["After losing 2, he has 9 - 2 = 7 cards. The answer is 7."], "answer": "7"},
]


@pytest.fixture
def traj_file(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS), encoding="utf-8")
    return path


def test_full_mode_prompts_the_whole_problem(traj_file):
    ds = rlvr_dataset(traj_file, "math")
    assert ds[0]["prompt"] == full_problem_messages(ROWS[0]["problem"])
    assert ds["answer"] == ["17", "7"]


def test_final_step_mode_is_the_srl_prompt_of_the_last_step(traj_file):
    ds = rlvr_dataset(traj_file, "math", prompt_mode="final_step")
    instances = build_instances(load_source(str(traj_file)).rows).instances
    last = {row["trajectory_id"]: row for row in instances if row["step_index"] == row["num_steps"]}
    assert ds[0]["prompt"] == last["a"]["prompt"]
    assert ds[1]["prompt"] == last["b"]["prompt"]
    user = ds[0]["prompt"][1]["content"]
    assert "Ann starts with 3 * 4 = 12 pens." in user  # earlier expert steps are given
    assert "The answer is 17" not in user  # the step to write is not
    assert ds["answer"] == ["17", "7"]


def test_unknown_prompt_mode_is_refused(tmp_path):
    with pytest.raises(ValueError, match="prompt_mode must be one of full, final_step"):
        RLVRConfig(output_dir=str(tmp_path), prompt_mode="middle", use_cpu=True, report_to=[])


def test_final_step_skips_an_answer_only_last_step() -> None:
    """With the answer as its own step, the RLVR prompt is for the last operation, not for the copy."""
    from srl_rlvr.data.schema import Trajectory
    from srl_rlvr.training.stages import rlvr_messages

    separate = Trajectory(id="a", problem="P", steps=["4 * 2 = 8", "8 - 5 = 3", "The answer is 3."], answer="3")
    inline = Trajectory(id="b", problem="P", steps=["4 * 2 = 8", "8 - 5 = 3. The answer is 3."], answer="3")
    for traj in (separate, inline):
        user = rlvr_messages(traj, "final_step")[1]["content"]
        assert user.endswith("Step 1: 4 * 2 = 8\n\nWrite step 2.")
    one = Trajectory(id="c", problem="P", steps=["The answer is 3."], answer="3")
    assert rlvr_messages(one, "final_step")[1]["content"].endswith("Write step 1.")


def test_stepwise_mode_keeps_the_problem_for_the_trainers_own_prompts(traj_file):
    """prompt_mode 'stepwise': the trainer builds every call's prompt from ``problem`` and its own steps;
    ``prompt`` is the first call's (eval's step-1 prompt)."""
    from srl_rlvr.prompts import srl_step_messages

    ds = rlvr_dataset(traj_file, "math", prompt_mode="stepwise")
    assert ds["problem"] == [r["problem"] for r in ROWS] and ds["answer"] == ["17", "7"]
    assert ds[0]["prompt"] == srl_step_messages(ROWS[0]["problem"], [], 1)
    assert ds["expert_steps"] == [r["steps"] for r in ROWS]  # what stepwise_step_reward compares against
    assert "problem" not in rlvr_dataset(traj_file, "math").column_names
