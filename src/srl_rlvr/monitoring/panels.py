"""The dashboard panels, defined once: the Grafana JSON (:mod:`.grafana`) and the HTML dashboard
(:mod:`.dashboard`) both draw these.

Every query names its metrics through :func:`srl_rlvr.monitoring.catalog.series`, so a panel cannot query a
metric the catalog lacks (importing this module fails instead of a dashboard showing "No data"). Legends use
Grafana's ``{{label}}`` templates; the HTML dashboard fills them in the same way.

    srl-rlvr monitor generate                # grafana/{training,cost,performance}.json from these
    srl-rlvr monitor dashboard --prometheus http://127.0.0.1:9090 --out out/dashboard
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from srl_rlvr.monitoring.catalog import series

# Units a panel may carry (the y axis label of the HTML dashboard; mapped to Grafana units in .grafana).
UNITS = ("seconds", "usd", "usd/h", "usd/request", "ratio", "tokens/s", "requests/s", "steps", "nats", "1")
DASHBOARDS = ("training", "cost", "performance")
RATE = "5m"


@dataclass(frozen=True)
class Panel:
    title: str
    unit: str
    queries: list[tuple[str, str]]  # (legend template, PromQL)
    description: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if self.unit not in UNITS:
            raise ValueError(f"panel {self.title!r}: unit {self.unit!r} is none of {', '.join(UNITS)}")
        if not self.queries:
            raise ValueError(f"panel {self.title!r} has no query")

    @property
    def slug(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.title.lower()).strip("-")


def _rate(name: str, by: str, suffix: str | None = None, matcher: str = "") -> str:
    return f"sum by ({by}) (rate({series(name, suffix)}{matcher}[{RATE}]))"


def _quantile(q: float, name: str, by: str = "tier") -> str:
    return f"histogram_quantile({q}, {_rate(name, f'{by}, le', 'bucket')})"


def _training() -> list[Panel]:
    def gauge(name: str) -> str:
        return f"max by (stage) ({series(name)})"

    return [
        Panel("Global step", "steps", [("step {{stage}}", gauge("srl_rlvr_training_global_step")),
                                       ("max steps {{stage}}", gauge("srl_rlvr_training_max_steps"))],
              "Optimiser steps done against the steps the stage will run."),
        Panel("Reward", "1", [("mean {{stage}}", gauge("srl_rlvr_training_reward_mean")),
                              ("std {{stage}}", gauge("srl_rlvr_training_reward_std"))],
              "Mean and std of the last step's rewards; a std near 0 leaves GRPO nothing to learn from."),
        Panel("Format OK ratio", "ratio", [("{{stage}}", gauge("srl_rlvr_training_format_ok_ratio"))],
              "Share of rollouts in the <think>...</think> format."),
        Panel("Informative ratio", "ratio", [("{{stage}}", gauge("srl_rlvr_training_informative_ratio"))],
              "Share of prompt groups dynamic sampling kept (reward std above epsilon)."),
        Panel("Entropy", "nats", [("{{stage}}", gauge("srl_rlvr_training_entropy"))],
              "Mean token entropy of the rollouts; a collapse towards 0 is a warning."),
        Panel("Training tokens per second", "tokens/s",
              [("{{stage}}", gauge("srl_rlvr_training_tokens_per_second"))],
              "Completion tokens generated per second during rollouts."),
        Panel("Step seconds", "seconds", [("{{stage}}", gauge("srl_rlvr_training_step_seconds"))],
              "Wall time of the last optimiser step."),
        Panel("Recoveries by reason", "1",
              [("{{reason}}", f"sum by (reason) (increase({series('srl_rlvr_training_recoveries')}[1h]))")],
              "Training-fault recoveries over the last hour, by kind of fault."),
    ]


def _cost() -> list[Panel]:
    def gauge(name: str) -> str:
        return f"max by (stage) ({series(name)})"

    requests = (f"sum by (tier) (rate({series('srl_rlvr_routing_router_requests')}[{RATE}])"
                f" or rate({series('srl_rlvr_routing_cascade_requests')}[{RATE}]))")
    return [
        Panel("Training spend", "usd",
              [("spent {{stage}}", gauge("srl_rlvr_training_cost_usd")),
               ("estimate at completion {{stage}}", gauge("srl_rlvr_training_cost_estimate_usd")),
               ("budget {{stage}}", gauge("srl_rlvr_training_budget_usd"))],
              "Spend of each stage so far, the estimate at completion at the current step rate, and the budget."),
        Panel("Routed spend rate by tier", "usd/h",
              [("{{tier}}", f"{_rate('srl_rlvr_routing_cost_usd', 'tier')} * 3600")],
              "Estimated spend of routed requests per hour, by the tier that answered."),
        Panel("Cost per request by tier", "usd/request",
              [("{{tier}}", f"{_rate('srl_rlvr_routing_cost_usd', 'tier')} / {requests}")],
              "Routed spend rate over router and cascade requests rate, by tier."),
        Panel("Budget use by key", "ratio",
              [("{{key_id}}", f"sum by (key_id) ({series('srl_rlvr_routing_budget_spent_usd')})"
                              f" / sum by (key_id) ({series('srl_rlvr_routing_budget_limit_usd')})")],
              "Share of each API key's budget spent this period (key_id: first 8 hex of the key's sha256)."),
    ]


def _performance() -> list[Panel]:
    e2e = "srl_rlvr_serving_e2e_request_latency_seconds"
    responses = series("srl_rlvr_serving_http_responses")
    server_errors = _rate("srl_rlvr_serving_http_responses", "tier", matcher='{code=~"5.."}')
    all_responses = f"sum by (tier) (rate({responses}[{RATE}]))"
    return [
        Panel("End-to-end latency by tier", "seconds",
              [(f"p{int(q * 100)} {{{{tier}}}}", _quantile(q, e2e)) for q in (0.5, 0.95, 0.99)],
              "Seconds from request arrival to its last token (p50, p95, p99 of the histogram)."),
        Panel("Time to first token p95", "seconds",
              [("p95 {{tier}}", _quantile(0.95, "srl_rlvr_serving_time_to_first_token_seconds"))],
              "Seconds from request arrival to the first generated text, 95th percentile."),
        Panel("Generated tokens per second", "tokens/s",
              [("{{tier}}", _rate("srl_rlvr_serving_generation_tokens", "tier"))], "Tokens generated per second."),
        Panel("Requests running and waiting", "1",
              [("running {{tier}}", f"sum by (tier) ({series('srl_rlvr_serving_num_requests_running')})"),
               ("waiting {{tier}}", f"sum by (tier) ({series('srl_rlvr_serving_num_requests_waiting')})")],
              "Requests being generated now and requests queued for generation."),
        # "or all * 0": no 5xx yet is a ratio of 0, not "No data" (an unincremented label set has no series)
        Panel("Error ratio", "ratio",
              [("5xx {{tier}}", f"({server_errors} or {all_responses} * 0) / {all_responses}")],
              "Share of the API's HTTP responses with a 5xx status."),
        Panel("Cascade escalations", "requests/s",
              [("{{from_tier}} to {{to_tier}} ({{reason}})",
                _rate("srl_rlvr_routing_cascade_escalations", "from_tier, to_tier, reason"))],
              "Cascade moves to the next tier per second, by reason."),
        Panel("Router requests by tier", "requests/s",
              [("{{tier}}", _rate("srl_rlvr_routing_router_requests", "tier"))],
              "Requests answered through a router model name per second, by the tier that answered."),
        Panel("Router fallbacks", "requests/s",
              [("{{failed_tier}} failed", _rate("srl_rlvr_routing_router_fallbacks", "failed_tier"))],
              "Router requests answered by another tier because the chosen one failed, per second."),
    ]


def all_panels() -> dict[str, list[Panel]]:
    """The three dashboards' panels, in display order: ``training``, ``cost``, ``performance``."""
    return {"training": _training(), "cost": _cost(), "performance": _performance()}
