"""The generated alert rules: checked-in files up to date, valid for promtool, every alert tested both ways,
only catalog metrics, and tests that can fail."""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest
import yaml

from srl_rlvr.monitoring.catalog import series, unknown_in
from srl_rlvr.monitoring.rules import (
    ALERTS,
    RUNBOOK_BASE,
    Alert,
    Case,
    alert_rules,
    build_rules,
    fast_rules,
    write_rules,
)

ROOT = Path(__file__).resolve().parents[2]
CHECKED_IN = ROOT / "infra" / "monitoring" / "prometheus"
FILES = ("alerts.yml", "alerts_test.yml", "vllm_compat.yml", "prometheus.yml", "alertmanager.yml")
PROMTOOL = shutil.which("promtool")
AMTOOL = shutil.which("amtool")
# The sections of every docs/playbooks/<AlertName>.md, in this order (tests/monitoring/test_playbooks.py checks
# their content).
PLAYBOOK_SECTIONS = ("Meaning", "Impact", "Diagnosis", "Mitigation", "Verification", "Rollback")


def tool(path: str | None, name: str) -> str:
    if path is None:
        pytest.skip(f"{name} is not installed (Debian: apt-get install prometheus prometheus-alertmanager)")
    return path


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, timeout=120)


def rules_of(data: dict) -> list[dict]:
    return [rule for group in data["groups"] for rule in group["rules"]]


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("prometheus")
    write_rules(out)
    return out


def test_checked_in_files_are_what_write_rules_generates_now(generated):
    for name in FILES:
        checked_in = CHECKED_IN / name
        assert checked_in.exists(), f"{checked_in} is missing: run `srl-rlvr monitor generate`"
        assert checked_in.read_text(encoding="utf-8") == (generated / name).read_text(encoding="utf-8"), (
            f"{checked_in} differs from what srl_rlvr/monitoring/rules.py generates: run `srl-rlvr monitor generate` "
            "(never edit the file by hand)")
        assert "do not edit by hand" in checked_in.read_text(encoding="utf-8").splitlines()[0]


def test_generation_is_deterministic(tmp_path, generated):
    write_rules(tmp_path)
    for name in FILES:
        assert (tmp_path / name).read_bytes() == (generated / name).read_bytes()


def test_promtool_check_rules_passes():
    done = run(tool(PROMTOOL, "promtool"), "check", "rules", "alerts.yml", cwd=CHECKED_IN)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in done.stdout


def test_promtool_unit_tests_pass():
    done = run(tool(PROMTOOL, "promtool"), "test", "rules", "alerts_test.yml", cwd=CHECKED_IN)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_has_for_severity_annotations_and_a_playbook():
    rules = rules_of(alert_rules())
    assert len(rules) >= 12
    assert {g["name"] for g in alert_rules()["groups"]} == {"srl-rlvr-cost", "srl-rlvr-performance",
                                                            "srl-rlvr-training"}
    for rule in rules:
        name = rule["alert"]
        assert re.fullmatch(r"\d+[smh]", rule["for"]) and not rule["for"].startswith("0"), name
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), name
        annotations = rule["annotations"]
        assert annotations["summary"].strip() and annotations["description"].strip(), name
        assert annotations["runbook_url"] == f"{RUNBOOK_BASE}{name}.md", name
        assert RUNBOOK_BASE == "https://github.com/srl-rlvr/srl-rlvr/blob/main/docs/playbooks/"
        playbook = ROOT / "docs" / "playbooks" / f"{name}.md"
        assert playbook.exists(), f"{playbook} is missing"
        text = playbook.read_text(encoding="utf-8")
        outside_code = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
        assert re.findall(r"^## (.+?)\s*$", outside_code, re.M) == list(PLAYBOOK_SECTIONS), playbook


def test_the_issue_s_alerts_are_all_there_with_the_tier_targets():
    by_name = {a.name: a for a in ALERTS}
    for name in ("TrainingSpendOverBudget", "TrainingBudgetExhaustionPredicted", "RouteSpendRateHigh",
                 "RouteBudgetNearlySpent", "ServingLatencyP95HighGold", "ServingLatencyP95HighSilver",
                 "ServingLatencyP95HighBronze", "ServingErrorRatioHigh", "ServingQueueDeep",
                 "CascadeEscalationRateHigh", "RouterFallbacksHigh", "TrainingLossNonFinite",
                 "TrainingRewardCollapse", "TrainingEntropyCollapse", "TrainingStalled", "TrainingCheckpointStale",
                 "TrainingThroughputDrop"):
        assert name in by_name, name
    bucket = series("srl_rlvr_serving_e2e_request_latency_seconds", "bucket")
    for tier, target in (("Gold", "0.2"), ("Silver", "0.5"), ("Bronze", "1")):
        alert = by_name[f"ServingLatencyP95High{tier}"]
        assert alert.expr == (f"histogram_quantile(0.95, sum by (le, tier) (rate({bucket}{{tier=\"{tier.lower()}\"}}"
                              f"[5m]))) > {target}")
        assert alert.query == alert.expr.rsplit(" > ", 1)[0] and alert.for_ == "2m"


def test_every_alert_has_a_firing_and_a_quiet_test(generated):
    tests = yaml.safe_load((generated / "alerts_test.yml").read_text())
    assert tests["rule_files"] == ["alerts.yml"] and tests["evaluation_interval"] == "1m"
    firing, quiet = Counter(), Counter()
    for test in tests["tests"]:
        assert test["input_series"], test["name"]
        for check in test["alert_rule_test"]:
            (firing if check["exp_alerts"] else quiet)[check["alertname"]] += 1
    for alert in ALERTS:
        assert firing[alert.name] >= 1, f"{alert.name} has no firing test"
        assert quiet[alert.name] >= 1, f"{alert.name} has no quiet test"


def test_rules_and_queries_name_only_catalog_metrics(generated):
    rules = rules_of(yaml.safe_load((generated / "alerts.yml").read_text()))
    exprs = [r["expr"] for r in rules] + [a.query for a in ALERTS] + [r["expr"] for r in rules_of(fast_rules(0.1))]
    for expr in exprs:
        assert unknown_in(expr) == set(), expr
    for alert in ALERTS:
        assert alert.query in alert.expr and alert.query != alert.expr, alert.name
    tests = yaml.safe_load((generated / "alerts_test.yml").read_text())
    for test in tests["tests"]:
        for item in test["input_series"]:
            assert unknown_in(item["series"]) == set(), item["series"]


def test_fast_rules_is_the_latency_alert_without_tier_filter():
    (rule,) = rules_of(fast_rules(0.05, for_="0s"))
    bucket = series("srl_rlvr_serving_e2e_request_latency_seconds", "bucket")
    assert rule["alert"] == "ServingLatencyP95High" and rule["for"] == "0s"
    assert rule["expr"] == f"histogram_quantile(0.95, sum by (le, tier) (rate({bucket}[30s]))) > 0.05"


def test_fast_rules_pass_promtool(tmp_path):
    promtool = tool(PROMTOOL, "promtool")
    (tmp_path / "fast.yml").write_text(yaml.safe_dump(fast_rules(0.001)))
    done = run(promtool, "check", "rules", "fast.yml", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_metric_outside_the_catalog_is_refused_at_generation():
    with pytest.raises(KeyError, match="not in the catalog"):
        series("srl_rlvr_training_lossess")  # a typo in a builder fails there
    good = ALERTS[0]
    with pytest.raises(ValueError, match="not in the metrics catalog"):  # a name written as a plain string
        build_rules([dataclasses.replace(good, query="srl_rlvr_serving_no_such_metric")])
    broken = Alert("Broken", "srl-rlvr-cost", "rate(srl_rlvr_training_cost_usd[5m])", ">", "bogus_budget_usd",
                   "5m", "warning", "s", "d", Case((), "1m"), Case((), "1m"))
    with pytest.raises(ValueError, match="bogus_budget_usd"):
        build_rules([broken])
    with pytest.raises(KeyError):
        alert_rules({"NoSuchAlert": {"for": "1m"}})


def test_overrides_change_threshold_for_and_severity():
    data = alert_rules({"ServingQueueDeep": {"threshold": 64, "for": "10m", "severity": "critical"}})
    (rule,) = [r for r in rules_of(data) if r["alert"] == "ServingQueueDeep"]
    assert rule["expr"].endswith("> 64") and rule["for"] == "10m" and rule["labels"]["severity"] == "critical"
    with pytest.raises(ValueError, match="non-zero"):
        alert_rules({"ServingQueueDeep": {"for": "0m"}})


def test_promtool_fails_when_an_expectation_is_wrong(tmp_path, generated):
    """The unit tests can fail: a firing test expecting no alert fails, and so does each quiet test expecting the
    firing test's alerts (so the quiet cases really are quiet and the firing ones really fire)."""
    promtool = tool(PROMTOOL, "promtool")
    shutil.copy(generated / "alerts.yml", tmp_path / "alerts.yml")
    tests = yaml.safe_load((generated / "alerts_test.yml").read_text())

    one = yaml.safe_load(yaml.safe_dump(tests))
    first = next(t for t in one["tests"] if t["alert_rule_test"][0]["exp_alerts"])
    first["alert_rule_test"][0]["exp_alerts"] = []
    (tmp_path / "one.yml").write_text(yaml.safe_dump(one))
    done = run(promtool, "test", "rules", "one.yml", cwd=tmp_path)
    assert done.returncode != 0 and f"name: {first['name']}," in done.stdout + done.stderr, done.stdout

    expected = {t["alert_rule_test"][0]["alertname"]: t["alert_rule_test"][0]["exp_alerts"]
                for t in tests["tests"] if t["alert_rule_test"][0]["exp_alerts"]}
    for test in tests["tests"]:
        check = test["alert_rule_test"][0]
        check["exp_alerts"] = [] if check["exp_alerts"] else expected[check["alertname"]]
    (tmp_path / "swapped.yml").write_text(yaml.safe_dump(tests))
    done = run(promtool, "test", "rules", "swapped.yml", cwd=tmp_path)
    output = done.stdout + done.stderr
    assert done.returncode != 0
    failed = set(re.findall(r"name: ([^,\n]+),\n", output))
    assert failed == {t["name"] for t in tests["tests"]}, output[-3000:]


def test_promtool_check_config_passes_on_the_example_prometheus_yml(tmp_path, generated):
    promtool = tool(PROMTOOL, "promtool")
    for name in ("prometheus.yml", "alerts.yml", "vllm_compat.yml"):
        shutil.copy(generated / name, tmp_path / name)
    done = run(promtool, "check", "config", "prometheus.yml", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    config = yaml.safe_load((generated / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert config["global"]["scrape_interval"] == "15s" and config["rule_files"] == ["alerts.yml", "vllm_compat.yml"]
    assert jobs["srl-rlvr-serve"]["static_configs"] == [{"targets": ["127.0.0.1:8000"], "labels": {"tier": "gold"}}]
    assert jobs["srl-rlvr-training"]["static_configs"] == [{"targets": ["127.0.0.1:9100"]}]


def test_amtool_check_config_passes_on_the_example_alertmanager_yml(generated):
    done = run(tool(AMTOOL, "amtool"), "check-config", "alertmanager.yml", cwd=generated)
    assert done.returncode == 0, done.stdout + done.stderr
    config = yaml.safe_load((generated / "alertmanager.yml").read_text())
    urls = {hook["url"] for receiver in config["receivers"] for hook in receiver["webhook_configs"]}
    assert urls == {"http://127.0.0.1:5001/alerts"}
    assert {route["receiver"] for route in config["route"]["routes"]} == {"critical", "warning", "info"}
