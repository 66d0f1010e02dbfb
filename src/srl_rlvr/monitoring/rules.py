"""Prometheus alerting rules, generated from the Python definitions below (and their promtool unit tests).

    srl-rlvr monitor generate --out infra/monitoring      # writes prometheus/alerts.yml, alerts_test.yml, ...
    promtool check rules infra/monitoring/prometheus/alerts.yml
    (cd infra/monitoring/prometheus && promtool test rules alerts_test.yml)

Every expression is built from :func:`srl_rlvr.monitoring.catalog.series`, which refuses a metric the catalog
lacks, and :func:`build_rules` re-checks each finished expression with ``unknown_in``, so a rule cannot query a
name nothing exports. Each :class:`Alert` carries

* ``query``: the vector the alert compares, without the comparison (a live Prometheus returns series for it
  whenever the metric exists, labelled counters included, via ``or ... * 0``; a tier latency query needs a
  server of that tier scraped: dashboards and the end-to-end test query it),
* ``expr``: ``query <op> threshold`` plus an optional guard (``and`` "while training", ``or`` a second cause),
* a ``firing`` and a ``quiet`` promtool case: input series in promtool's expanding notation, the eval time and
  (firing) the labels of the alerts expected then; ``alerts_test.yml`` runs both for every alert.

Labels: ``severity`` (critical: act now, warning: act today, info: nothing breaks yet). Annotations:
``summary``, ``description`` and ``runbook_url`` (``docs/playbooks/<AlertName>.md``).

The serving latency alerts select ``tier="gold"`` etc.: that ``tier`` label is not exported by the server, the
Prometheus scrape config attaches it to each server's target (``labels: {tier: gold}``, see the generated
``prometheus.yml``). Each tier's p95 target is ``throughput.serving_latency_p95_ms`` of its tier file.

The "while training" guards compare ``srl_rlvr_training_global_step`` with ``srl_rlvr_training_max_steps`` (a
finished stage keeps exporting its last values and must not alert forever). The exporter starts its timestamp
gauges at 0, so the stall and checkpoint alerts also want the stage to have been exported for their whole
window (``global_step offset <window>``): a stage that just started is not "stalled since 1970".
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from srl_rlvr.monitoring.catalog import metric, series, unknown_in

RUNBOOK_BASE = "https://github.com/srl-rlvr/srl-rlvr/blob/main/docs/playbooks/"
SEVERITIES = ("critical", "warning", "info")
GROUPS = ("srl-rlvr-cost", "srl-rlvr-performance", "srl-rlvr-training")
FAST_GROUP = "srl-rlvr-fast"  # fast_rules' group (its own name, so it can load beside alerts.yml)
LATENCY_TIERS = ("gold", "silver", "bronze")  # the tiers with a latency alert (cpu serves demos only)

# Thresholds (a deployment changes them through alert_rules(overrides={name: {"threshold": ...}})).
ROUTE_SPEND_USD_PER_HOUR = 10.0  # routed requests' estimated spend, per router/cascade name
ROUTE_BUDGET_RATIO = 0.9  # share of an API key's budget spent
SERVING_ERROR_RATIO = 0.05  # share of HTTP responses that are 5xx
SERVING_QUEUE_DEPTH = 16  # requests waiting for generation, per server and model
CASCADE_ESCALATION_RATIO = 0.5  # escalations per cascade request
ROUTER_FALLBACKS_PER_S = 0.05  # router requests answered by another tier because the chosen one failed (3/min)
REWARD_STD_MIN = 1e-3  # reward std below this for 10 minutes: every rollout scores the same
ENTROPY_MIN = 0.2  # nats per token
STALL_S = 900  # no optimiser step for 15 minutes
CHECKPOINT_AGE_S = 3600  # no checkpoint for an hour
THROUGHPUT_RATIO = 0.5  # tokens/s below half of its 1-hour average

HEADER = """\
# GENERATED FILE: do not edit by hand.
# Written by `srl-rlvr monitor generate` from srl_rlvr/monitoring/rules.py (metric names from
# srl_rlvr/monitoring/catalog.py); change those and regenerate.
"""

_TEMPLATE_LABEL = re.compile(r"\{\{\s*\$labels\.(\w+)\s*\}\}")


@dataclass(frozen=True)
class Case:
    """A promtool case: input series (``{"series": 'metric{labels}', "values": "0+1x20"}``), sampled every
    minute, and the eval time; for a firing case also the labels (besides alertname and severity) of each alert
    expected at that time. A quiet case expects no alert (``exp_alerts: []``)."""

    series: tuple[dict[str, str], ...]
    eval_time: str
    exp_labels: tuple[dict[str, str], ...] = ()


@dataclass(frozen=True)
class Alert:
    """One alerting rule. ``expr`` is built from ``query``, ``op``, ``threshold`` and ``guard`` (not passed)."""

    name: str
    group: str
    query: str
    op: str
    threshold: float | str
    for_: str
    severity: str
    summary: str
    description: str
    firing: Case
    quiet: Case
    guard: str = ""  # appended after the comparison: "and (...)" or "or ..."
    expr: str = field(init=False)

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"{self.name}: severity {self.severity!r} is not one of {SEVERITIES}")
        if self.group not in (*GROUPS, FAST_GROUP):
            raise ValueError(f"{self.name}: group {self.group!r} is not one of {GROUPS}")
        if not re.fullmatch(r"(\d+(ms|s|m|h|d|w|y))+", self.for_):
            raise ValueError(f"{self.name}: for {self.for_!r} is no Prometheus duration")
        expr = f"{self.query} {self.op} {_num(self.threshold)}"
        object.__setattr__(self, "expr", f"{expr} {self.guard}" if self.guard else expr)

    @property
    def runbook_url(self) -> str:
        return f"{RUNBOOK_BASE}{self.name}.md"

    @property
    def labels(self) -> dict[str, str]:
        return {"severity": self.severity}

    @property
    def annotations(self) -> dict[str, str]:
        return {"description": self.description, "runbook_url": self.runbook_url, "summary": self.summary}

    def rendered_annotations(self, labels: dict[str, str]) -> dict[str, str]:
        """The annotations as Prometheus renders them for an alert with ``labels`` (``{{ $labels.x }}`` only)."""

        def label(match: re.Match) -> str:
            if match.group(1) not in labels:
                raise KeyError(f"{self.name}: an annotation uses $labels.{match.group(1)}, absent from {labels}")
            return labels[match.group(1)]

        return {key: _TEMPLATE_LABEL.sub(label, value) for key, value in self.annotations.items()}

    def rule(self) -> dict[str, Any]:
        return {"alert": self.name, "expr": self.expr, "for": self.for_, "labels": self.labels,
                "annotations": self.annotations}


def _num(value: float | str) -> str:
    return value if isinstance(value, str) else f"{value:g}"


def _repeat(value: str, times: int) -> str:
    """``times`` samples of ``value`` (promtool cannot expand NaN with ``x``)."""
    return " ".join([value] * times)


def _s(stored: str, values: str, /, **labels: str) -> dict[str, str]:
    """An input series of a promtool case; ``stored`` is a stored series name (from series())."""
    inner = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    return {"series": f"{stored}{{{inner}}}", "values": values}


# --- expression pieces ------------------------------------------------------------------------------------
def latency_p95(window: str = "5m", tier: str | None = None) -> str:
    """p95 end-to-end request latency (seconds) per tier; ``tier`` selects one (the scrape config's label)."""
    selector = f'{{tier="{tier}"}}' if tier else ""
    bucket = series("srl_rlvr_serving_e2e_request_latency_seconds", "bucket")
    return f"histogram_quantile(0.95, sum by (le, tier) (rate({bucket}{selector}[{window}])))"


def latency_targets_s() -> dict[str, float]:
    """Each tier's p95 latency target in seconds, from ``throughput.serving_latency_p95_ms`` of its tier file."""
    import srl_rlvr.tiers

    folder = Path(srl_rlvr.tiers.__file__).parent
    targets = {}
    for tier in LATENCY_TIERS:
        data = yaml.safe_load((folder / f"{tier}.yaml").read_text(encoding="utf-8"))
        targets[tier] = float(data["throughput"]["serving_latency_p95_ms"]) / 1000.0
    return targets


def _step() -> str:
    return series("srl_rlvr_training_global_step")


def _not_finished() -> str:
    return f"({_step()} < {series('srl_rlvr_training_max_steps')})"


def _training() -> str:
    """A stage that logged a step and has not finished (its gauges before the first log are zeros)."""
    return f"({_step()} > 0 and {_step()} < {series('srl_rlvr_training_max_steps')})"


def _exported_for(window: str) -> str:
    """The stage's series already existed ``window`` ago."""
    return f"({_step()} offset {window})"


def _or_zero(part: str, like: str) -> str:
    """``part``, or 0 for each series of ``like`` (same labels) that ``part`` lacks: a labelled counter has no
    series until its first increment, and the query should still return one series per watched thing."""
    return f"({part} or {like} * 0)"


def _share(part: str, whole: str) -> str:
    """part / whole, also when no series of ``part`` exists yet (then 0)."""
    return f"{_or_zero(part, whole)} / {whole}"


# --- the promtool cases' input series ----------------------------------------------------------------------
def _latency_series(tier: str, slow_above: float | None, **labels: str) -> list[dict[str, str]]:
    """A histogram with 10 requests a minute, all in one bucket: the first bucket wholly above ``slow_above``
    (so p95 exceeds it), or the first bucket of all (``slow_above=None``: fast)."""
    bounds = metric("srl_rlvr_serving_e2e_request_latency_seconds").buckets
    bucket = series("srl_rlvr_serving_e2e_request_latency_seconds", "bucket")
    if slow_above is None:
        lower, upper = None, bounds[0]
    else:
        index = next(i for i in range(1, len(bounds)) if bounds[i - 1] >= slow_above)
        lower, upper = bounds[index - 1], bounds[index]
    out = [] if lower is None else [_s(bucket, "0x20", le=str(float(lower)), tier=tier, **labels)]
    out.append(_s(bucket, "0+10x20", le=str(float(upper)), tier=tier, **labels))
    out.append(_s(bucket, "0+10x20", le="+Inf", tier=tier, **labels))
    return out


def _stage_series(step: str, max_steps: str, **stage: str) -> list[dict[str, str]]:
    return [_s(_step(), step, **stage), _s(series("srl_rlvr_training_max_steps"), max_steps, **stage)]


SRL, RLVR, SFT = {"stage": "srl"}, {"stage": "rlvr"}, {"stage": "sft"}
SERVE = {"job": "srl-rlvr-serve", "model_name": "demo-math"}


# --- the alerts --------------------------------------------------------------------------------------------
def _cost_alerts() -> list[Alert]:
    cost, budget = series("srl_rlvr_training_cost_usd"), series("srl_rlvr_training_budget_usd")
    route_cost = series("srl_rlvr_routing_cost_usd")
    spent, limit = series("srl_rlvr_routing_budget_spent_usd"), series("srl_rlvr_routing_budget_limit_usd")
    route = {"name": "router-demo-0.5", "tier": "gold"}
    key, other_key = {"key_id": "ab12cd34"}, {"key_id": "ef56ab78"}
    g = "srl-rlvr-cost"
    return [
        Alert("TrainingSpendOverBudget", g, cost, ">", budget, "5m", "critical",
              "Training stage {{ $labels.stage }} has spent more than its budget",
              f"{cost} (tier price per hour x wall time) is above {budget} (monitoring.budget_usd). A stage "
              "without a budget exports NaN and never fires.",
              Case((_s(cost, "0+1x30", **SRL), _s(budget, "10x30", **SRL)), "20m", (SRL,)),
              Case((_s(cost, "0+0.1x30", **SRL), _s(budget, "10x30", **SRL),  # under budget
                    _s(cost, "0+1x30", **RLVR), _s(budget, _repeat("NaN", 31), **RLVR)), "20m")),  # no budget
        Alert("TrainingBudgetExhaustionPredicted", g, f"predict_linear({cost}[30m], 3600)", ">", budget, "10m",
              "warning", "Training stage {{ $labels.stage }} will exceed its budget within the hour",
              f"At the spend rate of the last 30 minutes (predict_linear of {cost}), the stage passes {budget} "
              "within one hour.",
              Case((_s(cost, "0+0.5x60", **SRL), _s(budget, "50x60", **SRL)), "55m", (SRL,)),
              Case((_s(cost, "0+0.1x60", **SRL), _s(budget, "50x60", **SRL)), "55m")),
        Alert("RouteSpendRateHigh", g, f"sum by (name) (rate({route_cost}[15m])) * 3600", ">",
              ROUTE_SPEND_USD_PER_HOUR, "10m", "warning",
              "Routed requests of {{ $labels.name }} spend more than " f"{_num(ROUTE_SPEND_USD_PER_HOUR)} USD/hour",
              f"The estimated spend of the requests answered through this router or cascade (rate of {route_cost} "
              f"over 15 minutes, all tiers) is above {_num(ROUTE_SPEND_USD_PER_HOUR)} USD per hour "
              "(rules.ROUTE_SPEND_USD_PER_HOUR).",
              Case((_s(route_cost, "0+1x60", **route),), "30m", ({"name": route["name"]},)),
              Case((_s(route_cost, "0+0.05x60", **route),), "30m")),
        Alert("RouteBudgetNearlySpent", g, f"{spent} / {limit}", ">", ROUTE_BUDGET_RATIO, "5m", "info",
              "API key {{ $labels.key_id }} has spent over " f"{ROUTE_BUDGET_RATIO:.0%} of its budget",
              f"{spent} / {limit} is above {_num(ROUTE_BUDGET_RATIO)} (key_id: sha256 of the key, first 8 hex): "
              "the key's router and cascade requests get 429 budget_exceeded once the budget is spent.",
              Case((_s(spent, "95x20", **key), _s(limit, "100x20", **key)), "10m", (key,)),
              Case((_s(spent, "50x20", **key), _s(limit, "100x20", **key),
                    _s(spent, "0x20", **other_key), _s(limit, "0x20", **other_key)), "10m")),
    ]


def _performance_alerts() -> list[Alert]:
    latency = metric("srl_rlvr_serving_e2e_request_latency_seconds").name
    responses = series("srl_rlvr_serving_http_responses")
    waiting = series("srl_rlvr_serving_num_requests_waiting")
    escalations = series("srl_rlvr_routing_cascade_escalations")
    cascaded = series("srl_rlvr_routing_cascade_requests")
    fallbacks = series("srl_rlvr_routing_router_fallbacks")
    routed = series("srl_rlvr_routing_router_requests")
    g = "srl-rlvr-performance"
    alerts = []
    for tier, target in latency_targets_s().items():
        alerts.append(Alert(
            f"ServingLatencyP95High{tier.capitalize()}", g, latency_p95("5m", tier), ">", target, "2m", "warning",
            f"p95 request latency of the {tier} tier is above {_num(target)} s",
            f"The 95th percentile of {latency} over 5 minutes on the {tier} tier's servers is above the tier's "
            f"target, throughput.serving_latency_p95_ms of src/srl_rlvr/tiers/{tier}.yaml ({_num(target * 1000)} "
            f"ms). The tier label comes from the Prometheus scrape config (labels: {{tier: {tier}}} on the "
            "server's target), not from the server.",
            Case(tuple(_latency_series(tier, target, **SERVE)), "10m", ({"tier": tier},)),
            Case(tuple(_latency_series(tier, None, **SERVE) + _latency_series("cpu", 10.0, **SERVE)), "10m")))
    code_5xx = f'{responses}{{code=~"5.."}}'
    chat = {"job": "srl-rlvr-serve", "route": "/v1/chat/completions"}
    alerts += [
        Alert("ServingErrorRatioHigh", g,
              _share(f"sum by (job) (rate({code_5xx}[5m]))", f"sum by (job) (rate({responses}[5m]))"), ">",
              SERVING_ERROR_RATIO, "5m", "critical",
              f"Over {SERVING_ERROR_RATIO:.0%} of the API's responses on " "{{ $labels.job }} are 5xx",
              f"The share of {responses} with a 5xx code over 5 minutes, all routes together, is above "
              f"{_num(SERVING_ERROR_RATIO)} (rules.SERVING_ERROR_RATIO).",
              Case((_s(responses, "0+90x30", code="200", **chat), _s(responses, "0+10x30", code="500", **chat)),
                   "15m", ({"job": "srl-rlvr-serve"},)),
              Case((_s(responses, "0+99x30", code="200", **chat), _s(responses, "0+1x30", code="503", **chat),
                    _s(responses, "0+50x30", code="429", **chat)), "15m")),
        Alert("ServingQueueDeep", g, f"sum by (job, model_name) ({waiting})", ">", SERVING_QUEUE_DEPTH, "5m",
              "warning", f"More than {SERVING_QUEUE_DEPTH} requests wait for " "{{ $labels.model_name }}",
              f"{waiting} (requests queued for generation), summed over the server's model and adapters, has "
              f"stayed above {SERVING_QUEUE_DEPTH} (rules.SERVING_QUEUE_DEPTH): the server is saturated and "
              "latency grows.",
              Case((_s(waiting, "40x20", **SERVE),), "10m", (SERVE,)),
              Case((_s(waiting, "4x20", **SERVE),), "10m")),
        Alert("CascadeEscalationRateHigh", g,
              _share(f"sum by (cascade) (rate({escalations}[10m]))", f"sum by (cascade) (rate({cascaded}[10m]))"),
              ">", CASCADE_ESCALATION_RATIO, "10m", "warning",
              "Cascade {{ $labels.cascade }} escalates most requests",
              f"{escalations} / {cascaded} over 10 minutes is above {_num(CASCADE_ESCALATION_RATIO)} "
              "(rules.CASCADE_ESCALATION_RATIO): the cheap tiers' answers keep failing the checks, so the cascade "
              "costs more than sending the requests to the top tier directly.",
              Case((_s(cascaded, "0+10x40", cascade="cascade-demo", tier="gold"),
                    _s(escalations, "0+8x40", cascade="cascade-demo", from_tier="bronze", reason="format",
                       to_tier="silver")), "25m", ({"cascade": "cascade-demo"},)),
              Case((_s(cascaded, "0+10x40", cascade="cascade-demo", tier="gold"),
                    _s(escalations, "0+2x40", cascade="cascade-demo", from_tier="bronze", reason="format",
                       to_tier="silver")), "25m")),
        Alert("RouterFallbacksHigh", g,
              _or_zero(f"sum by (router) (rate({fallbacks}[5m]))", f"sum by (router) (rate({routed}[5m]))"), ">",
              ROUTER_FALLBACKS_PER_S, "5m", "warning",
              "Router {{ $labels.router }} keeps falling back to another tier",
              f"The rate of {fallbacks} (requests answered by another tier because the chosen one failed) is "
              f"above {_num(ROUTER_FALLBACKS_PER_S)}/s (rules.ROUTER_FALLBACKS_PER_S): a tier's server is failing.",
              Case((_s(routed, "0+60x30", router="router-demo-0.5", tier="silver"),
                    _s(fallbacks, "0+6x30", failed_tier="gold", router="router-demo-0.5")), "15m",
                   ({"router": "router-demo-0.5"},)),
              Case((_s(routed, "0+60x30", router="router-demo-0.5", tier="silver"),
                    _s(fallbacks, "0+1x30", failed_tier="gold", router="router-demo-0.5")), "15m")),
    ]
    return alerts


def _training_alerts() -> list[Alert]:
    loss = series("srl_rlvr_training_loss")
    recoveries = series("srl_rlvr_training_recoveries")
    reward_std = series("srl_rlvr_training_reward_std")
    entropy = series("srl_rlvr_training_entropy")
    last_step = series("srl_rlvr_training_last_step_timestamp_seconds")
    last_ckpt = series("srl_rlvr_training_last_checkpoint_timestamp_seconds")
    tps = series("srl_rlvr_training_tokens_per_second")
    step, max_steps = _step(), series("srl_rlvr_training_max_steps")
    g = "srl-rlvr-training"
    return [
        Alert("TrainingLossNonFinite", g, loss, "!=", loss, "2m", "critical",
              "Training loss of stage {{ $labels.stage }} is NaN",
              f"{loss} is NaN (a non-finite loss), or a NaN recovery ran in the last 15 minutes (increase of "
              f'{recoveries}{{reason="nan"}}): the step was skipped or the stage resumed from its last checkpoint.',
              Case((_s(loss, f"0.5x4 {_repeat('NaN', 16)}", **SRL), _s(loss, "0.5x20", **RLVR),
                    _s(recoveries, "0x5 1x15", reason="nan", **RLVR)), "10m", (SRL, {"reason": "nan", **RLVR})),
              Case((_s(loss, "0.5x20", **SRL), _s(recoveries, "0x5 1x15", reason="oom", **SRL)), "10m"),
              guard=f'or increase({recoveries}{{reason="nan"}}[15m]) > 0'),
        Alert("TrainingRewardCollapse", g, f"max_over_time({reward_std}[10m])", "<", REWARD_STD_MIN, "5m",
              "warning", "Rewards of stage {{ $labels.stage }} no longer vary",
              f"max_over_time({reward_std}[10m]) is below {_num(REWARD_STD_MIN)} while the stage trains: every "
              "rollout of a prompt gets the same reward, so GRPO's advantages are zero and nothing is learnt.",
              Case((_s(reward_std, "0.2x5 0x35", **SRL), *_stage_series("0+1x40", "100x40", **SRL)), "30m",
                   (SRL,)),
              Case((_s(reward_std, "0.2x40", **SRL), *_stage_series("0+1x40", "100x40", **SRL),
                    _s(reward_std, "0x40", **RLVR), *_stage_series("100x40", "100x40", **RLVR)), "30m"),
              guard=f"and {_training()}"),
        Alert("TrainingEntropyCollapse", g, entropy, "<", ENTROPY_MIN, "10m", "warning",
              "Token entropy of stage {{ $labels.stage }} collapsed",
              f"{entropy} is below {_num(ENTROPY_MIN)} nats while the stage trains: the policy samples nearly "
              "deterministically, so its rollouts stop exploring.",
              Case((_s(entropy, "0.1x30", **SRL), *_stage_series("0+1x30", "100x30", **SRL)), "20m", (SRL,)),
              Case((_s(entropy, "1.5x30", **SRL), *_stage_series("0+1x30", "100x30", **SRL),
                    _s(entropy, "0.1x30", **RLVR), *_stage_series("100x30", "100x30", **RLVR)), "20m"),
              guard=f"and {_training()}"),
        Alert("TrainingStalled", g, f"time() - {last_step}", ">", STALL_S, "5m", "critical",
              "Training stage {{ $labels.stage }} has made no step for " f"{STALL_S // 60} minutes",
              f"time() - {last_step} is above {STALL_S} s while {step} < {max_steps} (and the stage has been "
              "exported for 15 minutes): the trainer is hung or dead while its GPU time is still paid for.",
              Case((_s(last_step, "0+60x10 600x30", **SRL), *_stage_series("0+1x10 10x30", "100x40", **SRL)),
                   "35m", (SRL,)),
              Case((_s(last_step, "0+60x40", **SRL), *_stage_series("0+1x40", "100x40", **SRL),
                    _s(last_step, "0+60x10 600x30", **RLVR), *_stage_series("0+10x10 100x30", "100x40", **RLVR),
                    _s(last_step, "_x25 0x15", **SFT), *_stage_series("_x25 0x15", "100x40", **SFT)), "35m"),
              guard=f"and {_not_finished()} and {_exported_for('15m')}"),
        Alert("TrainingCheckpointStale", g, f"time() - {last_ckpt}", ">", CHECKPOINT_AGE_S, "10m", "warning",
              "Stage {{ $labels.stage }} has written no checkpoint for an hour",
              f"time() - {last_ckpt} is above {CHECKPOINT_AGE_S} s while the stage trains (and has been exported "
              "for an hour): a crash now loses over an hour of GPU time. Check save_steps and the checkpoint "
              "folder's disk.",
              Case((_s(last_ckpt, "0x100", **SRL), *_stage_series("0+1x100", "1000x100", **SRL)), "75m", (SRL,)),
              Case((_s(last_ckpt, "0+60x100", **SRL), *_stage_series("0+1x100", "1000x100", **SRL),
                    _s(last_ckpt, "0x100", **RLVR), *_stage_series("1000x100", "1000x100", **RLVR),
                    _s(last_ckpt, "_x45 0x54", **SFT), *_stage_series("_x45 0+1x54", "_x45 1000x54", **SFT)),
                   "75m"),
              guard=f"and {_not_finished()} and {_exported_for('1h')}"),
        Alert("TrainingThroughputDrop", g, f"{tps} / avg_over_time({tps}[1h])", "<", THROUGHPUT_RATIO, "15m",
              "warning", "Generation throughput of stage {{ $labels.stage }} dropped by half",
              f"{tps} is below {_num(THROUGHPUT_RATIO)} x its 1-hour average while the stage trains: a slower "
              "GPU, memory pressure (the vLLM KV cache), or longer completions.",
              Case((_s(tps, "1000x40 300x40", **SRL), *_stage_series("0+1x80", "1000x80", **SRL)), "65m", (SRL,)),
              Case((_s(tps, "1000x80", **SRL), *_stage_series("0+1x80", "1000x80", **SRL),
                    _s(tps, "1000x40 300x40", **RLVR), *_stage_series("1000x80", "1000x80", **RLVR)), "65m"),
              guard=f"and {_training()}"),
    ]


def alerts(overrides: dict[str, dict[str, Any]] | None = None) -> list[Alert]:
    """Every alert, sorted by group and name. ``overrides`` maps an alert name to new values of ``threshold``,
    ``for`` and ``severity``, e.g. ``{"ServingQueueDeep": {"threshold": 64, "for": "10m"}}`` (the promtool
    cases are written for the defaults: a threshold moved past them makes ``promtool test rules`` say so)."""
    found = sorted([*_cost_alerts(), *_performance_alerts(), *_training_alerts()], key=lambda a: (a.group, a.name))
    by_name = {a.name: a for a in found}
    for name, changes in (overrides or {}).items():
        if name not in by_name:
            raise KeyError(f"override for unknown alert {name!r}; alerts: {', '.join(by_name)}")
        unknown = set(changes) - {"threshold", "for", "severity"}
        if unknown:
            raise KeyError(f"override of {name}: only threshold, for and severity can change, not {sorted(unknown)}")
        renamed = {"for_" if key == "for" else key: value for key, value in changes.items()}
        by_name[name] = dataclasses.replace(by_name[name], **renamed)
    chosen = [by_name[a.name] for a in found]
    for alert in chosen:
        if not any(int(n) for n in re.findall(r"\d+", alert.for_)):
            raise ValueError(f"{alert.name}: for must be a non-zero duration, not {alert.for_!r}")
    return chosen


ALERTS: list[Alert] = alerts()  # the defaults (what alerts.yml holds)


def build_rules(chosen: list[Alert], interval: str | None = None) -> dict[str, Any]:
    """The rules file of ``chosen`` (grouped, sorted); refuses an expression naming a metric not in the catalog
    (one written as a plain string instead of through series())."""
    names = [a.name for a in chosen]
    if len(set(names)) != len(names):
        raise ValueError(f"alert names repeat: {names}")
    for alert in chosen:
        for text in (alert.expr, alert.query):
            unknown = unknown_in(text)
            if unknown:
                raise ValueError(f"{alert.name}: {sorted(unknown)} not in the metrics catalog "
                                 "(srl_rlvr.monitoring.catalog): build expressions with series()")
    groups = []
    for group in sorted({a.group for a in chosen}):
        entry: dict[str, Any] = {"name": group}
        if interval:
            entry["interval"] = interval
        entry["rules"] = [a.rule() for a in sorted(chosen, key=lambda a: a.name) if a.group == group]
        groups.append(entry)
    return {"groups": groups}


def alert_rules(overrides: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """The alerting rules file (``alerts.yml``) as a dict; ``overrides`` as for :func:`alerts`."""
    return build_rules(alerts(overrides))


def fast_alert(latency_threshold_s: float, for_: str = "0s") -> Alert:
    """The serving latency alert for an end-to-end test: no tier filter, a 30 s window, any threshold/for."""
    fast = Case((), "0m")
    return Alert("ServingLatencyP95High", FAST_GROUP, latency_p95("30s"), ">", latency_threshold_s,
                 for_, "warning", f"p95 request latency is above {_num(latency_threshold_s)} s",
                 f"The 95th percentile of {metric('srl_rlvr_serving_e2e_request_latency_seconds').name} over 30 "
                 f"seconds is above {_num(latency_threshold_s)} s (the end-to-end test's rules, "
                 "srl_rlvr.monitoring.rules.fast_rules).", fast, fast)


def fast_rules(latency_threshold_s: float, for_: str = "0s", interval: str | None = None) -> dict[str, Any]:
    """A rules file with only ``ServingLatencyP95High`` (no tier filter, window ``[30s]``, ``latency_threshold_s``,
    ``for_``) in group ``srl-rlvr-fast``, evaluated every ``interval`` (default: the global evaluation_interval):
    the same expression builder as the tier alerts, so an end-to-end test that sees it fire within a minute also
    exercises the real rules' PromQL."""
    return build_rules([fast_alert(latency_threshold_s, for_)], interval=interval)


# --- files ---------------------------------------------------------------------------------------------------
def alert_tests(chosen: list[Alert]) -> dict[str, Any]:
    """promtool's unit-test file: for every alert a firing test and a quiet test."""
    tests = []
    for alert in chosen:
        for kind, case in (("fires", alert.firing), ("stays quiet", alert.quiet)):
            expected = []
            for labels in case.exp_labels if kind == "fires" else ():
                full = {**dict(sorted(labels.items())), **alert.labels}
                expected.append({"exp_labels": dict(sorted(full.items())),
                                 "exp_annotations": alert.rendered_annotations(full)})
            tests.append({"name": f"{alert.name} {kind}", "interval": "1m",
                          "input_series": [dict(s) for s in case.series],
                          "alert_rule_test": [{"eval_time": case.eval_time, "alertname": alert.name,
                                               "exp_alerts": expected}]})
    return {"rule_files": ["alerts.yml"], "evaluation_interval": "1m", "tests": tests}


def prometheus_config() -> dict[str, Any]:
    return {
        "global": {"scrape_interval": "15s", "evaluation_interval": "15s"},
        "rule_files": ["alerts.yml", "vllm_compat.yml"],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": ["127.0.0.1:9093"]}]}]},
        "scrape_configs": [
            {"job_name": "srl-rlvr-serve", "metrics_path": "/metrics",
             "static_configs": [{"targets": ["127.0.0.1:8000"], "labels": {"tier": "gold"}}]},
            {"job_name": "srl-rlvr-training",
             "static_configs": [{"targets": ["127.0.0.1:9100"]}]},
        ],
    }


PROMETHEUS_NOTE = """\
#
# Example Prometheus config for the alerts beside it:
#   prometheus --config.file prometheus.yml
# srl-rlvr-serve: `srl-rlvr serve --port 8000` (srl_rlvr_serving_* and srl_rlvr_routing_* on /metrics).
#   The `tier` label is attached HERE, per target: the ServingLatencyP95High<Tier> alerts select
#   tier="gold" etc. Run one target (or job) per tier's server, each with its own `labels: {tier: ...}`.
# srl-rlvr-training: node exporter's textfile collector serves each stage's metrics.prom
#   (srl_rlvr_training_*), e.g. `prometheus-node-exporter --collector.textfile.directory runs/demo/srl`;
#   or scrape the stage's own port when monitoring.port is set.
# rule_files: vllm_compat.yml records our serving series under vLLM's own vllm:* names (for vLLM's dashboards).
"""

ALERTMANAGER_NOTE = """\
#
# Example Alertmanager config: every alert goes to a webhook (http://127.0.0.1:5001/alerts), one receiver per
# severity so each can be pointed elsewhere (a pager for critical, chat for warning, a digest for info).
#   prometheus-alertmanager --config.file alertmanager.yml
"""


def alertmanager_config() -> dict[str, Any]:
    url = "http://127.0.0.1:5001/alerts"
    repeat = {"critical": "1h", "warning": "4h", "info": "24h"}
    return {
        "route": {"receiver": "warning", "group_by": ["alertname", "severity"], "group_wait": "10s",
                  "group_interval": "1m", "repeat_interval": "4h",
                  "routes": [{"matchers": [f'severity="{s}"'], "receiver": s, "repeat_interval": repeat[s]}
                             for s in SEVERITIES]},
        "receivers": [{"name": s, "webhook_configs": [{"url": url, "send_resolved": True}]} for s in SEVERITIES],
    }


def _dump(data: dict[str, Any], note: str = "") -> str:
    return HEADER + note + yaml.safe_dump(data, sort_keys=False, default_flow_style=False, width=4096,
                                          allow_unicode=True)


VLLM_COMPAT_NOTE = "# vLLM's own metric names (vllm:*), recorded from ours, for dashboards made for vLLM.\n"


def write_rules(out_dir: Path, **kw: Any) -> list[Path]:
    """Write ``alerts.yml``, ``alerts_test.yml`` (promtool unit tests), ``vllm_compat.yml`` (recording rules),
    and example ``prometheus.yml`` and ``alertmanager.yml`` into ``out_dir``; ``kw`` goes to :func:`alerts`
    (``overrides=``). Deterministic."""
    chosen = alerts(**kw)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    from srl_rlvr.monitoring.catalog import vllm_compat_rules

    files = {
        "alerts.yml": _dump(build_rules(chosen)),
        "vllm_compat.yml": _dump(vllm_compat_rules(), VLLM_COMPAT_NOTE),
        "alerts_test.yml": _dump(alert_tests(chosen)),
        "prometheus.yml": _dump(prometheus_config(), PROMETHEUS_NOTE),
        "alertmanager.yml": _dump(alertmanager_config(), ALERTMANAGER_NOTE),
    }
    paths = []
    for name, text in files.items():
        path = out_dir / name
        path.write_text(text, encoding="utf-8", newline="\n")
        paths.append(path)
    return paths
