"""Prometheus metrics under vLLM's names, so dashboards built for vLLM read this server too, and the
``srl_rlvr:*`` counters of the routed model names (:class:`RouteCounters`).

Each app owns its own ``CollectorRegistry`` (several apps in one process, as in tests, never clash).
Every vLLM-named series carries ``model_name`` (the base model's served name) and ``lora_name`` (the
adapter, or empty for the base model).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

# vLLM does the same: the *_created series only double the output (process-wide setting).
disable_created_metrics()

LABELS = ("model_name", "lora_name")
# (model_name, lora_name) -> (running, waiting)
LoadSnapshot = Callable[[], dict[tuple[str, str], tuple[int, int]]]

_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0)
_PER_TOKEN_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5)


class _QueueGauges:
    """``vllm:num_requests_running`` / ``vllm:num_requests_waiting``, read from the backends at scrape time."""

    def __init__(self, snapshot: LoadSnapshot):
        self._snapshot = snapshot

    def collect(self) -> Iterable[GaugeMetricFamily]:
        running = GaugeMetricFamily("vllm:num_requests_running", "Requests being generated now.", labels=LABELS)
        waiting = GaugeMetricFamily("vllm:num_requests_waiting", "Requests queued for generation.", labels=LABELS)
        for (model, lora), (n_run, n_wait) in sorted(self._snapshot().items()):
            running.add_metric([model, lora], n_run)
            waiting.add_metric([model, lora], n_wait)
        return [running, waiting]


class ServingMetrics:
    def __init__(self, snapshot: LoadSnapshot):
        self.registry = CollectorRegistry()
        reg = self.registry
        self.time_to_first_token = Histogram(
            "vllm:time_to_first_token_seconds", "Seconds from request arrival to the first generated text.",
            LABELS, buckets=_LATENCY_BUCKETS, registry=reg)
        self.e2e_latency = Histogram(
            "vllm:e2e_request_latency_seconds", "Seconds from request arrival to its last token.",
            LABELS, buckets=_LATENCY_BUCKETS, registry=reg)
        self.time_per_output_token = Histogram(
            "vllm:time_per_output_token_seconds", "Mean seconds per generated token after the first, per request.",
            LABELS, buckets=_PER_TOKEN_BUCKETS, registry=reg)
        self.prompt_tokens = Counter("vllm:prompt_tokens", "Prompt tokens processed.", LABELS, registry=reg)
        self.generation_tokens = Counter("vllm:generation_tokens", "Tokens generated.", LABELS, registry=reg)
        self.request_success = Counter(
            "vllm:request_success", "Requests finished, by finish reason.", (*LABELS, "finished_reason"), registry=reg)
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
    """``srl_rlvr:*`` counters of the router and cascade model names, in the app's registry (beside the
    vLLM-named ones). Dashboards and tests read these names and labels: keep them."""

    def __init__(self, registry: CollectorRegistry):
        self.router_requests = Counter(
            "srl_rlvr:router_requests", "Requests answered through a router model name, by the tier that answered.",
            ("router", "tier"), registry=registry)
        self.cascade_requests = Counter(
            "srl_rlvr:cascade_requests", "Requests answered through a cascade model name, by the tier whose answer "
            "was returned.", ("cascade", "tier"), registry=registry)
        self.cascade_escalations = Counter(
            "srl_rlvr:cascade_escalations", "Cascade moves to the next tier; reason: format, agreement, task_check, "
            "no_completions or error (the tier failed).", ("cascade", "from_tier", "to_tier", "reason"),
            registry=registry)
        self.rejected = Counter(
            "srl_rlvr:route_rejected", "Router or cascade requests refused: budget_exceeded (429), all_tiers_failed "
            "(502), no_tier_available (503).", ("name", "reason"), registry=registry)
