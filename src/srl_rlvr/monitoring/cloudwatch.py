"""CloudWatch: publish the catalog's metrics from a Prometheus source, and the alarms and dashboard over them.

    srl-rlvr monitor publish --cloudwatch SrlRlvr --source http://127.0.0.1:8000/metrics
    srl-rlvr monitor publish --cloudwatch SrlRlvr --source out/run/rlvr/metrics.prom --every 60
    srl-rlvr monitor generate --out infra/monitoring     # writes cloudwatch/alarms.json, cloudwatch/dashboard.json

:func:`publish` reads a Prometheus text exposition (a ``/metrics`` URL of the server, or the text file
training writes as ``OUT/<stage>/metrics.prom``) and sends every series of a catalog metric
(:mod:`srl_rlvr.monitoring.catalog`) with ``PutMetricData``; series of other metrics are skipped and counted.

Names. A CloudWatch metric is named like the Prometheus series it comes from (:func:`metric_name`, which is
the catalog's :func:`~srl_rlvr.monitoring.catalog.series`): a gauge by its name, a counter with ``_total``,
a histogram as two metrics ``<name>_count`` and ``<name>_sum`` (its buckets are not sent: no CloudWatch
statistic set can be derived from them). CloudWatch accepts any non-control ASCII in a metric name (':'
included), so the names are the catalog's unchanged and :func:`catalog_entry` maps one back.

Values. A gauge is sent as its value. CloudWatch has no counters: a counter (and a histogram's count and
sum) is sent as its cumulative value, so an alarm or graph of a rate must use metric math on the
``Maximum`` statistic: ``DIFF(m1)`` (increase per period) or ``RATE(m1)`` (per second); a restart of the
exporter makes one negative step. NaN and +/-Inf (and values beyond CloudWatch's +/-2^360) are rejected by
CloudWatch: they are dropped and counted (``dropped_nonfinite``), so an unset budget (NaN) sends nothing.

Dimensions. Prometheus labels become dimensions (at most 30, empty values dropped, values made ASCII and cut
to 255 characters). A CloudWatch alarm only sees a metric whose dimensions it names exactly, and label
values (a stage, a model, an API key id) are not known when the alarms are written; so each publish also
sends, per metric, a *rollup* without dimensions: for a gauge a statistic set over its series (``Maximum``,
``Minimum``, ``Average`` = mean over the series), for a counter the sum of its series (the total). The
alarms and the dashboard totals read the rollups; ``srl_rlvr_serving_http_responses_total`` gets a rollup by
``code_class`` (``5xx``, ``4xx``, ...), for the error-ratio alarm. ``publish(..., rollup=False)`` sends
the labelled series only.

Batches. ``PutMetricData`` takes at most 1000 data and 1 MB per request: data are grouped to stay under both
(the size is estimated from the largest of the wire encodings botocore may use, kept under 900 000 bytes).

:func:`write_definitions` writes ``alarms.json`` (``PutMetricAlarm`` parameters, under ``"alarms"``) and
``dashboard.json`` (the dashboard body, under ``"body"``) for the Terraform module; every metric they name
goes through :func:`metric_name`, so a name the catalog lacks fails here, not as a "No data" alarm.
"""

from __future__ import annotations

import json
import math
import re
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from srl_rlvr.errors import UserInputError
from srl_rlvr.monitoring.catalog import Metric, metric, series

GENERATED_BY = "srl-rlvr monitor generate (srl_rlvr/monitoring/cloudwatch.py)"
DEFAULT_NAMESPACE = "SrlRlvr"

MAX_DATA_PER_REQUEST = 1000  # PutMetricData: at most 1000 metrics per request
MAX_REQUEST_BYTES = 900_000  # PutMetricData: at most 1 MB per request; kept under with a margin
MAX_DIMENSIONS = 30
MAX_DIMENSION_VALUE = 255  # the API allows 1024; 255 is also what alarm dimensions accept everywhere
MAX_METRIC_NAME = 255
MAX_ABS_VALUE = 2.0**360  # CloudWatch rejects values beyond +/-2^360
FETCH_TIMEOUT_S = 10.0

# The catalog metrics the alarms and the dashboard read: a catalog rename fails on generation, never as an
# alarm without data (names go through metric_name, which asks the catalog).
REWARD_STD = "srl_rlvr_training_reward_std"
REWARD_MEAN = "srl_rlvr_training_reward_mean"
ENTROPY = "srl_rlvr_training_entropy"
TOKENS_PER_SECOND = "srl_rlvr_training_tokens_per_second"
COST = "srl_rlvr_training_cost_usd"
COST_ESTIMATE = "srl_rlvr_training_cost_estimate_usd"
BUDGET = "srl_rlvr_training_budget_usd"
E2E_LATENCY = "srl_rlvr_serving_e2e_request_latency_seconds"
HTTP_RESPONSES = "srl_rlvr_serving_http_responses"
CASCADE_REQUESTS = "srl_rlvr_routing_cascade_requests"
ESCALATIONS = "srl_rlvr_routing_cascade_escalations"
ROUTE_COST = "srl_rlvr_routing_cost_usd"

_NAMESPACE = re.compile(r"[0-9A-Za-z.\-_/#: ]{1,255}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

_UNITS = {
    "seconds": "Seconds",
    "tokens/s": "Count/Second",
    "ratio": "None",
    "usd": "None",
    "1": "None",
    "nats": "None",
    "steps": "Count",
    "tokens": "Count",
    "requests": "Count",
    "responses": "Count",
    "escalations": "Count",
}

# Rollups beyond the one without dimensions: metric -> derived dimensions it is also summed by.
_DERIVED = {"code_class": lambda labels: f"{labels['code'][:1]}xx" if labels.get("code") else ""}
_EXTRA_ROLLUPS: dict[str, tuple[tuple[str, ...], ...]] = {HTTP_RESPONSES: (("code_class",),)}


@dataclass(frozen=True)
class PublishResult:
    namespace: str
    sent: int  # MetricDatum sent (labelled series and rollups)
    batches: int  # PutMetricData requests made
    dropped_nonfinite: int  # catalog series whose value was NaN, +/-Inf or out of CloudWatch's range
    skipped_unknown: int  # metric families of the source that are not in the catalog


# --- names ------------------------------------------------------------------------------------------------
def metric_name(name: str, suffix: str | None = None) -> str:
    """The CloudWatch metric name of a catalog metric (its Prometheus series name: ``_total`` for a counter,
    ``suffix`` "sum" or "count" for a histogram). Refuses a metric the catalog lacks, and a bucket series."""
    if suffix == "bucket":
        raise ValueError(f"{name}: histogram buckets are not published to CloudWatch (use sum and count)")
    cw_name = series(name, suffix)
    if len(cw_name) > MAX_METRIC_NAME or not cw_name.isascii() or _CONTROL.search(cw_name):
        raise ValueError(f"{cw_name!r} cannot be a CloudWatch metric name (ASCII, at most 255 characters)")
    return cw_name


def catalog_entry(cloudwatch_name: str) -> Metric:
    """The catalog metric a CloudWatch metric name was made from (KeyError when it is none: a typo)."""
    entry = metric(cloudwatch_name)
    published = {metric_name(entry.name, suffix) for suffix in _suffixes(entry)}
    if cloudwatch_name not in published:
        raise KeyError(f"{cloudwatch_name!r} is not a CloudWatch metric published for {entry.name} "
                       f"(those are: {', '.join(sorted(published))})")
    return entry


def _suffixes(entry: Metric) -> tuple[str | None, ...]:
    return ("sum", "count") if entry.kind == "histogram" else (None,)


def unit(entry: Metric, cloudwatch_name: str) -> str:
    """The CloudWatch unit of one published metric: a histogram's count is a Count, its sum in the unit."""
    if entry.kind == "histogram" and cloudwatch_name.endswith("_count"):
        return "Count"
    return _UNITS.get(entry.unit, "None")


# --- reading the source -----------------------------------------------------------------------------------
def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _read_source(source: str) -> str:
    if re.match(r"https?://", source, flags=re.IGNORECASE):
        import httpx

        try:
            response = httpx.get(source, timeout=FETCH_TIMEOUT_S, follow_redirects=True)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise UserInputError(f"cannot read metrics from {source}: {_one_line(exc)}") from exc
        return response.text
    path = Path(source)
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserInputError(f"cannot read metrics file {source}: {_one_line(exc)} (give a Prometheus text "
                             "file such as OUT/<stage>/metrics.prom, or an http(s) /metrics URL)") from exc


def _parse(text: str, source: str) -> list[Any]:
    from prometheus_client.parser import text_string_to_metric_families

    try:
        return list(text_string_to_metric_families(text))
    except (ValueError, IndexError, TypeError) as exc:
        raise UserInputError(f"{source} is not a Prometheus text exposition: {_one_line(exc)}") from exc


# --- building the data ------------------------------------------------------------------------------------
def _dimension_value(value: str) -> str:
    ascii_value = value.encode("ascii", "backslashreplace").decode("ascii")
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", ascii_value)[:MAX_DIMENSION_VALUE]


def dimensions(labels: dict[str, str]) -> list[dict[str, str]]:
    """CloudWatch dimensions of a series' labels: sorted by name, empty (or blank) values dropped, values
    ASCII (other characters backslash-escaped) and cut to 255 characters, at most 30."""
    dims = [{"Name": name, "Value": _dimension_value(value)} for name, value in sorted(labels.items())
            if value and value.strip() and not name.startswith(":")]
    return dims[:MAX_DIMENSIONS]


def _finite(value: float) -> bool:
    return math.isfinite(value) and abs(value) <= MAX_ABS_VALUE


def _timestamp(sample_ts: Any, now: datetime) -> datetime:
    if isinstance(sample_ts, (int, float)) and math.isfinite(sample_ts) and sample_ts > 0:
        return datetime.fromtimestamp(float(sample_ts), tz=timezone.utc)
    return now


@dataclass
class _Rollup:
    entry: Metric
    cw_name: str
    dims: tuple[tuple[str, str], ...]
    values: list[float]
    timestamp: datetime


def _data(families: Iterable[Any], *, rollup: bool, now: datetime) -> tuple[list[dict], int, int]:
    data: list[dict] = []
    dropped = unknown = 0
    rollups: dict[tuple[str, tuple[tuple[str, str], ...]], _Rollup] = {}
    for family in families:
        try:
            entry = metric(family.name)
        except KeyError:
            unknown += 1
            continue
        wanted = {metric_name(entry.name, suffix) for suffix in _suffixes(entry)}
        for sample in family.samples:
            if sample.name not in wanted:  # buckets, *_created, a name of another kind
                continue
            value = float(sample.value)
            if not _finite(value):
                dropped += 1
                continue
            dims = dimensions(sample.labels)
            timestamp = _timestamp(sample.timestamp, now)
            groups: list[tuple[tuple[str, str], ...]] = []
            if rollup and entry.labels:
                groups.append(())
                for extra in _EXTRA_ROLLUPS.get(entry.name, ()):
                    derived = tuple((name, _DERIVED[name](sample.labels)) for name in extra)
                    if all(v for _, v in derived):
                        groups.append(derived)
            for group in groups:
                key = (sample.name, group)
                slot = rollups.setdefault(key, _Rollup(entry, sample.name, group, [], timestamp))
                slot.values.append(value)
                slot.timestamp = max(slot.timestamp, timestamp)
            if rollup and entry.labels and not dims:
                continue  # all its labels were empty: it is the rollup without dimensions, sent below
            data.append({"MetricName": sample.name, "Dimensions": dims, "Value": value,
                         "Unit": unit(entry, sample.name), "Timestamp": timestamp})
    for slot in rollups.values():
        datum: dict[str, Any] = {"MetricName": slot.cw_name,
                                 "Dimensions": [{"Name": n, "Value": _dimension_value(v)} for n, v in slot.dims],
                                 "Unit": unit(slot.entry, slot.cw_name), "Timestamp": slot.timestamp}
        total = math.fsum(slot.values)
        if not _finite(total):
            dropped += 1
            continue
        if slot.entry.kind == "gauge":
            datum["StatisticValues"] = {"SampleCount": float(len(slot.values)), "Sum": total,
                                        "Minimum": min(slot.values), "Maximum": max(slot.values)}
        else:  # cumulative: the total over the series, one value per publish
            datum["Value"] = total
        data.append(datum)
    return data, dropped, unknown


# --- batching ---------------------------------------------------------------------------------------------
def _flatten(prefix: str, value: Any) -> Iterable[tuple[str, str]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _flatten(f"{prefix}.{key}", item)
    elif isinstance(value, list):
        for i, item in enumerate(value, start=1):
            yield from _flatten(f"{prefix}.member.{i}", item)
    elif isinstance(value, datetime):
        yield prefix, value.isoformat()
    else:
        yield prefix, repr(value)


def datum_size(datum: dict) -> int:
    """A conservative estimate of a datum's bytes in a PutMetricData request: the larger of its JSON form and
    its query-protocol form (``MetricData.member.1000.Dimensions.member.30.Name=...``, URL-encoded, the most
    verbose encoding botocore uses; the CBOR that recent botocore sends is smaller than both), plus slack."""
    as_json = len(json.dumps(datum, default=str, ensure_ascii=True)) + 2
    as_query = sum(len(urllib.parse.quote(key, safe="")) + len(urllib.parse.quote(value, safe="")) + 2
                   for key, value in _flatten("MetricData.member.1000", datum))
    return max(as_json, as_query) + 16


def batches(data: list[dict], *, max_data: int = MAX_DATA_PER_REQUEST,
            max_bytes: int = MAX_REQUEST_BYTES) -> list[list[dict]]:
    """``data`` in order, cut into requests of at most ``max_data`` data and ``max_bytes`` estimated bytes."""
    out: list[list[dict]] = []
    current: list[dict] = []
    size = 0
    for datum in data:
        n = datum_size(datum)
        if current and (len(current) >= max_data or size + n > max_bytes):
            out.append(current)
            current, size = [], 0
        current.append(datum)
        size += n
    if current:
        out.append(current)
    return out


# --- publishing -------------------------------------------------------------------------------------------
def _check_namespace(namespace: str) -> None:
    if not _NAMESPACE.fullmatch(namespace) or not namespace.strip() or namespace.startswith("AWS/"):
        raise UserInputError(f"{namespace!r} is not a CloudWatch namespace for custom metrics: 1-255 of "
                             "A-Z a-z 0-9 . - _ / # : and space, not starting with 'AWS/' (e.g. SrlRlvr)")


def publish(namespace: str, source: str, endpoint_url: str | None = None, client: Any = None, *,
            rollup: bool = True) -> PublishResult:
    """Send the catalog metrics of ``source`` (a /metrics URL or a Prometheus text file) to CloudWatch
    ``namespace``: ``PutMetricData`` in batches, non-finite values dropped and counted (see the module doc)."""
    _check_namespace(namespace)
    families = _parse(_read_source(source), source)
    data, dropped, unknown = _data(families, rollup=rollup, now=datetime.now(timezone.utc))
    requests = batches(data)
    if requests and client is None:
        client = _client(namespace, endpoint_url)
    done = 0
    for request in requests:
        try:
            client.put_metric_data(Namespace=namespace, MetricData=request)
        except Exception as exc:
            if not _is_aws_error(exc):
                raise
            raise UserInputError(f"CloudWatch PutMetricData to namespace {namespace!r} failed after {done} of "
                                 f"{len(requests)} request(s): {_one_line(exc)}") from exc
        done += 1
    return PublishResult(namespace=namespace, sent=sum(len(r) for r in requests), batches=len(requests),
                         dropped_nonfinite=dropped, skipped_unknown=unknown)


def _is_aws_error(exc: BaseException) -> bool:
    from botocore.exceptions import BotoCoreError, ClientError

    return isinstance(exc, (BotoCoreError, ClientError))


def _client(namespace: str, endpoint_url: str | None) -> Any:
    import boto3

    try:
        return boto3.client("cloudwatch", endpoint_url=endpoint_url)
    except Exception as exc:
        if not _is_aws_error(exc):
            raise
        raise UserInputError(f"cannot create a CloudWatch client for namespace {namespace!r}: {_one_line(exc)} "
                             "(set AWS_DEFAULT_REGION and credentials)") from exc


# --- alarms and dashboard ---------------------------------------------------------------------------------
PERIOD_S = 300
REWARD_STD_MIN = 0.01  # rewards of every prompt group alike: nothing left to learn from
ENTROPY_MIN = 0.05  # nats: the policy collapsed onto near-deterministic tokens
TOKENS_PER_SECOND_MIN = 1.0  # generation stalled
E2E_LATENCY_MAX_S = 20.0  # mean seconds per request over a period
HTTP_5XX_RATIO_MAX = 0.05
ESCALATION_RATIO_MAX = 0.5  # cascade escalations per cascade request


def _stat(namespace: str, id_: str, name: str, suffix: str | None = None, stat: str = "Maximum",
          dims: dict[str, str] | None = None) -> dict:
    target: dict[str, Any] = {"Namespace": namespace, "MetricName": metric_name(name, suffix)}
    if dims:
        target["Dimensions"] = [{"Name": k, "Value": v} for k, v in sorted(dims.items())]
    return {"Id": id_, "ReturnData": False, "MetricStat": {"Metric": target, "Period": PERIOD_S, "Stat": stat}}


def _expression(id_: str, expression: str, label: str) -> dict:
    return {"Id": id_, "Expression": expression, "Label": label, "ReturnData": True}


def alarms(namespace: str = DEFAULT_NAMESPACE) -> list[dict]:
    """``PutMetricAlarm`` parameters over the rollups (no actions: the Terraform module adds them)."""

    def simple(key: str, name: str, stat: str, op: str, threshold: float, periods: int, missing: str,
               why: str) -> dict:
        entry = metric(name)
        return {"AlarmName": f"{namespace}-{key}", "AlarmDescription": f"{why} ({entry.name}: {entry.help})",
                "Namespace": namespace, "MetricName": metric_name(name), "Statistic": stat, "Period": PERIOD_S,
                "EvaluationPeriods": periods, "DatapointsToAlarm": periods, "Threshold": threshold,
                "ComparisonOperator": op, "TreatMissingData": missing}

    def math_alarm(key: str, metrics: list[dict], op: str, threshold: float, periods: int, why: str) -> dict:
        return {"AlarmName": f"{namespace}-{key}", "AlarmDescription": why, "Metrics": metrics,
                "EvaluationPeriods": periods, "DatapointsToAlarm": periods, "Threshold": threshold,
                "ComparisonOperator": op, "TreatMissingData": "notBreaching"}

    return [
        simple("TrainingRewardStdCollapsed", REWARD_STD, "Maximum", "LessThanThreshold",
               REWARD_STD_MIN, 3, "notBreaching", f"reward std under {REWARD_STD_MIN} for 15 minutes: the "
               "rollouts of each prompt score alike, so the policy gets no gradient"),
        simple("TrainingEntropyCollapsed", ENTROPY, "Maximum", "LessThanThreshold",
               ENTROPY_MIN, 3, "notBreaching", f"token entropy under {ENTROPY_MIN} nats for 15 minutes: "
               "the policy collapsed (lower the learning rate or raise the KL/entropy terms)"),
        simple("TrainingThroughputLow", TOKENS_PER_SECOND, "Maximum", "LessThanThreshold",
               TOKENS_PER_SECOND_MIN, 3, "missing", f"under {TOKENS_PER_SECOND_MIN} generated token/s for 15 "
               "minutes: generation stalled"),
        math_alarm("TrainingCostOverBudget", [
            _stat(namespace, "cost", COST),
            _stat(namespace, "budget", BUDGET),
            _expression("ratio", "cost / budget", "spend / budget"),
        ], "GreaterThanOrEqualToThreshold", 1.0, 1, "the stage spent its budget (monitoring.budget_usd); "
           "no data while no budget is set"),
        math_alarm("TrainingCostEstimateOverBudget", [
            _stat(namespace, "estimate", COST_ESTIMATE),
            _stat(namespace, "budget", BUDGET),
            _expression("ratio", "estimate / budget", "estimated spend at completion / budget"),
        ], "GreaterThanThreshold", 1.0, 3, "at the current step rate the stage will overrun its budget"),
        math_alarm("ServingLatencyHigh", [
            _stat(namespace, "s", E2E_LATENCY, "sum"),
            _stat(namespace, "c", E2E_LATENCY, "count"),
            _expression("mean", "DIFF(s) / DIFF(c)", "mean end-to-end latency (s)"),
        ], "GreaterThanThreshold", E2E_LATENCY_MAX_S, 3, f"mean end-to-end request latency over "
           f"{E2E_LATENCY_MAX_S} s for 15 minutes (counters are cumulative: DIFF of sum over DIFF of count)"),
        math_alarm("ServingHttp5xxRatioHigh", [
            _stat(namespace, "errors", HTTP_RESPONSES, dims={"code_class": "5xx"}),
            _stat(namespace, "total", HTTP_RESPONSES),
            _expression("ratio", "DIFF(errors) / DIFF(total)", "5xx share of HTTP responses"),
        ], "GreaterThanThreshold", HTTP_5XX_RATIO_MAX, 2, f"over {HTTP_5XX_RATIO_MAX:.0%} of the API's "
           "responses are 5xx (502: all tiers failed, 503: no tier available)"),
        math_alarm("RoutingEscalationsHigh", [
            _stat(namespace, "esc", ESCALATIONS),
            _stat(namespace, "req", CASCADE_REQUESTS),
            _expression("ratio", "DIFF(esc) / DIFF(req)", "cascade escalations per cascade request"),
        ], "GreaterThanThreshold", ESCALATION_RATIO_MAX, 3, "cascades escalate most requests: the cheap tier "
           "rarely passes its checks (cost goes up); see the escalation reasons on the dashboard"),
    ]


def _search(namespace: str, name: str, labels: Iterable[str], stat: str, id_: str, label: str,
            suffix: str | None = None, function: str | None = None) -> list[dict]:
    """Every labelled series of a metric (SEARCH over its catalog labels), optionally through ``function``."""
    schema = ",".join([json.dumps(namespace), *sorted(labels)])
    expression = f"SEARCH('{{{schema}}} MetricName=\"{metric_name(name, suffix)}\"', '{stat}', {PERIOD_S})"
    line = {"expression": f"{function}({expression})" if function else expression, "id": id_}
    if label:  # without one, CloudWatch labels each series by its dimensions
        line["label"] = label
    return [line]


def _line(namespace: str, name: str, id_: str, suffix: str | None = None, visible: bool = False,
          dims: dict[str, str] | None = None, label: str | None = None) -> list:
    options: dict[str, Any] = {"id": id_, "stat": "Maximum", "visible": visible}
    if label:
        options["label"] = label
    pairs = [part for key, value in sorted((dims or {}).items()) for part in (key, value)]
    return [namespace, metric_name(name, suffix), *pairs, options]


def _widget(i: int, title: str, metrics: list[list], region: str) -> dict:
    return {"type": "metric", "x": (i % 2) * 12, "y": (i // 2) * 6, "width": 12, "height": 6,
            "properties": {"title": title, "region": region, "view": "timeSeries", "stacked": False,
                           "period": PERIOD_S, "stat": "Maximum", "metrics": metrics}}


def dashboard(namespace: str = DEFAULT_NAMESPACE, region: str = "us-east-1") -> dict:
    """A CloudWatch dashboard body: training per stage (SEARCH over the stage dimension), serving and
    routing from the rollups with metric math (counters are cumulative)."""

    def stage(name: str, id_: str, label: str, stat: str = "Maximum") -> list[dict]:
        return _search(namespace, name, metric(name).labels, stat, id_, label)

    panels = [
        ("Training: reward std (near 0: nothing to learn) and mean", [
            stage(REWARD_STD, "std", "reward std"),
            stage(REWARD_MEAN, "mean", "reward mean")]),
        ("Training: token entropy (nats)", [stage(ENTROPY, "entropy", "entropy")]),
        ("Training: generated tokens/s", [stage(TOKENS_PER_SECOND, "tps", "tokens/s")]),
        ("Cost: stage spend so far vs budget (USD)", [
            stage(COST, "cost", "spent"),
            stage(COST_ESTIMATE, "estimate", "estimate at completion"),
            stage(BUDGET, "budget", "budget")]),
        ("Serving: mean end-to-end latency (s) and requests", [
            _line(namespace, E2E_LATENCY, "s", "sum"),
            _line(namespace, E2E_LATENCY, "c", "count"),
            [{"expression": "DIFF(s) / DIFF(c)", "id": "mean", "label": "mean latency (s)"}],
            [{"expression": "DIFF(c)", "id": "reqs", "label": "requests per period", "yAxis": "right"}]]),
        ("Serving: HTTP 5xx responses per period", [
            _line(namespace, HTTP_RESPONSES, "e5", dims={"code_class": "5xx"}),
            _line(namespace, HTTP_RESPONSES, "all"),
            [{"expression": "DIFF(e5)", "id": "errors", "label": "5xx"}],
            [{"expression": "DIFF(all)", "id": "total", "label": "all responses", "yAxis": "right"}]]),
        ("Routing: cascade escalations per period (total, and by cascade, tiers and reason)", [
            _line(namespace, ESCALATIONS, "esc"),
            [{"expression": "DIFF(esc)", "id": "escalations", "label": "all escalations"}],
            _search(namespace, ESCALATIONS, metric(ESCALATIONS).labels, "Maximum", "by_reason", "", function="DIFF")]),
        ("Routing: estimated spend of routed requests (USD per period, total and by name and tier)", [
            _line(namespace, ROUTE_COST, "rc"),
            [{"expression": "DIFF(rc)", "id": "spend", "label": "all routed spend"}],
            _search(namespace, ROUTE_COST, metric(ROUTE_COST).labels, "Maximum", "by_tier", "", function="DIFF")]),
    ]
    return {"widgets": [_widget(i, title, metrics, region) for i, (title, metrics) in enumerate(panels)]}


def _dump(payload: dict) -> str:
    return json.dumps(payload, sort_keys=True, indent=2) + "\n"


def write_definitions(out_dir: Path, namespace: str = DEFAULT_NAMESPACE, region: str = "us-east-1") -> list[Path]:
    """Write ``alarms.json`` and ``dashboard.json`` (deterministic) into ``out_dir``; return their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    alarms_path, dashboard_path = out_dir / "alarms.json", out_dir / "dashboard.json"
    alarms_path.write_text(_dump({"_generated_by": GENERATED_BY, "namespace": namespace,
                                  "alarms": alarms(namespace)}), encoding="utf-8")
    dashboard_path.write_text(_dump({"_generated_by": GENERATED_BY, "namespace": namespace,
                                     "dashboard_name": namespace, "body": dashboard(namespace, region)}),
                              encoding="utf-8")
    return [alarms_path, dashboard_path]
