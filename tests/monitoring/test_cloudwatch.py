"""The CloudWatch publisher and definitions, against the session's real local moto server (tests/conftest.py)."""

from __future__ import annotations

import functools
import json
import math
import re
import threading
import uuid
from datetime import datetime, timedelta, timezone
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Gauge, write_to_textfile

from srl_rlvr.errors import UserInputError
from srl_rlvr.monitoring import cloudwatch
from srl_rlvr.monitoring.catalog import build, metric

BUDGET_SPENT = "srl_rlvr_routing_budget_spent_usd"
N_KEYS = 2500


def _namespace() -> str:
    return f"Test/{uuid.uuid4().hex[:10]}"  # one per test: the moto server is shared by the session


@pytest.fixture
def cw(moto_endpoint, aws_env):
    """A real boto3 CloudWatch client on the moto server, its put_metric_data wrapped to record each call's
    number of data and the bytes botocore really sent."""
    import boto3

    client = boto3.client("cloudwatch", endpoint_url=moto_endpoint)
    client.calls = []  # (number of data, estimated bytes)
    client.wire_bytes = []
    real = client.put_metric_data

    @functools.wraps(real)
    def recording(**kwargs):
        data = kwargs["MetricData"]
        client.calls.append((len(data), sum(cloudwatch.datum_size(d) for d in data)))
        return real(**kwargs)

    client.put_metric_data = recording
    client.meta.events.register("before-send.cloudwatch.PutMetricData",
                                lambda request, **_: client.wire_bytes.append(len(request.body or b"")))
    return client


def _exposition(path: Path) -> Path:
    """A text file as training and the server write: catalog metrics of every kind, 2 non-finite gauges,
    2500 labelled gauge series (batching needed) and one metric the catalog lacks."""
    registry = CollectorRegistry()
    latency = build(cloudwatch.E2E_LATENCY, registry)
    latency.labels("base", "").observe(0.5)
    latency.labels("base", "").observe(1.5)
    responses = build(cloudwatch.HTTP_RESPONSES, registry)
    responses.labels("/v1/chat/completions", "200").inc(3)
    responses.labels("/v1/chat/completions", "502").inc()
    responses.labels("other", "503").inc()
    build(cloudwatch.ESCALATIONS, registry).labels("casc", "bronze", "gold", "format").inc(2)
    build(cloudwatch.REWARD_STD, registry).labels("rlvr").set(0.25)
    build("srl_rlvr_training_loss", registry).labels("rlvr").set(float("nan"))
    build(cloudwatch.BUDGET, registry).labels("rlvr").set(float("inf"))
    spent = build(BUDGET_SPENT, registry)
    for i in range(N_KEYS):
        spent.labels(f"{i:08x}").set(i / 100)
    Gauge("not_in_the_catalog", "A metric some other exporter added.", registry=registry).set(1)
    write_to_textfile(str(path), registry)
    return path


# per-series data: latency sum+count 2, responses 3, escalations 1, reward std 1, budget spent 2500;
# rollups without dimensions: 2 + 1 + 1 + 1 + 1, and responses by code_class (2xx, 5xx): 2
EXPECTED_SENT = 2 + 3 + 1 + 1 + N_KEYS + 6 + 2
EXPECTED_NAMES = {
    cloudwatch.metric_name(cloudwatch.E2E_LATENCY, "sum"), cloudwatch.metric_name(cloudwatch.E2E_LATENCY, "count"),
    cloudwatch.metric_name(cloudwatch.HTTP_RESPONSES), cloudwatch.metric_name(cloudwatch.ESCALATIONS),
    cloudwatch.metric_name(cloudwatch.REWARD_STD), cloudwatch.metric_name(BUDGET_SPENT),
}


def _listed(client, namespace: str) -> list[dict]:
    return [m for page in client.get_paginator("list_metrics").paginate(Namespace=namespace)
            for m in page["Metrics"]]


def _maximum(client, namespace: str, name: str, dims: dict[str, str]) -> list[float]:
    now = datetime.now(timezone.utc)
    points = client.get_metric_statistics(
        Namespace=namespace, MetricName=name, Dimensions=[{"Name": k, "Value": v} for k, v in dims.items()],
        StartTime=now - timedelta(minutes=15), EndTime=now + timedelta(minutes=5), Period=60,
        Statistics=["Maximum"])["Datapoints"]
    return [p["Maximum"] for p in points]


def _check_published(result, cw, namespace: str) -> None:
    assert result.sent == EXPECTED_SENT
    assert result.batches == math.ceil(EXPECTED_SENT / 1000) == 3
    assert result.dropped_nonfinite == 2  # the NaN loss and the +Inf budget
    assert result.skipped_unknown == 1  # not_in_the_catalog
    assert len(cw.calls) == result.batches
    assert sum(n for n, _ in cw.calls) == result.sent
    assert all(n <= 1000 and size <= cloudwatch.MAX_REQUEST_BYTES for n, size in cw.calls)
    assert len(cw.wire_bytes) == result.batches and max(cw.wire_bytes) < 1_000_000

    listed = _listed(cw, namespace)
    assert {m["MetricName"] for m in listed} == EXPECTED_NAMES  # no loss, budget (non-finite) or unknown
    budget_series = [m for m in listed if m["MetricName"] == BUDGET_SPENT]
    assert len(budget_series) == N_KEYS + 1  # every key, and the rollup without dimensions
    assert [] in [m["Dimensions"] for m in budget_series]
    responses = cloudwatch.metric_name(cloudwatch.HTTP_RESPONSES)
    assert [{"Name": "code_class", "Value": "5xx"}] in [m["Dimensions"] for m in listed
                                                         if m["MetricName"] == responses]
    assert _maximum(cw, namespace, cloudwatch.metric_name(cloudwatch.REWARD_STD), {"stage": "rlvr"}) == [0.25]
    assert _maximum(cw, namespace, BUDGET_SPENT, {"key_id": f"{1000:08x}"}) == [10.0]
    latency_sum = cloudwatch.metric_name(cloudwatch.E2E_LATENCY, "sum")
    assert _maximum(cw, namespace, latency_sum, {"lora_name": "x"}) == []  # empty label: no dimension
    assert _maximum(cw, namespace, latency_sum, {"model_name": "base"}) == [2.0]


def test_publish_file_batches_drops_and_skips(tmp_path, cw):
    namespace = _namespace()
    result = cloudwatch.publish(namespace, str(_exposition(tmp_path / "metrics.prom")), client=cw)
    _check_published(result, cw, namespace)


def test_publish_from_http_source(tmp_path, cw):
    path = _exposition(tmp_path / "metrics.prom")
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *args: None
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        namespace = _namespace()
        url = f"http://127.0.0.1:{server.server_address[1]}/{path.name}"
        _check_published(cloudwatch.publish(namespace, url, client=cw), cw, namespace)
        with pytest.raises(UserInputError, match="cannot read metrics from .*/missing.prom") as missing:
            cloudwatch.publish(namespace, url.replace(path.name, "missing.prom"), client=cw)
        assert "\n" not in str(missing.value)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_request_size_limit_splits_before_1000_data(tmp_path, cw):
    """1000 series with four 255-character labels are over 900 kB as one request: the size limit bites first."""
    registry = CollectorRegistry()
    escalations = build(cloudwatch.ESCALATIONS, registry)
    for i in range(1000):
        escalations.labels(*(f"{name}-{i:04d}-" + "x" * 300 for name in ("c", "f", "t", "r"))).inc()
    path = tmp_path / "big.prom"
    write_to_textfile(str(path), registry)
    namespace = _namespace()

    result = cloudwatch.publish(namespace, str(path), client=cw, rollup=False)

    assert result.sent == 1000
    assert result.batches > math.ceil(result.sent / 1000) and len(cw.calls) == result.batches
    assert all(size <= cloudwatch.MAX_REQUEST_BYTES for _, size in cw.calls)
    assert max(cw.wire_bytes) < 1_000_000
    values = {d["Value"] for m in _listed(cw, namespace) for d in m["Dimensions"]}
    assert values and {len(v) for v in values} == {255}  # cut to 255 characters


def test_dimensions_are_cloudwatch_safe():
    labels = {f"l{i:02d}": f"v{i}" for i in range(35)} | {"empty": "", "blank": "  ", "model": "modèle\x01"}
    dims = cloudwatch.dimensions(labels)
    assert len(dims) == 30
    assert all(d["Value"].strip() and d["Value"].isascii() for d in dims)
    assert {"Name": "model", "Value": "mod\\xe8le\\x01"} in cloudwatch.dimensions({"model": "modèle\x01"})
    assert [d["Name"] for d in dims] == sorted(d["Name"] for d in dims)
    assert "empty" not in {d["Name"] for d in cloudwatch.dimensions(labels | {"a": "1"})}


def test_bad_inputs_are_one_line_user_errors(tmp_path, aws_env):
    import boto3
    from botocore.config import Config

    good = _exposition(tmp_path / "metrics.prom")
    bad = tmp_path / "page.html"
    bad.write_text("<html>\n<body>not metrics</body>\n</html>\n")
    with pytest.raises(UserInputError, match="is not a Prometheus text exposition"):
        cloudwatch.publish("SrlRlvr", str(bad), client=object())
    with pytest.raises(UserInputError, match="cannot read metrics file"):
        cloudwatch.publish("SrlRlvr", str(tmp_path / "nowhere.prom"), client=object())
    with pytest.raises(UserInputError, match="cannot read metrics from"):
        cloudwatch.publish("SrlRlvr", "http://127.0.0.1:9/metrics", client=object())
    with pytest.raises(UserInputError, match="not a CloudWatch namespace"):
        cloudwatch.publish("AWS/EC2", str(good), client=object())
    # nothing listens on port 9: botocore's connection error becomes one line naming the namespace
    closed = boto3.client("cloudwatch", endpoint_url="http://127.0.0.1:9",
                          config=Config(retries={"max_attempts": 1}, connect_timeout=2))
    with pytest.raises(UserInputError, match=r"namespace 'SrlRlvr' failed after 0 of 3 request\(s\)") as err:
        cloudwatch.publish("SrlRlvr", str(good), client=closed)
    assert "\n" not in str(err.value)


def _metric_names(node, namespace: str) -> list[str]:
    """Every CloudWatch metric name in an alarm or dashboard definition: MetricName keys, dashboard metric
    arrays ([namespace, name, dim, value, ..., {options}]) and SEARCH expressions (MetricName="...")."""
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "MetricName":
                found.append(value)
            elif key in ("expression", "Expression"):
                found += re.findall(r'MetricName="([^"]+)"', value)
            else:
                found += _metric_names(value, namespace)
    elif isinstance(node, list):
        if len(node) >= 2 and all(isinstance(x, str) for x in node[:2]) and node[0] == namespace:
            found.append(node[1])
        for item in node:
            found += _metric_names(item, namespace)
    return found


def test_definitions_name_only_catalog_metrics(tmp_path, cw):
    namespace = _namespace()
    paths = cloudwatch.write_definitions(tmp_path / "cloudwatch", namespace=namespace)
    assert [p.name for p in paths] == ["alarms.json", "dashboard.json"]
    alarms, dashboard = (json.loads(p.read_text()) for p in paths)
    for doc in (alarms, dashboard):
        assert doc["_generated_by"] == "srl-rlvr monitor generate (srl_rlvr/monitoring/cloudwatch.py)"

    names = _metric_names(alarms, namespace) + _metric_names(dashboard, namespace)
    assert len(names) > 20
    for name in names:
        cloudwatch.catalog_entry(name)  # KeyError on a typo or a name the catalog lacks
    covered = {cloudwatch.catalog_entry(name).name for name in names}
    assert {cloudwatch.REWARD_STD, cloudwatch.ENTROPY, cloudwatch.TOKENS_PER_SECOND, cloudwatch.COST,
            cloudwatch.BUDGET, cloudwatch.E2E_LATENCY, cloudwatch.HTTP_RESPONSES, cloudwatch.ESCALATIONS,
            cloudwatch.ROUTE_COST} <= covered
    # the check above does catch a wrong name
    for wrong in ("srl_rlvr_training_reward_stdd", cloudwatch.metric_name(cloudwatch.E2E_LATENCY, "sum")[:-4],
                  metric(cloudwatch.E2E_LATENCY).name + "_bucket", "srl_rlvr_serving_http_responses"):
        with pytest.raises(KeyError):
            cloudwatch.catalog_entry(wrong)

    # deterministic, and accepted by the CloudWatch API (botocore validates every parameter)
    again = cloudwatch.write_definitions(tmp_path / "again", namespace=namespace)
    assert [p.read_bytes() for p in paths] == [p.read_bytes() for p in again]
    for alarm in alarms["alarms"]:
        cw.put_metric_alarm(**alarm)
    described = cw.describe_alarms(AlarmNamePrefix=namespace)["MetricAlarms"]
    assert len(described) == len(alarms["alarms"]) >= 7
    reply = cw.put_dashboard(DashboardName=dashboard["dashboard_name"].replace("/", "-"),
                             DashboardBody=json.dumps(dashboard["body"]))
    assert reply["DashboardValidationMessages"] == []
    assert {w["type"] for w in dashboard["body"]["widgets"]} == {"metric"}


def test_cli_publish(tmp_path, moto_endpoint, aws_env):
    from click.testing import CliRunner

    from srl_rlvr.cli.main import cli

    namespace = _namespace()
    path = _exposition(tmp_path / "metrics.prom")
    result = CliRunner().invoke(cli, ["monitor", "publish", "--cloudwatch", namespace, "--source", str(path),
                                      "--endpoint-url", moto_endpoint])
    assert result.exit_code == 0, result.output
    assert f"published {EXPECTED_SENT} values in 3 request(s) to {namespace}; dropped 2 non-finite" in result.output
