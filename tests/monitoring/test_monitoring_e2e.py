"""The monitoring stack end to end, with real components on loopback: `srl-rlvr serve` on the tiny model (with
a router and a cascade), a tiny `srl-rlvr train srl` whose metrics.prom a real node exporter serves, a real
Prometheus scraping both every second, and a real Alertmanager with a webhook receiver.

* `promtool check metrics` is clean on the live /metrics;
* a latency-breaking load makes the latency alert reach the webhook within 60 s;
* after the load, every dashboard panel query and every alert rule's query returns at least one series
  (no empty panels, no rule that watches nothing).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import yaml
from monitoring_stack import (
    ALERTMANAGER,
    NODE_EXPORTER,
    PROMETHEUS,
    PROMTOOL,
    Stack,
    Webhook,
    free_port,
    need,
    query,
    targets_up,
)

from srl_rlvr.data.demo import make_demo_task
from srl_rlvr.data.schema import Trajectory
from srl_rlvr.data.srl import build_instances, write_jsonl
from srl_rlvr.prompts import full_problem_messages

KEY = "monitoring-key"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1", "PYTHONUNBUFFERED": "1"}
TRAIN_CONFIG = """\
tracking: {mlflow: false}
srl:
  reward_mode: lenient
  num_generations: 2
  per_device_train_batch_size: 4
  max_completion_length: 12
  learning_rate: 1.0e-2
  logging_steps: 1
  save_strategy: steps
  save_steps: 2
  use_cpu: true
  bf16: false
  gradient_checkpointing: false
  report_to: []
  seed: 0
monitoring: {budget_usd: 1.0}
"""


def _route_config(root: Path, tiny: Path) -> Path:
    config = {"name": "t", "task": "math", "tiers": {
        "small": {"backend": "hf", "model": str(tiny), "expected_output_tokens": 8, "quality": {"math": 0.3},
                  "cost": {"usd_per_mtok_input": 0.0, "usd_per_mtok_output": 0.2}},
        "teacher": {"backend": "demo_solver", "simulated": True, "expected_output_tokens": 60,
                    "quality": {"math": 1.0}, "cost": {"usd_per_mtok_input": 3.0, "usd_per_mtok_output": 15.0}}},
        "cascade": {"tiers": ["small", "teacher"], "k": 2}, "budgets": {"keys": {KEY: 5.0}}}
    path = root / "route.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def stack(tiny_model_dir, tmp_path_factory):
    need(PROMETHEUS, ALERTMANAGER, NODE_EXPORTER, PROMTOOL)
    from srl_rlvr.monitoring.catalog import vllm_compat_rules
    from srl_rlvr.monitoring.rules import alert_rules, fast_rules

    root = tmp_path_factory.mktemp("monitoring")
    processes = Stack(root)
    webhook = Webhook()
    try:
        # a finished tiny training stage, with a recovery, for the training panels
        train, _ = make_demo_task(n_train=8, n_test=2, seed=3)
        write_jsonl(root / "srl.jsonl", build_instances([Trajectory(**t) for t in train]).instances)
        (root / "train.yaml").write_text(TRAIN_CONFIG)
        done = subprocess.run([sys.executable, "-m", "srl_rlvr.cli.main", "train", "srl", "--model",
                               str(tiny_model_dir),
                               "--data", str(root / "srl.jsonl"), "--out", str(root / "srl"), "--config",
                               str(root / "train.yaml"), "--set", "max_steps=3", "--inject-fault", "nan@2"],
                              capture_output=True, text=True, env=ENV, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
        node = processes.node_exporter(root / "srl")

        serve_yaml = root / "serve.yaml"
        serve_yaml.write_text(yaml.safe_dump({"api_keys": [{"key": KEY}],
                                              "routing": {"config": str(_route_config(root, tiny_model_dir))}}))
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        processes.start(sys.executable, "-m", "srl_rlvr.cli.main", "serve", "--model", str(tiny_model_dir),
                        "--served-model-name", "tiny", "--port", str(port), "--config", str(serve_yaml),
                        ready=f"{base}/health", timeout_s=120, env=ENV)

        rules = root / "rules"
        rules.mkdir()
        (rules / "alerts.yml").write_text(yaml.safe_dump(alert_rules()))
        (rules / "fast.yml").write_text(yaml.safe_dump(fast_rules(latency_threshold_s=0.001)))
        (rules / "vllm_compat.yml").write_text(yaml.safe_dump(vllm_compat_rules()))
        alertmanager = processes.alertmanager(webhook)
        # the one server stands for a server of each tier (the scrape config labels a target's tier)
        jobs = {f"srl-rlvr-serve-{tier}": (f"127.0.0.1:{port}", {"tier": tier})
                for tier in ("gold", "silver", "bronze")}
        prometheus = processes.prometheus({**jobs, "srl-rlvr-training": (node, {})}, sorted(rules.glob("*.yml")),
                                          alertmanager)
        deadline = time.monotonic() + 60
        while set(targets_up(prometheus).values()) != {"up"} or len(targets_up(prometheus)) != 4:
            assert time.monotonic() < deadline, targets_up(prometheus)
            time.sleep(0.5)
        yield {"serve": base, "prometheus": prometheus, "webhook": webhook, "root": root}
    finally:
        processes.stop()
        webhook.close()


def ask(base: str, model: str, text: str, max_tokens: int = 16) -> httpx.Response:
    return httpx.post(f"{base}/v1/chat/completions", headers={"Authorization": f"Bearer {KEY}"}, timeout=120,
                      json={"model": model, "messages": full_problem_messages(text), "max_tokens": max_tokens,
                            "temperature": 0})


def test_promtool_check_metrics_is_clean_on_the_live_metrics(stack):
    assert ask(stack["serve"], "tiny", "What is 2 + 3?").status_code == 200
    text = httpx.get(f"{stack['serve']}/metrics", headers={"Authorization": f"Bearer {KEY}"}).text
    done = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True)
    assert done.returncode == 0 and not done.stdout.strip() and not done.stderr.strip(), done.stdout + done.stderr
    training = (stack["root"] / "srl" / "metrics.prom").read_text()
    done = subprocess.run([PROMTOOL, "check", "metrics"], input=training, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_latency_breaking_load_brings_the_alert_to_the_webhook_within_60_s(stack):
    base, webhook = stack["serve"], stack["webhook"]
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            ask(base, "tiny", "Count the apples: 3 + 4 + 5?", max_tokens=24)

    threads = [threading.Thread(target=load) for _ in range(2)]
    started = time.monotonic()
    for t in threads:
        t.start()
    try:
        while "ServingLatencyP95High" not in webhook.names():
            assert time.monotonic() - started < 60, f"no latency alert after 60 s; got {webhook.names()}"
            time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=120)
    arrived = next(t for t, a in webhook.received if a["labels"]["alertname"] == "ServingLatencyP95High")
    print(f"latency alert reached the webhook {arrived - started:.1f} s after the load started")


def test_every_panel_and_every_rule_query_returns_series(stack):
    from srl_rlvr.data.demo import make_demo_task as demo
    from srl_rlvr.monitoring.panels import all_panels
    from srl_rlvr.monitoring.rules import ALERTS

    base = stack["serve"]
    _, test = demo(20, 10, seed=5, min_ops=1, max_ops=4)
    for row in test[:6]:  # the router, the cascade and the model itself, so routing and cost series exist
        for model in ("router-t-0.5", "cascade-t", "tiny"):
            ask(base, model, row["problem"], max_tokens=8)
    httpx.post(f"{base}/v1/chat/completions", json={"model": "tiny"})  # a 401: the error-ratio input
    time.sleep(5)  # a few scrapes and rule evaluations
    empty = []
    for dashboard, panels in all_panels().items():
        for panel in panels:
            for legend, promql in panel.queries:
                if not query(stack["prometheus"], promql):
                    empty.append(f"{dashboard}/{panel.title}/{legend}: {promql}")
    for alert in ALERTS:
        if not query(stack["prometheus"], alert.query):
            empty.append(f"alert {alert.name}: {alert.query}")
    assert not empty, "queries that return nothing:\n" + "\n".join(empty)
