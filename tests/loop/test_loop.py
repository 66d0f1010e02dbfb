"""``srl-rlvr loop`` end to end on the tiny model: a real ``srl-rlvr serve`` child process following the
registry alias, real traffic through its cascade, distill from its teacher tier (the SIMULATED demo
solver), SRL from the champion, the gate, the hot-swap and the router refit.

The tiny model's answers are noise, so the cascade escalates every traffic problem and the gate refuses
any candidate on its merits; the first turn therefore promotes with ``registry.force_reason`` (a drill,
audited as a forced promotion) to exercise the swap, and the second turn shows a refusal leaving the
server where it was.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from srl_rlvr.errors import UserInputError
from srl_rlvr.pipelines.loop import LoopStopped, load_loop_config, run_loop
from srl_rlvr.pipelines.loop.collect import collect_prompts
from srl_rlvr.registry.lifecycle import Registry

ROOT = Path(__file__).resolve().parents[2]
STAGE_ARGS = dict(num_generations=2, per_device_train_batch_size=4, max_completion_length=8, max_steps=2,
                  learning_rate=1e-2, logging_steps=1, report_to=[], save_strategy="no", use_cpu=True, bf16=False,
                  gradient_checkpointing=False, disable_tqdm=True, seed=0, max_refill_rounds=1)


def loop_yaml(tmp: Path, tiny: Path, registry: str, **over) -> Path:
    route = yaml.safe_load((ROOT / "configs" / "loop-route-cpu.yaml").read_text(encoding="utf-8"))
    (tmp / "route.yaml").write_text(yaml.safe_dump(route), encoding="utf-8")
    config = {
        "data": {"demo": {"seed": 5, "n_gate": 6, "n_traffic": 6, "min_ops": 1, "max_ops": 2}},
        "registry": {"uri": registry, "name": "demo-math", "start_model": str(tiny)},
        "serve": {"route_config": "route.yaml", "poll_s": 0.3, "swap_timeout_s": 120},
        "traffic": {"max_tokens": 8, "concurrency": 2},
        "teacher": {"samples": 1, "max_attempts": 1, "min_kept": 2},
        "train": {"stages": ["srl"], "srl": {**STAGE_ARGS, "reward_mode": "lenient"},
                  "eval": {"max_new_tokens": 8, "batch_size": 6}, "tracking": {"mlflow": False}},
    }
    for key, value in over.items():
        section, _, field = key.partition("__")
        config.setdefault(section, {})[field] = value
    path = tmp / "loop.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def two_turns(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("loop")
    registry = f"sqlite:///{root / 'registry.db'}"
    first = run_loop(load_loop_config(loop_yaml(root, tiny_model_dir, registry,
                                                registry__force_reason="drill: exercise the hot-swap")),
                     root / "turn1")
    second = run_loop(load_loop_config(loop_yaml(root, tiny_model_dir, registry)), root / "turn2")
    return root, registry, first, second


def steps_of(report: dict) -> dict[str, dict]:
    return {s["step"]: s for s in report["steps"]}


def test_first_turn_registers_gates_and_the_server_swaps_to_the_new_champion(two_turns):
    root, registry_uri, first, _ = two_turns
    s = steps_of(first)
    assert [r["step"] for r in first["steps"]] == ["data", "bootstrap", "serve", "traffic", "collect", "distill",
                                                   "train", "register", "gate", "hot_swap", "router"]
    assert all(r["status"] == "done" and r["seconds"] >= 0 for r in first["steps"])
    assert s["bootstrap"]["champion"] == "1"  # the start model became the first holder
    assert s["serve"]["version"] == "1"
    # Noise answers: the cascade escalated every request, the teacher answered and was logged each time.
    assert s["traffic"]["requests"] == 6 and s["traffic"]["escalated"] == 6
    assert s["traffic"]["answered_by"] == {"teacher": 6} and s["traffic"]["served_accuracy"] == 1.0
    assert s["collect"]["counts"]["from_escalation"] == 6
    counts = s["distill"]["counts"]
    assert s["distill"]["teacher_model"] == "tier-loop-teacher"
    # Every prompt is kept (the teacher is exact) except those sharing an 8-gram with the gate set: the demo's
    # templates make that happen between different problems too ("... her number of pencils doubles and").
    assert counts["kept"] + counts["contaminated"] == 6 and counts["kept"] >= 2
    assert s["register"]["version"] == "2"
    assert s["gate"]["forced"] is True and s["gate"]["holder"] == "2" and "refused" in s["gate"]["decision"]
    assert s["hot_swap"]["swapped"] is True and s["hot_swap"]["served_version"] == "2"
    assert s["router"]["server_loaded"] is True
    assert first["teacher"].endswith("(SIMULATED)")
    registry = Registry.open(registry_uri)
    assert registry.backend.alias_version("demo-math", "champion") == "2"
    actions = [e["action"] for e in registry.history("demo-math")]
    assert actions[:4] == ["register", "promote", "register", "force_promote"]  # then turn 2's register
    # The candidate trained from the champion's weights on the distilled trajectories.
    trained = json.loads((root / "turn1" / "train" / "report.json").read_text(encoding="utf-8"))
    assert trained["config"]["model"] == str(Path(registry.backend.get("demo-math", "1").source))
    distilled = (root / "turn1" / "distill" / "trajectories.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(distilled) == counts["kept"] and all(json.loads(line)["steps"] for line in distilled)
    for name in ("loop_report.json", "loop_report.md", "loop_timeline.png"):
        assert (root / "turn1" / name).stat().st_size > 0


def test_second_turn_is_refused_and_the_server_stays_on_the_champion(two_turns):
    _, registry_uri, _, second = two_turns
    s = steps_of(second)
    assert s["bootstrap"]["champion"] == "2" and s["serve"]["version"] == "2"
    assert s["register"]["version"] == "3"
    assert s["gate"]["promoted"] is False and s["gate"]["holder"] == "2"
    assert "refused" in s["gate"]["summary"]
    assert s["hot_swap"]["swapped"] is False and s["hot_swap"]["served_version"] == "2"
    registry = Registry.open(registry_uri)
    assert registry.backend.get("demo-math", "3").status == "candidate"
    assert registry.backend.alias_version("demo-math", "champion") == "2"


def test_collect_keeps_verified_escalations_once_and_counts_the_rest(tmp_path):
    log = tmp_path / "esc.jsonl"
    rows = [{"id": "a", "problem": "P1", "solution": "x", "answer": "3", "verified": True, "escalated_tier": "t"},
            {"id": "b", "problem": "P1", "solution": "x", "answer": "3", "verified": True},
            {"id": "c", "problem": "P2", "solution": "x", "answer": "4", "verified": False},
            {"id": "d", "problem": "P3", "solution": "x", "verified": True}]
    log.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(json.dumps({"id": "a", "problem": "P4", "answer": "9"}) + "\n", encoding="utf-8")
    counts = collect_prompts([log, tmp_path / "absent.jsonl"], [prompts], tmp_path / "out.jsonl")
    kept = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [(r["id"], r["problem"], r["answer"]) for r in kept] == [("a", "P1", "3"), ("a-2", "P4", "9")]
    assert counts["dropped_duplicate"] == 1 and counts["dropped_unverified"] == 1
    assert counts["dropped_no_answer"] == 1 and counts["missing_logs"] == 1


def test_bad_loop_configs_name_the_key(tmp_path, tiny_model_dir):
    path = loop_yaml(tmp_path, tiny_model_dir, "sqlite:///x.db", teacher__sample=2)
    with pytest.raises(UserInputError, match=r"section 'teacher': unknown key 'sample'.*samples"):
        load_loop_config(path)
    path = loop_yaml(tmp_path, tiny_model_dir, "sqlite:///x.db", train__model="x")
    with pytest.raises(UserInputError, match=r"'train.model' is set by the loop"):
        load_loop_config(path)
    path = loop_yaml(tmp_path, tiny_model_dir, "sqlite:///x.db", train__stages=["srl", "eval"])
    with pytest.raises(UserInputError, match=r"train.stages"):
        load_loop_config(path)
    p = subprocess.run([sys.executable, "-m", "srl_rlvr.cli.main", "loop", "--config", str(path), "--out",
                        str(tmp_path / "o")], capture_output=True, text=True, timeout=300)
    assert p.returncode == 2 and "train.stages" in p.stderr and "Traceback" not in p.stderr


def test_shipped_loop_config_loads():
    config = load_loop_config(ROOT / "configs" / "loop-cpu.yaml")
    assert config.serve.route_config == str(ROOT / "configs" / "loop-route-cpu.yaml")
    assert config.train["stages"] == ["srl", "rlvr"]


def test_a_loop_with_nothing_to_distill_stops_before_training(tiny_model_dir, tmp_path):
    # No traffic and no prompt files: nothing escalates, so distill has no prompts and the loop says so.
    path = loop_yaml(tmp_path, tiny_model_dir, f"sqlite:///{tmp_path / 'r.db'}")
    config = load_loop_config(path)
    config.data.demo.n_traffic = 0
    with pytest.raises(LoopStopped, match="nothing to distill"):
        run_loop(config, tmp_path / "out")
    report = json.loads((tmp_path / "out" / "loop_report.json").read_text(encoding="utf-8"))
    assert [s["step"] for s in report["steps"]][-1] == "distill"
    assert report["steps"][-1]["status"] == "failed"
