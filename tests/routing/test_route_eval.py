"""``srl-rlvr route eval`` end to end: cached predictions, a tiny live model, and its error messages."""

from __future__ import annotations

import json
import random

import pytest

from srl_rlvr.cli.main import main
from srl_rlvr.data.demo import write_demo_task
from srl_rlvr.data.loaders.registry import load_source
from srl_rlvr.errors import UserInputError
from srl_rlvr.routing import load_router


def _run(argv):
    with pytest.raises(SystemExit) as info:
        main(argv)
    return info.value.code


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    folder = tmp_path_factory.mktemp("demo")
    write_demo_task(folder, n_train=0, n_test=200, seed=3)
    return folder / "test.jsonl"


def _fake_predictions(demo, path, rate):
    """A small model that is right with a probability that falls with the number of operations."""
    rng = random.Random(0)
    with path.open("w") as f:
        for line in demo.read_text().splitlines():
            row = json.loads(line)
            right = rng.random() < rate[row["num_ops"]]
            answer = row["answer"] if right else str(int(row["answer"]) + 7)
            f.write(json.dumps({"id": row["id"], "completion": f"Some steps. The answer is {answer}.",
                                "correct": right, "num_tokens": 40}) + "\n")


def test_cached_predictions_router_beats_random(tmp_path, demo):
    preds = tmp_path / "small_predictions.jsonl"
    _fake_predictions(demo, preds, {2: 0.8, 3: 0.35, 4: 0.05})
    config = tmp_path / "route.yaml"
    config.write_text(f"""
tiers:
  small: {{backend: hf, model: x, predictions: {preds}, cost: {{usd_per_mtok_input: 0.0, usd_per_mtok_output: 0.5}}}}
  teacher: {{backend: demo_solver, simulated: true, cost: {{usd_per_mtok_input: 3.0, usd_per_mtok_output: 15.0}}}}
cascade: {{k: 1}}
""")
    out = tmp_path / "out"
    assert _run(["route", "eval", "--config", str(config), "--data", str(demo), "--out", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    for key in ("apgr", "cpt50", "cpt80", "cost", "accuracy"):
        assert key in m and key in m["random"]
    assert m["apgr"] > m["random"]["apgr"] + 0.05
    assert m["apgr"] <= m["oracle"]["apgr"] + 1e-9
    assert m["cpt80"] < m["random"]["cpt80"]
    assert m["strong_share"] == pytest.approx(0.5, abs=0.05)
    assert m["accuracy"] > m["random"]["accuracy"]  # same strong share, better picks
    assert (m["tiers"]["teacher"]["simulated"] and m["simulated_tiers"] == ["teacher"]
            and "SIMULATED" in m["simulated_note"])
    assert "cross-fitting" in m["held_out"]
    assert (out / "cost_quality.png").stat().st_size > 10_000
    escalations = load_source(str(out / "escalations.jsonl")).rows
    small_wrong_or_unsure = m["cascade"]["escalations_logged"]
    assert len(escalations) == small_wrong_or_unsure == 0  # every fake completion states an answer: k=1 accepts it
    assert m["cascade"]["accuracy"] == pytest.approx(m["tiers"]["small"]["accuracy"])
    routes = [json.loads(line) for line in (out / "routes.jsonl").read_text().splitlines()]
    assert len(routes) == 200 and set(routes[0]["held_out_quality"]) == {"small", "teacher"}


def test_live_tiny_model_tier_with_samples(tmp_path, demo, tiny_model_dir):
    config = tmp_path / "route.yaml"
    config.write_text(f"""
tiers:
  tiny: {{backend: hf, model: {tiny_model_dir}, cost: {{instance_usd_per_hour: 0.1, output_tokens_per_s: measured}}}}
  teacher: {{backend: demo_solver, simulated: true, cost: {{usd_per_mtok_input: 3.0, usd_per_mtok_output: 15.0}}}}
cascade: {{k: 2}}
eval: {{max_new_tokens: 4, batch_size: 8}}
""")
    out = tmp_path / "out"
    assert _run(["route", "eval", "--config", str(config), "--data", str(demo), "--out", str(out),
                 "--limit", "6"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["n"] == 6 and m["tiers"]["tiny"]["accuracy"] == 0.0 and m["tiers"]["teacher"]["accuracy"] == 1.0
    assert "(measured)" in m["tiers"]["tiny"]["cost_source"] and m["tiers"]["tiny"]["usd_per_mtok_output"] > 0
    rows = [json.loads(line) for line in (out / "tiers" / "tiny" / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and len(rows[0]["sample_completions"]) == 2
    # random weights never state an answer: every item escalates to the teacher and is logged
    assert m["cascade"]["escalations_logged"] == 6 and m["cascade"]["accuracy"] == 1.0
    assert len(load_source(str(out / "escalations.jsonl")).rows) == 6
    # what the server loads: the config plus the eval's predictor, priced with the measured throughput
    router = load_router(str(config), str(out / "predictor.json"))
    assert router.tiers[0].cost.usd_per_mtok_output == pytest.approx(m["tiers"]["tiny"]["usd_per_mtok_output"])
    assert router.route("Mia has 5 pens. She buys 3 more. How many pens does she have now?").tier.name in (
        "tiny", "teacher")
    with pytest.raises(UserInputError, match="measured throughput"):
        load_router(str(config))
    # the written predictions work as a cache for the next run
    rerun = tmp_path / "rerun"
    assert _run(["route", "eval", "--config", str(config), "--data", str(demo), "--out", str(rerun), "--limit", "6",
                 "--set", f"tiers.tiny.predictions={out / 'tiers' / 'tiny' / 'predictions.jsonl'}"]) == 0
    again = json.loads((rerun / "metrics.json").read_text())
    assert again["tiers"]["tiny"]["source"].startswith("predictions:") and again["cascade"]["escalations_logged"] == 6
    assert again["tiers"]["tiny"]["usd_per_mtok_output"] == pytest.approx(m["tiers"]["tiny"]["usd_per_mtok_output"])


def test_missing_model_folder_is_a_clear_error(tmp_path, demo, capsys):
    config = tmp_path / "route.yaml"
    config.write_text("tiers:\n  srl_rlvr: {backend: hf, model: ./no/such/model}\n  t: {backend: demo_solver}\n")
    assert _run(["route", "eval", "--config", str(config), "--data", str(demo), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "model folder" in err and "does not exist" in err and "tiers.srl_rlvr.predictions" in err
    assert "Traceback" not in err


def test_predictions_missing_an_item_is_a_clear_error(tmp_path, demo, capsys):
    preds = tmp_path / "p.jsonl"
    preds.write_text(json.dumps({"id": "other", "completion": "The answer is 1."}) + "\n")
    config = tmp_path / "route.yaml"
    config.write_text(f"tiers:\n  a: {{backend: hf, model: x, predictions: {preds}}}\n  t: {{backend: demo_solver}}\n")
    assert _run(["route", "eval", "--config", str(config), "--data", str(demo), "--out", str(tmp_path / "o")]) == 2
    assert "item 'demo-test-0001' has no completion" in capsys.readouterr().err


def test_cascade_k_above_the_recorded_samples_is_an_error_not_a_silent_escalation(tmp_path, demo, capsys):
    # Greedy-only cached predictions cannot feed a k=3 cascade. The live cascade would treat the replay's
    # failure as an unsure tier and hand every item to the teacher (accuracy 1.0, zero escalations logged).
    preds = tmp_path / "small_predictions.jsonl"
    _fake_predictions(demo, preds, {2: 0.8, 3: 0.35, 4: 0.05})
    config = tmp_path / "route.yaml"
    config.write_text(f"tiers:\n  a: {{backend: hf, model: x, predictions: {preds}, cost: {{usd_per_mtok_input: 0.0, "
                      f"usd_per_mtok_output: 0.5}}}}\n  t: {{backend: demo_solver}}\n"
                      f"cascade: {{k: 3, tiers: [a, t]}}\n")
    assert _run(["route", "eval", "--config", str(config), "--data", str(demo), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "cascade.k=3 needs 3 completions per item" in err and "3 completions asked, 1 recorded" in err
