"""The server's Prometheus metrics, from the catalog (srl_rlvr.monitoring.catalog): what vLLM also exports,
with vLLM's meaning and labels (the recording rules in infra/monitoring/prometheus/vllm_compat.yml give
them vLLM's ``vllm:*`` names back), and the routing counters (:class:`RouteCounters`).

Each app owns its own ``CollectorRegistry`` (several apps in one process, as in tests, never clash).
Every vLLM-named series carries ``model_name`` (the base model's served name) and ``lora_name`` (the
adapter, or empty for the base model).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from srl_rlvr.monitoring.catalog import SERVED, build, metric

# vLLM does the same: the *_created series only double the output (process-wide setting).
disable_created_metrics()

LABELS = SERVED
# (model_name, lora_name) -> (running, waiting)
LoadSnapshot = Callable[[], dict[tuple[str, str], tuple[int, int]]]


class _QueueGauges:
    """``srl_rlvr_serving_num_requests_running`` / ``..._waiting``, read from the backends at scrape time."""

    def __init__(self, snapshot: LoadSnapshot):
        self._snapshot = snapshot

    def collect(self) -> Iterable[GaugeMetricFamily]:
        run_spec = metric("srl_rlvr_serving_num_requests_running")
        wait_spec = metric("srl_rlvr_serving_num_requests_waiting")
        running = GaugeMetricFamily(run_spec.name, run_spec.help, labels=run_spec.labels)
        waiting = GaugeMetricFamily(wait_spec.name, wait_spec.help, labels=wait_spec.labels)
        for (model, lora), (n_run, n_wait) in sorted(self._snapshot().items()):
            running.add_metric([model, lora], n_run)
            waiting.add_metric([model, lora], n_wait)
        return [running, waiting]


class ServingMetrics:
    """The server's metrics, built from the catalog (srl_rlvr.monitoring.catalog): names, help, labels and
    buckets are defined there once."""

    def __init__(self, snapshot: LoadSnapshot):
        self.registry = CollectorRegistry()
        reg = self.registry
        self.time_to_first_token = build("srl_rlvr_serving_time_to_first_token_seconds", reg)
        self.e2e_latency = build("srl_rlvr_serving_e2e_request_latency_seconds", reg)
        self.time_per_output_token = build("srl_rlvr_serving_time_per_output_token_seconds", reg)
        self.prompt_tokens = build("srl_rlvr_serving_prompt_tokens", reg)
        self.generation_tokens = build("srl_rlvr_serving_generation_tokens", reg)
        self.request_success = build("srl_rlvr_serving_request_success", reg)
        self.http_responses = build("srl_rlvr_serving_http_responses", reg)
        reg.register(_QueueGauges(snapshot))

    def observe_finished(self, labels: tuple[str, str], *, arrival: float, first_token: float | None, end: float,
                         prompt_tokens: int, completion_tokens: int, finish_reason: str) -> None:
        self.e2e_latency.labels(*labels).observe(end - arrival)
        if first_token is not None:
            self.time_to_first_token.labels(*labels).observe(first_token - arrival)
            if completion_tokens > 1:
                self.time_per_output_token.labels(*labels).observe((end - first_token) / (completion_tokens - 1))
        self.prompt_tokens.labels(*labels).inc(prompt_tokens)
        self.generation_tokens.labels(*labels).inc(completion_tokens)
        self.request_success.labels(*labels, finish_reason).inc()

    def exposition(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class RouteCounters:
    """``srl_rlvr:*`` counters and gauges of the router and cascade model names, in the app's registry (beside
    the vLLM-named ones), from the catalog. Dashboards and alert rules are generated from the same entries."""

    def __init__(self, registry: CollectorRegistry):
        self.router_requests = build("srl_rlvr_routing_router_requests", registry)
        self.router_fallbacks = build("srl_rlvr_routing_router_fallbacks", registry)
        self.prior_decisions = build("srl_rlvr_routing_prior_decisions", registry)
        self.cascade_requests = build("srl_rlvr_routing_cascade_requests", registry)
        self.cascade_escalations = build("srl_rlvr_routing_cascade_escalations", registry)
        self.rejected = build("srl_rlvr_routing_rejected", registry)
        self.cost = build("srl_rlvr_routing_cost_usd", registry)
        self.budget_spent = build("srl_rlvr_routing_budget_spent_usd", registry)
        self.budget_limit = build("srl_rlvr_routing_budget_limit_usd", registry)


# The API paths /metrics counts responses of; anything else is "other" (a label per raw path would let any
# client grow the series without bound).
API_ROUTES = ("/v1/chat/completions", "/v1/completions", "/v1/models", "/v1/load_lora_adapter",
              "/v1/unload_lora_adapter", "/health", "/metrics")


def route_label(path: str) -> str:
    return path if path in API_ROUTES else "other"


def key_id(api_key: str | None) -> str:
    """A label for an API key that does not reveal it: the first 8 hex of its sha256 ("anonymous": no key)."""
    import hashlib

    return hashlib.sha256(api_key.encode("utf-8")).hexdigest()[:8] if api_key else "anonymous"
