"""Route configs: the shipped YAML loads, wrong keys and values name the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from srl_rlvr.errors import UserInputError
from srl_rlvr.routing.build import build_cascade, build_router
from srl_rlvr.routing.config import load_route_config

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "configs" / "route-cpu.yaml"


def test_shipped_config_loads_and_its_header_is_the_command():
    config = load_route_config(SHIPPED)
    assert config.tier_names() == ["base", "srl_rlvr", "teacher"]
    teacher = config.tiers[2].tier
    assert teacher.simulated and teacher.backend == "demo_solver" and teacher.cost.usd_per_mtok_output == 15.0
    assert config.tiers[1].tier.model == str(ROOT / "out" / "demo" / "models" / "srl_rlvr")
    assert config.tiers[0].pending_cost == {"instance_usd_per_hour": 0.10, "output_tokens_per_s": "measured"}
    assert config.eval.pair == ["srl_rlvr", "teacher"] and config.cascade.tiers == ["srl_rlvr", "teacher"]
    first = SHIPPED.read_text().splitlines()[0]
    assert first.startswith("# srl-rlvr route eval --config configs/route-cpu.yaml --data ")


def _write(tmp_path, text):
    path = tmp_path / "route.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "text, message",
    [
        ("tiers: {a: {backend: hf, modle: x}}", "section 'tiers.a': unknown key 'modle' (did you mean 'model'?)"),
        ("tiers: {a: {backend: hf, model: x}}\nrouter: {treshold: 0.2}", "section 'router': unknown key 'treshold'"),
        ("tiers: {a: {backend: gpu, model: x}}", "'tiers.a.backend': unknown backend 'gpu'"),
        ("tiers: {a: {model: x}}", "'tiers.a.backend' is required"),
        ("tiers: {a: {backend: hf}}", "'tiers.a.model' is required for backend 'hf'"),
        ("tiers: {a: {backend: hf, model: x, cost: {usd_per_mtok_output: 1, instance_usd_per_hour: 1}}}", "not both"),
        ("tiers: {a: {backend: hf, model: x, cost: {instance_usd_per_hour: 1, output_tokens_per_s: fast}}}",
         "'measured'"),
        ("tiers: {a: {backend: hf, model: x, quality: {math: 2}}}", "must be in [0, 1]"),
        ("tiers: {a: {backend: hf, model: x}}\neval: {pair: [a, b]}", "'eval.pair': unknown tier 'b'"),
        ("tiers: {a: {backend: hf, model: x}}\npredictor: {folds: 1}", "'predictor.folds'"),
        ("tiers: {a: {backend: hf, model: x}}\nrouter: {threshold: high}", "'router.threshold' must be"),
        ("tiers: {}", "'tiers' must list at least one tier"),
        ("name: 'a b'\ntiers: {a: {backend: hf, model: x}}", "'name' must be"),
        ("tiers: {a: {backend: hf, model: x, quality: {math: nothere.json}}}", "eval report"),
    ],
)
def test_bad_configs_name_file_and_key(tmp_path, text, message):
    path = _write(tmp_path, text)
    with pytest.raises(UserInputError) as info:
        load_route_config(path)
    assert str(path) in str(info.value) and message in str(info.value)


def test_overrides_merge_and_resolve_paths_against_the_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = load_route_config(SHIPPED, {"tiers.srl_rlvr.model": "smollm2-135m",
                                         "tiers.base.predictions": "runs/p.jsonl", "router.threshold": 0.3})
    assert config.tiers[1].tier.model == "smollm2-135m"
    assert config.tiers[0].predictions == [str(tmp_path / "runs" / "p.jsonl")]
    assert config.router.threshold == 0.3
    with pytest.raises(UserInputError, match="'tiers.nope': no such tier"):
        load_route_config(SHIPPED, {"tiers.nope.model": "x"})
    with pytest.raises(UserInputError, match="unknown key 'routr'"):
        load_route_config(SHIPPED, {"routr.threshold": 0.3})


def test_quality_from_an_eval_report(tmp_path):
    (tmp_path / "metrics.json").write_text('{"greedy_accuracy": 0.25}')
    path = _write(tmp_path, "tiers: {a: {backend: hf, model: x, quality: {math: metrics.json}}}")
    assert load_route_config(path).tiers[0].tier.quality == {"math": 0.25}


def test_build_cascade_and_router_need_a_price_for_measured_tiers(tmp_path):
    config = load_route_config(SHIPPED)
    with pytest.raises(UserInputError, match="measured throughput"):
        build_router(config)
    tiers = config.resolved_tiers({"base": 40.0, "srl_rlvr": 40.0})
    assert tiers[0].cost.usd_per_mtok_output == pytest.approx(0.10 / (40 * 3600) * 1e6)
    cascade = build_cascade(config, tiers, log=tmp_path / "esc.jsonl")
    assert [t.name for t in cascade.tiers] == ["srl_rlvr", "teacher"] and cascade.k == config.cascade.k
    assert build_router(config, None, tiers).model == "router-cb-0.5"
