"""The catalog itself, the exporters built from it, and the training exporter's text file."""

from __future__ import annotations

import math
import re
import subprocess

import pytest
from monitoring_stack import PROMTOOL

from srl_rlvr.monitoring import catalog
from srl_rlvr.monitoring.training import TEXTFILE, TrainingExporter


def test_names_are_unique_promtool_safe_and_typed():
    assert len(catalog.CATALOG) == len(catalog.METRICS)
    for m in catalog.METRICS:
        assert re.fullmatch(r"[a-z][a-z0-9_]*", m.name), f"{m.name}: Prometheus keeps ':' for recording rules"
        assert m.kind in catalog.KINDS and m.help.endswith(".")
        assert (m.buckets is not None) == (m.kind == "histogram")


def test_series_refuses_what_the_catalog_lacks_and_names_the_close_ones():
    assert catalog.series("srl_rlvr_serving_http_responses") == "srl_rlvr_serving_http_responses_total"
    assert catalog.series("srl_rlvr_serving_e2e_request_latency_seconds", "bucket").endswith("_bucket")
    with pytest.raises(KeyError, match="did you mean srl_rlvr_training_entropy"):
        catalog.series("srl_rlvr_training_entropi")
    assert catalog.unknown_in("rate(srl_rlvr_serving_http_responses_total[5m]) > 1") == set()
    assert catalog.unknown_in('sum by (tier) (rate(vllm:e2e_request_latency_seconds_count{x="y"}[1m]))') == {
        "vllm:e2e_request_latency_seconds_count"}


def test_the_vllm_compat_rules_record_every_vllm_name_from_ours():
    rules = catalog.vllm_compat_rules()["groups"][0]["rules"]
    recorded = {r["record"] for r in rules}
    assert "vllm:e2e_request_latency_seconds_bucket" in recorded and "vllm:num_requests_waiting" in recorded
    for rule in rules:
        assert catalog.unknown_in(rule["expr"]) == set()


def test_the_training_exporter_writes_the_catalog_metrics_with_a_cost_estimate(tmp_path):
    exporter = TrainingExporter(tmp_path, "srl", max_steps=10, price_per_hour=36.0, budget_usd=2.0)
    exporter.started -= 100  # 100 s at $36/h = $1 so far
    exporter.on_log(5, {"loss": 0.1, "reward": 0.4, "reward_std": 0.2, "entropy": 1.5, "tokens_per_s": 90.0,
                        "step_time": 20.0, "rewards/srl_format_ok/mean": 0.75,
                        "dynamic_sampling/informative_fraction": 0.5})
    exporter.set_recoveries([{"reason": "nan"}, {"reason": "nan"}, {"reason": "oom"}])
    text = (tmp_path / TEXTFILE).read_text()
    values = {line.split("{")[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
              if line and not line.startswith("#") and "recoveries" not in line}
    assert values["srl_rlvr_training_global_step"] == 5 and values["srl_rlvr_training_format_ok_ratio"] == 0.75
    assert math.isclose(values["srl_rlvr_training_cost_usd"], 1.0, rel_tol=0.05)
    assert math.isclose(values["srl_rlvr_training_cost_estimate_usd"], 2.0, rel_tol=0.05)  # half the steps done
    assert 'srl_rlvr_training_recoveries_total{reason="nan",stage="srl"} 2.0' in text
    for name in values:
        catalog.metric(name)
    if PROMTOOL:
        done = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr
