"""`srl-rlvr run --seeds`: one run per seed, the base eval shared, one report over the seeds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from srl_rlvr.errors import UserInputError
from srl_rlvr.eval.summary import set_summary
from srl_rlvr.pipelines.config import load_pipeline_config
from srl_rlvr.pipelines.seeds import parse_seeds, run_seeds, seed_overrides

IDS = [f"p{i}" for i in range(12)]


def _write(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def _fake_run(correct_by_seed: dict[int, dict[str, list[bool]]], calls: list):
    """A stand-in for run_pipeline that writes what the eval stage would (base only when not already there)."""

    def run(config, out_dir, command, **_):
        seed = config.srl["seed"]
        calls.append((seed, out_dir))
        _write(out_dir / "data" / "test.jsonl", [{"id": i, "num_ops": 1 + k % 3} for k, i in enumerate(IDS)])
        for label, correct in correct_by_seed[seed].items():
            target = out_dir / "eval" / "test" / label / "predictions.jsonl"
            if label == "base" and target.exists():
                continue  # shared from the first seed
            _write(target, [{"id": i, "correct": c} for i, c in zip(IDS, correct)])
        return {"accuracy": {}, "stages": {}}

    return run


def test_parse_seeds_errors() -> None:
    assert parse_seeds("0,1,2") == [0, 1, 2]
    for bad in ("0,x", "", "1,1"):
        with pytest.raises(UserInputError, match="--seeds"):
            parse_seeds(bad)


def test_seed_overrides_reach_every_trainer() -> None:
    config = load_pipeline_config(None, {"tier": "cpu", **seed_overrides(7)})
    assert config.srl["seed"] == 7 and config.rlvr["seed"] == 7 and config.sft["seed"] == 7


def test_run_seeds_shares_base_and_reports_mean_spread_and_paired_tests(tmp_path: Path) -> None:
    base = [k < 2 for k in range(12)]  # 2/12
    trained = {0: [k < 8 for k in range(12)], 1: [k < 6 for k in range(12)], 2: [k < 10 for k in range(12)]}
    by_seed = {s: {"base": base if s == 0 else [False] * 12, "srl_rlvr": trained[s]} for s in trained}
    calls: list = []

    def make(seed):
        return load_pipeline_config(None, {"tier": "cpu", "eval.models": ["base", "srl_rlvr"], **seed_overrides(seed)})

    report = run_seeds(make, tmp_path, [0, 1, 2], _fake_run(by_seed, calls), "srl-rlvr run X --seeds 0,1,2")
    assert [s for s, _ in calls] == [0, 1, 2]
    # seeds 1 and 2 got seed 0's base predictions (hard links), not the all-wrong ones their fake run would write
    for s in (1, 2):
        shared = tmp_path / f"seed-{s}" / "eval" / "test" / "base" / "predictions.jsonl"
        assert shared.read_text() == (tmp_path / "seed-0" / "eval" / "test" / "base" / "predictions.jsonl").read_text()
    summ = report["eval_summary"]["test"]
    assert summ["models"]["base"]["accuracy"] == pytest.approx(2 / 12, abs=1e-4)
    assert summ["models"]["srl_rlvr"]["accuracy"] == pytest.approx(24 / 36, abs=1e-4)
    assert summ["models"]["srl_rlvr"]["per_seed"]["values"] == pytest.approx([8 / 12, 6 / 12, 10 / 12], abs=1e-4)
    comp = summ["comparisons"]["srl_rlvr_vs_base"]
    assert comp["mean_diff"] == pytest.approx(24 / 36 - 2 / 12, abs=1e-4) and comp["p_one_sided"] < 0.05
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["seeds"] == [0, 1, 2] and "srl_rlvr" in saved["accuracy"]
    md = (tmp_path / "report.md").read_text()
    assert "seed 2" in md and "srl_rlvr vs base" in md


def test_summary_covers_the_evaluated_subset(tmp_path: Path) -> None:
    """eval.limit scores the first N problems: the summary uses those, and a model missing one is an error."""
    _write(tmp_path / "data.jsonl", [{"id": i, "num_ops": 1} for i in IDS])
    _write(tmp_path / "a.jsonl", [{"id": i, "correct": True} for i in IDS[:5]])
    _write(tmp_path / "b.jsonl", [{"id": i, "correct": False} for i in IDS[:4]])
    summ = set_summary({"srl_rlvr": [tmp_path / "a.jsonl"]}, tmp_path / "data.jsonl")
    assert summ["n"] == 5 and summ["models"]["srl_rlvr"]["accuracy"] == 1.0
    with pytest.raises(UserInputError, match="no prediction for 1 problem"):
        set_summary({"srl_rlvr": [tmp_path / "a.jsonl"], "base": [tmp_path / "b.jsonl"]}, tmp_path / "data.jsonl")
