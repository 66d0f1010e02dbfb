"""The metrics catalog: every metric of training, serving, routing and cost, defined once.

    srl-rlvr monitor catalog                 # the table below, from this module
    srl-rlvr monitor generate     # prometheus/alerts.yml (+ promtool tests), grafana/*.json, cloudwatch/*.json

The exporters build their metric objects from here (:func:`build`), and every generated consumer (alert
rules, Grafana dashboards, CloudWatch alarms, the HTML dashboard) names its metrics through
:func:`series`, which refuses a name the catalog lacks; ``tests/monitoring`` also parses each generated
file and fails on any metric it does not know. So a rename is one edit here, and nothing can keep
querying the old name (the "No data" panel).

Names: ``srl_rlvr_serving_*``, ``srl_rlvr_routing_*`` and ``srl_rlvr_training_*`` (the training ones as a
Prometheus text file and, optionally, on a port). No colons: Prometheus keeps ``:`` for recording rules and
``promtool check metrics`` refuses it in exported names. What vLLM also exports keeps vLLM's meaning and
labels, and :func:`vllm_compat_rules` (``infra/monitoring/prometheus/vllm_compat.yml``) records our series
under vLLM's own ``vllm:*`` names, so dashboards made for vLLM read a Prometheus that scrapes us.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

KINDS = ("counter", "gauge", "histogram")
SUBSYSTEMS = ("training", "serving", "routing", "cost")
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.2, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0)
PER_TOKEN_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5)
SERVED = ("model_name", "lora_name")


@dataclass(frozen=True)
class Metric:
    name: str  # as exported, without the _total / _bucket / _sum / _count suffixes
    kind: str
    unit: str
    help: str
    subsystem: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] | None = None
    vllm_name: str | None = None  # vLLM's name for the same metric (recorded by vllm_compat_rules)

    @property
    def samples(self) -> tuple[str, ...]:
        """The series names Prometheus stores for this metric."""
        if self.kind == "counter":
            return (f"{self.name}_total",)
        if self.kind == "histogram":
            return (f"{self.name}_bucket", f"{self.name}_sum", f"{self.name}_count")
        return (self.name,)


_TRAINING = ("stage",)

METRICS: tuple[Metric, ...] = (
    # --- training (srl_rlvr.monitoring.training: a text file per stage, optionally a port) ---------
    Metric("srl_rlvr_training_global_step", "gauge", "steps", "Optimiser steps done.", "training", _TRAINING),
    Metric("srl_rlvr_training_max_steps", "gauge", "steps", "Optimiser steps the stage will run.", "training",
           _TRAINING),
    Metric("srl_rlvr_training_last_step_timestamp_seconds", "gauge", "seconds",
           "Unix time of the last finished optimiser step.", "training", _TRAINING),
    Metric("srl_rlvr_training_loss", "gauge", "1", "Training loss at the last logged step (NaN when non-finite).",
           "training", _TRAINING),
    Metric("srl_rlvr_training_reward_mean", "gauge", "1", "Mean reward of the last step's rollouts.", "training",
           _TRAINING),
    Metric("srl_rlvr_training_reward_std", "gauge", "1", "Std of the last step's rewards (near 0: nothing to learn).",
           "training", _TRAINING),
    Metric("srl_rlvr_training_format_ok_ratio", "gauge", "ratio", "Share of rollouts in the <think>...</think> "
           "format.", "training", _TRAINING),
    Metric("srl_rlvr_training_informative_ratio", "gauge", "ratio", "Share of prompt groups dynamic sampling kept "
           "(reward std above epsilon).", "training", _TRAINING),
    Metric("srl_rlvr_training_entropy", "gauge", "nats", "Mean token entropy of the rollouts.", "training",
           _TRAINING),
    Metric("srl_rlvr_training_tokens_per_second", "gauge", "tokens/s", "Completion tokens generated per second.",
           "training", _TRAINING),
    Metric("srl_rlvr_training_step_seconds", "gauge", "seconds", "Wall time of the last optimiser step.", "training",
           _TRAINING),
    Metric("srl_rlvr_training_last_checkpoint_timestamp_seconds", "gauge", "seconds",
           "Unix time of the newest complete checkpoint.", "training", _TRAINING),
    Metric("srl_rlvr_training_recoveries", "counter", "1", "Training-fault recoveries, by kind of fault.",
           "training", ("reason", "stage")),
    # --- cost ---------------------------------------------------------------------------------------------
    Metric("srl_rlvr_training_cost_usd", "gauge", "usd", "Spend of the stage so far (tier price per hour x wall "
           "time).", "cost", _TRAINING),
    Metric("srl_rlvr_training_cost_estimate_usd", "gauge", "usd", "Estimated spend at completion, at the current "
           "step rate.", "cost", _TRAINING),
    Metric("srl_rlvr_training_budget_usd", "gauge", "usd", "The stage's budget (monitoring.budget_usd; NaN: none).",
           "cost", _TRAINING),
    Metric("srl_rlvr_routing_cost_usd", "counter", "usd", "Estimated spend of routed requests, by the tier that "
           "answered.", "cost", ("name", "tier")),
    Metric("srl_rlvr_routing_budget_spent_usd", "gauge", "usd", "Spend of an API key's budget this period (key_id: "
           "sha256 of the key, first 8 hex).", "cost", ("key_id",)),
    Metric("srl_rlvr_routing_budget_limit_usd", "gauge", "usd", "An API key's budget this period.", "cost",
           ("key_id",)),
    # --- serving (vllm_name: what vLLM calls the same metric) --------------------------------------------
    Metric("srl_rlvr_serving_time_to_first_token_seconds", "histogram", "seconds",
           "Seconds from request arrival to the first generated text.", "serving", SERVED, LATENCY_BUCKETS,
           vllm_name="vllm:time_to_first_token_seconds"),
    Metric("srl_rlvr_serving_e2e_request_latency_seconds", "histogram", "seconds",
           "Seconds from request arrival to its last token.", "serving", SERVED, LATENCY_BUCKETS,
           vllm_name="vllm:e2e_request_latency_seconds"),
    Metric("srl_rlvr_serving_time_per_output_token_seconds", "histogram", "seconds",
           "Mean seconds per generated token after the first, per request.", "serving", SERVED, PER_TOKEN_BUCKETS,
           vllm_name="vllm:time_per_output_token_seconds"),
    Metric("srl_rlvr_serving_prompt_tokens", "counter", "tokens", "Prompt tokens processed.", "serving", SERVED,
           vllm_name="vllm:prompt_tokens"),
    Metric("srl_rlvr_serving_generation_tokens", "counter", "tokens", "Tokens generated.", "serving", SERVED,
           vllm_name="vllm:generation_tokens"),
    Metric("srl_rlvr_serving_request_success", "counter", "requests", "Requests finished, by finish reason.",
           "serving", (*SERVED, "finished_reason"), vllm_name="vllm:request_success"),
    Metric("srl_rlvr_serving_num_requests_running", "gauge", "requests", "Requests being generated now.", "serving",
           SERVED, vllm_name="vllm:num_requests_running"),
    Metric("srl_rlvr_serving_num_requests_waiting", "gauge", "requests", "Requests queued for generation.",
           "serving", SERVED, vllm_name="vllm:num_requests_waiting"),
    Metric("srl_rlvr_serving_http_responses", "counter", "responses", "HTTP responses of the API, by route and "
           "status code.", "serving", ("route", "code")),
    # --- routing ------------------------------------------------------------------------------------------
    Metric("srl_rlvr_routing_router_requests", "counter", "requests", "Requests answered through a router model "
           "name, by the tier that answered.", "routing", ("router", "tier")),
    Metric("srl_rlvr_routing_router_fallbacks", "counter", "requests", "Router requests answered by another tier "
           "because the chosen one failed.", "routing", ("router", "failed_tier")),
    Metric("srl_rlvr_routing_prior_decisions", "counter", "decisions", "Router decisions in which a tier's "
           "quality came from its configured prior, because the predictor has no model for it.", "routing",
           ("router", "tier")),
    Metric("srl_rlvr_routing_cascade_requests", "counter", "requests", "Requests answered through a cascade model "
           "name, by the tier whose answer was returned.", "routing", ("cascade", "tier")),
    Metric("srl_rlvr_routing_cascade_escalations", "counter", "escalations", "Cascade moves to the next tier; "
           "reason: format, agreement, task_check, no_completions or error (the tier failed).", "routing",
           ("cascade", "from_tier", "to_tier", "reason")),
    Metric("srl_rlvr_routing_rejected", "counter", "requests", "Router or cascade requests refused: "
           "budget_exceeded (429), all_tiers_failed (502), no_tier_available (503).", "routing", ("name", "reason")),
)

CATALOG: dict[str, Metric] = {}
for _metric in METRICS:
    if _metric.name in CATALOG:
        raise ValueError(f"metric {_metric.name!r} is defined twice in the catalog")
    if _metric.kind not in KINDS or _metric.subsystem not in SUBSYSTEMS:
        raise ValueError(f"metric {_metric.name!r}: bad kind or subsystem")
    CATALOG[_metric.name] = _metric

_SAMPLE_TO_METRIC = {sample: m for m in METRICS for sample in m.samples}
# A PromQL identifier that looks like a metric: letters, digits, '_' and ':' (vLLM's names have colons).
_IDENT = re.compile(r"(?<![\w:\"'])([a-zA-Z_:][a-zA-Z0-9_:]*)(?=\s*[{\[)\s,]|$)")
_PROMQL_WORDS = {
    "sum", "rate", "irate", "increase", "histogram_quantile", "by", "without", "avg", "max", "min", "count",
    "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "time", "vector", "scalar", "abs",
    "clamp_min", "clamp_max", "predict_linear", "deriv", "delta", "idelta", "avg_over_time", "max_over_time",
    "min_over_time", "sum_over_time", "count_over_time", "stddev_over_time", "last_over_time", "absent",
    "absent_over_time", "changes", "resets", "le", "offset", "bool", "topk", "bottomk", "quantile", "label_replace",
    "timestamp", "round", "ceil", "floor", "sqrt", "exp", "ln", "log2", "log10", "sgn", "stddev", "stdvar",
    "group", "count_values", "quantile_over_time", "present_over_time", "inf", "nan", "Inf", "NaN",
}


def metric(name: str) -> Metric:
    """The catalog entry for ``name`` (a metric or one of its sample names); KeyError naming close ones."""
    found = CATALOG.get(name) or _SAMPLE_TO_METRIC.get(name)
    if found is None:
        import difflib

        close = difflib.get_close_matches(name, list(CATALOG) + list(_SAMPLE_TO_METRIC), n=3)
        raise KeyError(f"metric {name!r} is not in the catalog (srl_rlvr.monitoring.catalog)"
                       + (f"; did you mean {', '.join(close)}?" if close else ""))
    return found


def series(name: str, suffix: str | None = None) -> str:
    """The stored series name of a catalog metric, for writing queries:
    ``series("srl_rlvr_serving_e2e_request_latency_seconds", "bucket")``; counters get ``_total``. Refuses a
    metric the catalog lacks."""
    entry = metric(name)
    if entry.kind == "counter":
        return f"{entry.name}_total"
    if entry.kind == "histogram":
        if suffix not in ("bucket", "sum", "count"):
            raise ValueError(f"{name} is a histogram: say which series (bucket, sum or count)")
        return f"{entry.name}_{suffix}"
    return entry.name


def referenced(promql: str) -> set[str]:
    """Every metric-looking identifier in a PromQL expression (for the consistency tests)."""
    without_strings = re.sub(r'"[^"]*"|\'[^\']*\'', '""', promql)
    without_labels = re.sub(r"\{[^}]*\}", "{}", without_strings)
    without_durations = re.sub(r"\[[^\]]*\]", "[]", without_labels)
    # label lists of grouping and matching clauses are labels, not metrics
    without_durations = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", r"\1",
                               without_durations)
    names = set()
    for match in _IDENT.finditer(without_durations):
        word = match.group(1)
        if word in _PROMQL_WORDS or re.fullmatch(r"[0-9.]+", word):
            continue
        names.add(word)
    return names


def unknown_in(promql: str) -> set[str]:
    """The identifiers of ``promql`` that are no catalog series."""
    return {name for name in referenced(promql) if name not in _SAMPLE_TO_METRIC and name not in CATALOG}


def build(name: str, registry: Any, **kwargs: Any) -> Any:
    """The prometheus_client object for a catalog metric, in ``registry``."""
    from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics

    disable_created_metrics()  # as vLLM does: *_created series only double the output (process-wide)
    entry = metric(name)
    if entry.kind == "counter":
        return Counter(entry.name, entry.help, entry.labels, registry=registry, **kwargs)
    if entry.kind == "gauge":
        return Gauge(entry.name, entry.help, entry.labels, registry=registry, **kwargs)
    return Histogram(entry.name, entry.help, entry.labels, buckets=entry.buckets, registry=registry, **kwargs)


def vllm_compat_rules() -> dict:
    """Prometheus recording rules that recreate vLLM's ``vllm:*`` series from ours (same labels, same buckets)."""
    rules = []
    for m in METRICS:
        if not m.vllm_name:
            continue
        theirs = {"counter": [f"{m.vllm_name}_total"], "gauge": [m.vllm_name],
                  "histogram": [f"{m.vllm_name}_{s}" for s in ("bucket", "sum", "count")]}[m.kind]
        rules += [{"record": record, "expr": sample} for record, sample in zip(theirs, m.samples)]
    return {"groups": [{"name": "vllm-compat", "rules": rules}]}


def markdown_table() -> str:
    rows = ["| metric | type | unit | labels | what |", "|---|---|---|---|---|"]
    for m in METRICS:
        rows.append(f"| `{m.name}` | {m.kind} | {m.unit} | {', '.join(m.labels) or '-'} | {m.help} |")
    return "\n".join(rows)
