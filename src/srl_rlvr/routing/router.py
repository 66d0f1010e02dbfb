"""The cost-benefit router: predicts each tier's quality on a request and picks the cheapest good-enough
tier (:mod:`srl_rlvr.routing.policy`), with fallbacks, retries, cooldowns and per-key budgets.

For the server (no FastAPI here; it plugs its backends in as ``call_tier``)::

    router = load_router("configs/route-cpu.yaml", "out/route_eval/predictor.json")  # srl_rlvr.routing.build
    r = resolve_router_model("router-cb-0.5", {router.name: router})   # the OpenAI "model" field
    decision = r.route(prompt, api_key=key)          # RouteDecision: tier, threshold, quality, est. cost, reason
    result = r.call(prompt, call_tier, api_key=key)  # RoutedCall: outputs, the tier that answered, cost

``call_tier(tier, prompt, n) -> list`` returns ``n`` completions (:mod:`srl_rlvr.routing.calls`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from srl_rlvr.errors import UserInputError
from srl_rlvr.routing.budget import BudgetBook, BudgetExceeded
from srl_rlvr.routing.calibration import format_router_model, parse_router_model, threshold_for_share
from srl_rlvr.routing.calls import AllTiersFailed, TierCaller, call_cost, output_text
from srl_rlvr.routing.health import TierHealth
from srl_rlvr.routing.policy import NoTierAvailable, choose_tier
from srl_rlvr.routing.predictor import QualityPredictor
from srl_rlvr.routing.targets import Tier

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RouteDecision:
    tier: Tier
    threshold: float
    predicted_quality: float
    est_cost: float  # dollars, before the call (estimated tokens)
    reason: str
    model: str  # the router model name, router-<name>-<threshold>
    fallbacks: tuple[Tier, ...] = ()
    qualities: dict[str, float] = field(default_factory=dict)  # predicted P(correct) per tier


@dataclass(frozen=True)
class RoutedCall:
    decision: RouteDecision
    tier: Tier  # the tier that answered (the decision's, or a fallback)
    outputs: list[str]
    cost: float  # dollars actually spent (estimated input tokens, counted output tokens when known)
    latency_ms: float
    failures: tuple[tuple[str, str], ...] = ()  # (tier, error) of the attempts that failed first


class Router:
    """Routes requests over ``tiers`` at quality target ``threshold``; see the module docstring.

    ``health`` and ``budgets`` hold mutable state; :meth:`with_threshold` shares them, so every router
    model name of one router sees the same cooldowns and spend.
    """

    def __init__(self, tiers: Sequence[Tier], predictor: QualityPredictor | None = None, threshold: float = 0.5,
                 name: str = "cb", task: str = "math", budgets: BudgetBook | None = None,
                 health: TierHealth | None = None, num_retries: int = 1, on_over_budget: str = "downgrade"):
        if not tiers:
            raise ValueError("a router needs at least one tier")
        if on_over_budget not in ("downgrade", "refuse"):
            raise ValueError(f"on_over_budget must be 'downgrade' or 'refuse', got {on_over_budget!r}")
        self.tiers = list(tiers)
        self.predictor = predictor
        self.on_prior = _check_predictor(self.tiers, predictor, task)  # tiers routed on their quality prior
        self.threshold = threshold
        self.name = name
        self.task = task
        self.budgets = budgets or BudgetBook()
        self.health = health or TierHealth()
        self.num_retries = num_retries
        self.on_over_budget = on_over_budget

    @property
    def model(self) -> str:
        return format_router_model(self.name, self.threshold)

    def with_threshold(self, threshold: float) -> "Router":
        return Router(self.tiers, self.predictor, threshold, self.name, self.task, self.budgets, self.health,
                      self.num_retries, self.on_over_budget)

    def with_predictor(self, predictor: QualityPredictor | None) -> "Router":
        """The same router (threshold, tiers, and the shared spend and health) with a refitted predictor."""
        return Router(self.tiers, predictor, self.threshold, self.name, self.task, self.budgets, self.health,
                      self.num_retries, self.on_over_budget)

    # --- deciding -------------------------------------------------------------------------------
    def qualities(self, prompt: str, task: str | None = None) -> dict[str, float]:
        """Predicted P(correct) per tier: the predictor where it knows the tier, else the tier's quality prior
        (``on_prior``: checked when the router was built, so a tier never silently gets 0.0)."""
        predicted = self.predictor.predict(prompt) if self.predictor is not None else {}
        task = task or self.task
        out = {}
        for tier in self.tiers:
            value = predicted.get(tier.name)
            if value is None:
                value = tier.quality_for(task)
                if value is None:
                    raise UserInputError(f"tier {tier.name!r}: no predictor model and no quality prior for task "
                                         f"{task!r}; set tiers.{tier.name}.quality.{task} or refit the predictor")
            out[tier.name] = value
        return out

    def _latency(self, tier: Tier) -> float | None:
        observed = self.health.latency_ms(tier.name)
        return observed if observed is not None else tier.expected_latency_ms

    def route(self, prompt: str, api_key: str | None = None, task: str | None = None,
              max_latency_ms: float | None = None) -> RouteDecision:
        """Pick a tier for ``prompt`` (no call is made). Raises BudgetExceeded or NoTierAvailable."""
        qualities = self.qualities(prompt, task)
        costs = {t.name: t.estimated_cost(prompt) for t in self.tiers}
        cooling = self.health.cooling_down()

        def choose(excluded: set[str]):
            return choose_tier(self.tiers, qualities, self.threshold, lambda t: costs[t.name], self._latency,
                               max_latency_ms, excluded)

        remaining = self.budgets.remaining(api_key)
        unaffordable = {n for n, c in costs.items() if c > remaining} if remaining is not None else set()
        if unaffordable:
            wanted = choose(cooling)
            refuse = self.on_over_budget == "refuse" or not (set(costs) - cooling - unaffordable)
            if refuse and wanted.tier.name in unaffordable:
                raise BudgetExceeded(api_key, self.budgets.spent(api_key), self.budgets.limit(api_key) or 0.0,
                                     wanted.tier.name, costs[wanted.tier.name])
        choice = choose(cooling | unaffordable)
        reason = choice.reason
        if unaffordable:
            reason += f" (budget: ${remaining:.6f} left; skipped {', '.join(sorted(unaffordable))})"
        return RouteDecision(tier=choice.tier, threshold=self.threshold, predicted_quality=qualities[choice.tier.name],
                             est_cost=costs[choice.tier.name], reason=reason, model=self.model,
                             fallbacks=choice.fallbacks, qualities=qualities)

    # --- calling --------------------------------------------------------------------------------
    def call(self, prompt: str, call_tier: TierCaller, api_key: str | None = None, n: int = 1,
             task: str | None = None) -> RoutedCall:
        """Route, then call: retry a failing tier ``num_retries`` times, then fall back to the next tier.

        Every failed attempt counts toward the tier's cooldown; the spend of the answering call is
        charged to ``api_key``.
        """
        decision = self.route(prompt, api_key, task)
        failures: list[tuple[str, str]] = []
        for tier in (decision.tier, *decision.fallbacks):
            for _ in range(1 + self.num_retries):
                started = time.perf_counter()
                try:
                    outputs = list(call_tier(tier, prompt, n))
                except Exception as exc:  # any backend error: count it, then retry or fall back
                    failures.append((tier.name, f"{type(exc).__name__}: {exc}"))
                    self.health.record_failure(tier.name)
                    if tier.name in self.health.cooling_down():
                        break
                    continue
                latency_ms = (time.perf_counter() - started) * 1000
                self.health.record_success(tier.name, latency_ms)
                cost = call_cost(tier, prompt, outputs)
                self.budgets.record(api_key, cost)
                return RoutedCall(decision, tier, [output_text(o) for o in outputs], cost, latency_ms, tuple(failures))
        raise AllTiersFailed(failures)

    # --- calibration ----------------------------------------------------------------------------
    def strong_tier(self) -> Tier:
        """The tier that counts as "strong" for calibration: the most expensive per output token."""
        return max(self.tiers, key=lambda t: (t.cost.usd_per_mtok_output, t.cost.usd_per_mtok_input))

    def best_cheaper_quality(self, prompt: str) -> float:
        strong = self.strong_tier().name
        qualities = self.qualities(prompt)
        return max((q for name, q in qualities.items() if name != strong), default=0.0)

    def calibrated(self, prompts: Sequence[str], strong_share: float) -> "Router":
        """A router whose threshold sends about ``strong_share`` of ``prompts`` to the strong tier."""
        values = [self.best_cheaper_quality(p) for p in prompts]
        return self.with_threshold(threshold_for_share(values, strong_share))


def _check_predictor(tiers: Sequence[Tier], predictor: QualityPredictor | None, task: str) -> tuple[str, ...]:
    """The tiers the predictor does not know (routed on their prior, logged once here); a predictor tier that
    is not in the config, or a tier with neither a model nor a prior for ``task``, is an error."""
    names = [t.name for t in tiers]
    fitted = set(predictor.models) if predictor is not None else set()
    unknown = sorted(fitted - set(names))
    if unknown:
        raise UserInputError(f"the predictor was fitted on tier(s) {', '.join(unknown)}, which the route config "
                             f"does not have (its tiers: {', '.join(names)}); refit it (srl-rlvr route eval) or "
                             "rename the tiers")
    on_prior = tuple(t.name for t in tiers if t.name not in fitted)
    missing = [t.name for t in tiers if t.name in on_prior and t.quality_for(task) is None]
    if missing:
        raise UserInputError(f"tier(s) {', '.join(missing)}: no predictor model and no quality prior for task "
                             f"{task!r}; set tiers.<name>.quality.{task} in the route config or fit a predictor")
    if predictor is not None and on_prior:
        log.warning("router: the predictor has no model for tier(s) %s; they are routed on their quality prior",
                    ", ".join(on_prior))
    return on_prior


def resolve_router_model(model: str, routers: Mapping[str, Router]) -> Router:
    """``router-<name>-<threshold>`` -> that router at that threshold (UserInputError for unknown names)."""
    name, threshold = parse_router_model(model)
    if name not in routers:
        known = ", ".join(sorted(routers)) or "none"
        raise UserInputError(f"model {model!r}: no router named {name!r} (known: {known})")
    return routers[name].with_threshold(threshold)


__all__ = ["AllTiersFailed", "BudgetExceeded", "NoTierAvailable", "RouteDecision", "RoutedCall", "Router",
           "TierCaller", "call_cost", "resolve_router_model"]
