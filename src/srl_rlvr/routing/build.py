"""Routers and cascades built from a route config (:mod:`srl_rlvr.routing.config`).

    router = load_router("configs/route-cpu.yaml", "out/route_eval/predictor.json")
    cascade = build_cascade(load_route_config("configs/route-cpu.yaml"), router.tiers, log="out/escalations.jsonl")

The config module only reads and checks YAML; this module is the one place that knows both the config and
the :class:`~srl_rlvr.routing.router.Router` and :class:`~srl_rlvr.routing.cascade.Cascade` it configures.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from srl_rlvr.routing.budget import BudgetBook
from srl_rlvr.routing.cascade import Cascade, EscalationLog, MathVerifier
from srl_rlvr.routing.config import RouteConfig, load_route_config
from srl_rlvr.routing.health import TierHealth
from srl_rlvr.routing.predictor import QualityPredictor
from srl_rlvr.routing.router import Router
from srl_rlvr.routing.targets import Tier

_DOMAINS = ("math", "code", "agent")  # the trajectory domains an escalation row may carry


def build_cascade(config: RouteConfig, tiers: list[Tier], log: EscalationLog | str | Path | None = None) -> Cascade:
    """The cascade of ``cascade.tiers`` (default: all, cheapest first on a nominal prompt)."""
    by_name = {t.name: t for t in tiers}
    c = config.cascade
    order = [by_name[n] for n in c.tiers] if c.tiers else sorted(tiers, key=lambda t: t.estimated_cost("x" * 400))
    return Cascade(order, MathVerifier(c.min_agreement, c.require_answer_statement), k=c.k, log=log,
                   name=f"cascade-{config.name}", domain=config.task if config.task in _DOMAINS else "math")


def build_router(config: RouteConfig, predictor: QualityPredictor | None = None,
                 tiers: list[Tier] | None = None) -> Router:
    """The router of ``config`` over ``tiers`` (default: the config's, every cost priced), with its budgets
    and health settings; the threshold is ``router.threshold`` or 0.5 until calibrated."""
    r = config.router
    return Router(
        tiers or config.resolved_tiers(), predictor=predictor,
        threshold=r.threshold if r.threshold is not None else 0.5, name=config.name, task=config.task,
        budgets=BudgetBook(dict(config.budgets.keys), config.budgets.default_usd, config.budgets.period_s),
        health=TierHealth(allowed_fails=r.allowed_fails, window_s=r.failure_window_s, cooldown_s=r.cooldown_s),
        num_retries=r.num_retries, on_over_budget=r.on_over_budget,
    )


def load_router(config_path: str, predictor_path: str | None = None) -> Router:
    """A router from a route config (tiers, router settings, budgets) and a fitted predictor file.

    Tiers priced by a measured throughput take it from the ``metrics.json`` beside the predictor
    (``srl-rlvr route eval`` writes both into its --out folder).
    """
    config = load_route_config(config_path)
    predictor = QualityPredictor.load(predictor_path) if predictor_path else None
    measured: dict[str, float] = {}
    metrics_file = Path(predictor_path).parent / "metrics.json" if predictor_path else None
    if metrics_file is not None and metrics_file.is_file():
        tiers: dict[str, Any] = json.loads(metrics_file.read_text(encoding="utf-8")).get("tiers", {})
        measured = {name: t["output_tokens_per_s"] for name, t in tiers.items() if t.get("output_tokens_per_s")}
    return build_router(config, predictor, config.resolved_tiers(measured))


__all__ = ["build_cascade", "build_router", "load_router"]
