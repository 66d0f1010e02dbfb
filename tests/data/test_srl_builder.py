"""The SRL construction on real and unseen data: N steps give exactly N instances, and no prompt leaks its target."""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path

import pytest

from srl_rlvr.data.loaders.registry import load_source
from srl_rlvr.data.schema import Trajectory
from srl_rlvr.data.srl import SRLBuildConfig, build_instances, render_step_prompt

FIXTURES = Path(__file__).parent.parent / "fixtures"
INSTANCE_KEYS = {"id", "trajectory_id", "step_index", "num_steps", "prompt", "expert_step"}


def champ_raw() -> dict:
    """CHAMP straight from the package file, independent of our loader."""
    text = (resources.files("champ_dataset") / "dataset_files" / "v0.json").read_text(encoding="utf-8")
    return json.loads(text)["problems"]


def prompt_text(instance: dict) -> str:
    return "\n".join(m["content"] for m in instance["prompt"] if isinstance(m.get("content"), str))


def title_of(step: str) -> str | None:
    m = re.match(r"\s*(\*\*[^*]+\*\*|#+ [^\n]+)", step)
    return m.group(1) if m else None


def assert_no_leak(instances: list[dict]) -> None:
    for inst in instances:
        text = prompt_text(inst)
        assert inst["expert_step"] not in text, inst["id"]
        if (title := title_of(inst["expert_step"])) is not None:
            assert title not in text, (inst["id"], title)


def test_champ_step_lists_give_one_instance_per_step():
    raw = champ_raw()
    expected = sum(len(p["solution"]["steps"]) for p in raw.values())
    trajs = load_source("champ").rows
    result = build_instances(trajs)
    assert result.trajectories == len(raw) == 270
    assert len(result.instances) == expected
    assert_no_leak(result.instances)
    for inst in result.instances:
        assert INSTANCE_KEYS <= inst.keys() and "answer" in inst
        assert 1 <= inst["step_index"] <= inst["num_steps"]


@pytest.mark.parametrize("style", ["{i}. {s}", "Step {i}: {s}", "**Step {i}** {s}", "### Step {i}\n{s}"])
def test_champ_steps_rendered_as_numbered_solutions_split_back_exactly(style):
    """Unseen numbered solutions: CHAMP's real steps written out as text must give back the same instances."""
    raw = champ_raw()
    trajs, expected = [], 0
    for pid, p in sorted(raw.items()):
        steps = [s["_text"].strip() for s in p["solution"]["steps"]]
        solution = "\n".join(style.format(i=i, s=s) for i, s in enumerate(steps, 1))
        trajs.append(Trajectory(id=pid, problem=p["_text"], solution=solution, answer=p["_answer"]))
        expected += len(steps)
    result = build_instances(trajs)
    assert len(result.instances) == expected
    by_id = {p: [s["_text"].strip() for s in raw[p]["solution"]["steps"]] for p in raw}
    for inst in result.instances:
        assert inst["expert_step"] == by_id[inst["trajectory_id"]][inst["step_index"] - 1]
    assert_no_leak(result.instances)


def test_prompt_holds_exactly_the_previous_steps():
    traj = Trajectory(id="t", problem="P?", steps=["first", "second", "third"], answer="3")
    insts = build_instances([traj]).instances
    assert [i["step_index"] for i in insts] == [1, 2, 3]
    assert [i["expert_step"] for i in insts] == ["first", "second", "third"]
    assert insts[2]["prompt"][-1]["content"] == render_step_prompt("P?", ["first", "second"], 3)
    assert "Step 1: first\nStep 2: second" in insts[2]["prompt"][-1]["content"]
    assert "(none yet)" in insts[0]["prompt"][-1]["content"]
    assert insts[0]["prompt"][0]["role"] == "system" and "<think>" in insts[0]["prompt"][0]["content"]
    assert all(i["answer"] == "3" and i["num_steps"] == 3 for i in insts)


def test_s1k_numbered_solutions_keep_titles_out_of_prompts():
    trajs = load_source(str(FIXTURES / "s1k_sample.jsonl"), fmt="s1k").rows
    from srl_rlvr.data.steps import split_steps

    expected = sum(len(split_steps(t.solution)) for t in trajs)
    result = build_instances(trajs)
    assert len(result.instances) == expected > len(trajs)
    assert_no_leak(result.instances)


def test_agent_transcripts_one_instance_per_assistant_action():
    path = FIXTURES / "agent_transcripts.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    expected = sum(sum(m["role"] == "assistant" for m in r["messages"]) for r in rows)
    result = build_instances(load_source(str(path)).rows)
    assert len(result.instances) == expected
    for inst in result.instances:
        # the context never includes the action being predicted, nor anything after it
        assert all(m.get("content") != inst["expert_step"] for m in inst["prompt"] if m["role"] == "assistant")
        assert inst["prompt"][1]["content"].startswith("Task:")


def test_step_range_filters_are_reported():
    trajs = [Trajectory(id=f"t{n}", problem="p", steps=[f"s{i}" for i in range(n)]) for n in (1, 2, 5)]
    result = build_instances(trajs, SRLBuildConfig(min_steps=2, max_steps=4))
    assert len(result.instances) == 2
    assert [t for t, _ in result.skipped] == ["t1", "t5"]
    assert "min_steps=2" in result.skipped[0][1] and "max_steps=4" in result.skipped[1][1]
