"""The router and the cascade as model names of ``srl-rlvr serve`` (docs/serving.md, "Serving integration").

    srl-rlvr serve --model smollm2-135m --route-config configs/route-cpu.yaml \\
        --predictor out/route_eval/predictor.json --escalation-log out/escalations.jsonl

adds ``router-<name>-<threshold>`` (any threshold in [0, 1]), ``cascade-<name>`` and, for each tier,
``tier-<name>-<tier>`` (that tier alone, e.g. the teacher ``srl-rlvr distill`` asks) to the catalog. A
request for one runs :meth:`Router.call` (fallbacks, retries, cooldowns, the key's budget),
:meth:`Cascade.run` or the one tier in a worker thread; every tier call they make runs on the event loop
through a serving backend, or in process for a tier that needs none (:mod:`srl_rlvr.serving.route_targets`).

The predictor file is **watched**: when ``--predictor``'s file changes (``srl-rlvr loop`` refits it), the
next routed request loads it (the router keeps its spend and health state); ``/v1/models`` shows the
loaded file's sha256 on the router's card. A file that no longer loads is logged and the old predictor
kept.

The router reads the *problem*: the last user message, or the problem inside it when it has the training
layout (``Problem:\\n...\\n\\nSteps so far:``, :func:`srl_rlvr.prompts.full_problem_messages`). The answer
goes out as an ordinary chat completion whose ``model`` is the requested name, with ``x-srl-rlvr-*``
headers (the answering tier, the cost, ...); streaming sends it once it is complete. The ``srl_rlvr:*``
counters are :class:`srl_rlvr.serving.metrics.RouteCounters`.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from srl_rlvr.errors import UserInputError
from srl_rlvr.routing import (
    AllTiersFailed,
    BudgetExceeded,
    Cascade,
    CascadeResult,
    NoTierAvailable,
    Router,
    Tier,
    build_cascade,
    call_cost,
    is_router_model,
    load_route_config,
    load_router,
    resolve_router_model,
)
from srl_rlvr.serving.catalog import ModelCatalog, Target
from srl_rlvr.serving.errors import APIError
from srl_rlvr.serving.metrics import RouteCounters, ServingMetrics, key_id
from srl_rlvr.serving.route_targets import TierOutput, TierTargets
from srl_rlvr.serving.schemas import ChatCompletionRequest
from srl_rlvr.serving.settings import ServeSettings

log = logging.getLogger("srl_rlvr.serving")

HEADER_TIER = "x-srl-rlvr-tier"  # the tier whose answer this is
HEADER_COST = "x-srl-rlvr-cost-usd"  # dollars: the answering call (router) or every call made (cascade)
HEADER_SIMULATED = "x-srl-rlvr-simulated"  # "true" when that tier is a stand-in (its cost and quality are too)
HEADER_ESCALATIONS = "x-srl-rlvr-escalations"  # cascade: how many times the request moved to the next tier
HEADER_VERIFIED = "x-srl-rlvr-verified"  # cascade: whether the returned answer passed the verifier
HEADER_FAILED = "x-srl-rlvr-failed-tiers"  # router: tiers that failed before the answering one (when any)

TIER_PREFIX = "tier-"  # tier-<router name>-<tier>: one tier of the route config, asked directly
_FULL_PROBLEM = re.compile(r"^Problem:\n(?P<problem>.+?)\n\nSteps so far:\n", re.S)
_ESCALATION_REASONS = {"format": "format", "agreement": "agreement", "task check failed": "task_check",
                       "no completions": "no_completions"}
ESCALATION_REASONS = (*dict.fromkeys(_ESCALATION_REASONS.values()), "error")


class RoutingBridge:
    """A :class:`~srl_rlvr.serving.catalog.VirtualModelSource` for one route config's router and cascade;
    ``targets`` reaches their tiers."""

    def __init__(self, settings: ServeSettings, catalog: ModelCatalog, metrics: ServingMetrics, router: Router,
                 cascade: Cascade, config_path: str):
        self.settings, self.catalog, self.metrics = settings, catalog, metrics
        self.router, self.cascade, self.config_path = router, cascade, config_path
        self.counters = RouteCounters(metrics.registry)
        self._zero_series()
        self.created = int(time.time())
        self.predictor_path = settings.routing.predictor
        self._predictor_stamp = _stamp(self.predictor_path)
        self.predictor_digest = _digest(self.predictor_path)
        self.targets = TierTargets(settings, catalog, metrics, cooldown_s=router.health.cooldown_s)
        self._check_names()
        self.targets.check(router.tiers, config_path)

    @classmethod
    def from_settings(cls, settings: ServeSettings, catalog: ModelCatalog, metrics: ServingMetrics) -> RoutingBridge:
        """The bridge for ``settings.routing`` (UserInputError for a bad route config, predictor or tier)."""
        section = settings.routing
        if not section.config:
            raise UserInputError("routing.config is not set (srl-rlvr serve --route-config PATH)")
        router = load_router(section.config, section.predictor)
        cascade = build_cascade(load_route_config(section.config), router.tiers, log=section.escalation_log)
        return cls(settings, catalog, metrics, router, cascade, section.config)

    def _zero_series(self) -> None:
        """Export 0 for every label set known at start (Prometheus' advice), so a rate, an alert or a panel
        on these counters has a series before the first event instead of "No data"."""
        c, router, cascade = self.counters, self.router.name, self.cascade.name
        for tier in self.router.tiers:
            c.router_requests.labels(router, tier.name)
            if tier.name in self.router.on_prior:
                c.prior_decisions.labels(router, tier.name)
            c.router_fallbacks.labels(router, tier.name)
            c.cost.labels(router, tier.name)
        for tier in self.cascade.tiers:
            c.cascade_requests.labels(cascade, tier.name)
            c.cost.labels(cascade, tier.name)
        for before, after in zip(self.cascade.tiers, self.cascade.tiers[1:]):
            for reason in ESCALATION_REASONS:
                c.cascade_escalations.labels(cascade, before.name, after.name, reason)
        for name in (router, cascade):
            for reason in ("budget_exceeded", "all_tiers_failed", "no_tier_available"):
                c.rejected.labels(name, reason)

    def tier_model_names(self) -> dict[str, Tier]:
        """``tier-<router name>-<tier>`` -> that tier (one name per tier of the route config)."""
        return {f"{TIER_PREFIX}{self.router.name}-{t.name}": t for t in self.router.tiers}

    def _check_names(self) -> None:
        names = {self.router.model, self.cascade.name, *self.tier_model_names()}
        if self.settings.base_name in names or is_router_model(self.settings.base_name):
            raise UserInputError(f"served model name {self.settings.base_name!r} clashes with the routed names "
                                 f"(router-..., {self.cascade.name}, tier-...)")

    def reload_predictor(self) -> bool:
        """Load the predictor file again when it changed since it was read; True when it did."""
        stamp = _stamp(self.predictor_path)
        if stamp is None or stamp == self._predictor_stamp:
            return False
        from srl_rlvr.routing.predictor import QualityPredictor

        self._predictor_stamp = stamp
        try:
            predictor = QualityPredictor.load(self.predictor_path)
        except UserInputError as exc:  # a half-written or foreign file: keep routing on the old one
            log.warning("router %s: kept the old predictor: %s", self.router.name, exc)
            return False
        self.router = self.router.with_predictor(predictor)
        self.predictor_digest = _digest(self.predictor_path)
        log.info("router %s: loaded the refitted predictor %s (sha256 %s)", self.router.name, self.predictor_path,
                 (self.predictor_digest or "")[:12])
        return True

    # --- the catalog's hook ------------------------------------------------------------------------
    def resolve(self, name: str) -> Any:
        self.reload_predictor()
        if name == self.cascade.name:
            return _CascadeModel(self)
        tier = self.tier_model_names().get(name)
        if tier is not None:
            return _TierModel(self, tier, name)
        if not is_router_model(name):
            return None
        try:
            router = resolve_router_model(name, {self.router.name: self.router})
        except UserInputError as exc:
            return _Refused(APIError(404, f"The model `{name}` does not exist: {exc}", "model_not_found", "model"))
        return _RouterModel(self, router, name)

    def cards(self) -> list[dict[str, Any]]:
        self.reload_predictor()
        cards = [{"id": name, "object": "model", "created": self.created, "owned_by": "srl-rlvr",
                  "root": self.config_path, "parent": None}
                 for name in (self.router.model, self.cascade.name, *self.tier_model_names())]
        cards[0]["predictor"] = {"path": self.predictor_path, "sha256": self.predictor_digest}
        for card in cards[2:]:
            card["simulated"] = self.tier_model_names()[card["id"]].simulated
        return cards

    async def close(self) -> None:
        await self.targets.close()

    # --- a request ---------------------------------------------------------------------------------
    def problem(self, body: Any, name: str) -> tuple[str, list[dict[str, str]]]:
        """(the problem the router reads, the chat messages) of a request for a routed name."""
        if not isinstance(body, ChatCompletionRequest):
            raise APIError(400, f"`{name}` is served on /v1/chat/completions only", "unsupported_endpoint", "model")
        messages = [m.as_template_message() for m in body.messages]
        user = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
        if not user.strip():
            raise APIError(400, f"`{name}` routes on the last user message, and this request has none with text",
                           "invalid_messages", "messages")
        match = _FULL_PROBLEM.match(user)
        return (match["problem"] if match else user), messages

    def observe_budget(self, api_key: str | None) -> None:
        """The key's budget use as gauges (labelled by a digest of the key, never the key)."""
        budgets = self.router.budgets
        limit = budgets.limit(api_key)
        if limit is None:
            return
        ident = key_id(api_key)
        self.counters.budget_spent.labels(ident).set(budgets.spent(api_key))
        self.counters.budget_limit.labels(ident).set(limit)

    def rejected(self, name: str, exc: Exception) -> APIError:
        """The API error for a refused routed request (counted); other exceptions are re-raised."""
        if isinstance(exc, BudgetExceeded):
            reason = "budget_exceeded"
            # Never the key itself (BudgetExceeded's own message names it).
            error = APIError(429, f"The budget of this API key is spent: ${exc.spent:.6f} of ${exc.limit:.6f} used; "
                             f"tier '{exc.tier}' would cost about ${exc.needed:.6f}.", reason)
        elif isinstance(exc, AllTiersFailed):
            reason = "all_tiers_failed"
            error = APIError(502, f"Every tier failed: {'; '.join(f'{t}: {e}' for t, e in exc.errors)}", reason)
        elif isinstance(exc, NoTierAvailable):
            reason = "no_tier_available"
            error = APIError(503, f"No tier can take this request now ({exc}); retry later.", reason)
        else:
            raise exc
        self.counters.rejected.labels(name, reason).inc()
        return error


class _RouterModel:
    def __init__(self, bridge: RoutingBridge, router: Router, name: str):
        self.bridge, self.router, self.name = bridge, router, name

    async def select(self, body: Any, catalog: ModelCatalog, api_key: str | None) -> tuple[Target, dict[str, str]]:
        bridge, targets = self.bridge, self.bridge.targets
        problem, messages = bridge.problem(body, self.name)
        plans = await targets.plan(self.router.tiers, messages, body)
        answers: dict[str, list[TierOutput]] = {}
        call_tier = targets.caller(plans, asyncio.get_running_loop(), answers)
        try:
            routed = await asyncio.to_thread(self.router.call, problem, call_tier, api_key)
        except (BudgetExceeded, AllTiersFailed, NoTierAvailable) as exc:
            raise bridge.rejected(self.router.name, exc) from None
        bridge.counters.router_requests.labels(self.router.name, routed.tier.name).inc()
        for tier in self.router.on_prior:  # its quality in this decision was the configured prior
            bridge.counters.prior_decisions.labels(self.router.name, tier).inc()
        bridge.counters.cost.labels(self.router.name, routed.tier.name).inc(max(0.0, float(routed.cost or 0.0)))
        for failed_tier, _ in routed.failures or ():
            bridge.counters.router_fallbacks.labels(self.router.name, failed_tier).inc()
        bridge.observe_budget(api_key)
        log.debug("%s -> %s (%s), $%.6g", self.name, routed.tier.name, routed.decision.reason, routed.cost)
        headers = _tier_headers(routed.tier, routed.cost)
        if routed.failures:
            headers[HEADER_FAILED] = ",".join(dict.fromkeys(_header_text(t) for t, _ in routed.failures))
        return targets.answered(self.name, routed.tier, answers[routed.tier.name][0], plans), headers


class _CascadeModel:
    def __init__(self, bridge: RoutingBridge):
        self.bridge = bridge

    async def select(self, body: Any, catalog: ModelCatalog, api_key: str | None) -> tuple[Target, dict[str, str]]:
        bridge, targets, cascade = self.bridge, self.bridge.targets, self.bridge.cascade
        problem, messages = bridge.problem(body, cascade.name)
        budgets = bridge.router.budgets  # one spend per key across the router names and the cascade
        remaining = budgets.remaining(api_key)
        if remaining is not None and remaining <= 0:
            first = cascade.tiers[0]
            raise bridge.rejected(cascade.name, BudgetExceeded(api_key, budgets.spent(api_key),
                                                               budgets.limit(api_key) or 0.0, first.name,
                                                               first.estimated_cost(problem)))
        plans = await targets.plan(cascade.tiers, messages, body)
        answers: dict[str, list[TierOutput]] = {}
        call_tier = targets.caller(plans, asyncio.get_running_loop(), answers)
        try:
            result = await asyncio.to_thread(cascade.run, problem, call_tier)
        except AllTiersFailed as exc:
            raise bridge.rejected(cascade.name, exc) from None
        budgets.record(api_key, result.cost)
        steps = escalation_steps(cascade, result)
        for from_tier, to_tier, reason in steps:
            bridge.counters.cascade_escalations.labels(cascade.name, from_tier, to_tier, reason).inc()
        bridge.counters.cascade_requests.labels(cascade.name, result.tier.name).inc()
        bridge.counters.cost.labels(cascade.name, result.tier.name).inc(max(0.0, float(result.cost or 0.0)))
        bridge.observe_budget(api_key)
        outputs = answers[result.tier.name]
        output = next((o for o in outputs if o.text == result.completion), outputs[0])
        headers = {**_tier_headers(result.tier, result.cost), HEADER_ESCALATIONS: str(len(steps)),
                   HEADER_VERIFIED: _flag(result.verified)}
        return targets.answered(cascade.name, result.tier, output, plans), headers


class _TierModel:
    """One tier of the route config, asked directly (no routing, no verifier, no escalation log)."""

    def __init__(self, bridge: RoutingBridge, tier: Tier, name: str):
        self.bridge, self.tier, self.name = bridge, tier, name

    async def select(self, body: Any, catalog: ModelCatalog, api_key: str | None) -> tuple[Target, dict[str, str]]:
        bridge, targets, tier = self.bridge, self.bridge.targets, self.tier
        problem, messages = bridge.problem(body, self.name)
        budgets = bridge.router.budgets
        remaining = budgets.remaining(api_key)
        needed = tier.estimated_cost(problem)
        if remaining is not None and remaining < needed:
            raise bridge.rejected(self.name, BudgetExceeded(api_key, budgets.spent(api_key),
                                                            budgets.limit(api_key) or 0.0, tier.name, needed))
        plans = await targets.plan([tier], messages, body)
        answers: dict[str, list[TierOutput]] = {}
        call_tier = targets.caller(plans, asyncio.get_running_loop(), answers)
        try:
            outputs = await asyncio.to_thread(call_tier, tier, problem, 1)
        except Exception as exc:  # noqa: BLE001 - a failed tier call is the client's 502, as for the router
            raise bridge.rejected(self.name, AllTiersFailed([(tier.name, str(exc))])) from None
        cost = call_cost(tier, problem, outputs)
        budgets.record(api_key, cost)
        bridge.counters.cost.labels(self.name, tier.name).inc(max(0.0, float(cost)))
        bridge.observe_budget(api_key)
        return targets.answered(self.name, tier, answers[tier.name][0], plans), _tier_headers(tier, cost)


class _Refused:
    """A routed-looking name that names no router here (or a bad threshold): its requests get ``error``."""

    def __init__(self, error: APIError):
        self.error = error

    async def select(self, body: Any, catalog: ModelCatalog, api_key: str | None) -> tuple[Target, dict[str, str]]:
        raise self.error


def escalation_steps(cascade: Cascade, result: CascadeResult) -> list[tuple[str, str, str]]:
    """(from tier, to tier, reason) for each move to the next tier: an unsure answer (the verifier's reason,
    as a label) or a failed call ("error")."""
    order = [t.name for t in cascade.tiers]
    unsure = {e.from_tier: e.reason for e in result.escalations}
    steps = []
    for i in range(order.index(result.tier.name)):
        reason = unsure.get(order[i])
        label = "error" if reason is None else _ESCALATION_REASONS.get(reason.split(":", 1)[0].strip(), "other")
        steps.append((order[i], order[i + 1], label))
    return steps


def _stamp(path: str | None) -> tuple[int, int] | None:
    try:
        info = Path(path).stat() if path else None
    except OSError:
        return None
    return (info.st_mtime_ns, info.st_size) if info else None


def _digest(path: str | None) -> str | None:
    from srl_rlvr.core.io import sha256_file

    try:
        return sha256_file(path) if path else None
    except OSError:
        return None


def _flag(value: bool) -> str:
    return "true" if value else "false"


def _header_text(text: str) -> str:
    return quote(text, safe="-_.~:")  # headers are latin-1; tier names come from YAML keys


def _tier_headers(tier: Tier, cost: float) -> dict[str, str]:
    return {HEADER_TIER: _header_text(tier.name), HEADER_COST: f"{cost:.8g}", HEADER_SIMULATED: _flag(tier.simulated)}


__all__ = ["HEADER_COST", "HEADER_ESCALATIONS", "HEADER_FAILED", "HEADER_SIMULATED", "HEADER_TIER", "HEADER_VERIFIED",
           "RoutingBridge", "escalation_steps"]
