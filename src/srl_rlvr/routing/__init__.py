"""Cost-benefit routing and the escalation cascade; pure Python, importable without FastAPI or torch.

* :class:`Router` picks the cheapest tier whose predicted quality meets the threshold
  (``router-<name>-<threshold>`` model names), with fallbacks, retries, cooldowns and per-key budgets.
* :class:`Cascade` asks the cheapest tier first and escalates when :class:`MathVerifier` is unsure,
  logging each escalation as a trajectory row for distillation.
* ``srl-rlvr route eval`` (:mod:`srl_rlvr.routing.evaluate`) measures APGR/CPT against a random router.

See docs/routing.md.
"""

from __future__ import annotations

from srl_rlvr.routing.budget import BudgetBook, BudgetExceeded
from srl_rlvr.routing.calibration import format_router_model, is_router_model, parse_router_model, threshold_for_share
from srl_rlvr.routing.cascade import Cascade, CascadeResult, Escalation, EscalationLog, MathVerifier, Verdict
from srl_rlvr.routing.config import RouteConfig, load_route_config
from srl_rlvr.routing.health import TierHealth
from srl_rlvr.routing.policy import NoTierAvailable, choose_tier
from srl_rlvr.routing.predictor import QualityPredictor
from srl_rlvr.routing.router import (
    AllTiersFailed,
    RouteDecision,
    RoutedCall,
    Router,
    TierCaller,
    load_router,
    resolve_router_model,
)
from srl_rlvr.routing.tiers import Tier, TierCost, derived_cost

__all__ = [
    "AllTiersFailed", "BudgetBook", "BudgetExceeded", "Cascade", "CascadeResult", "Escalation", "EscalationLog",
    "MathVerifier", "NoTierAvailable", "QualityPredictor", "RouteConfig", "RouteDecision", "RoutedCall", "Router",
    "Tier", "TierCaller", "TierCost", "TierHealth", "Verdict", "choose_tier", "derived_cost", "format_router_model",
    "is_router_model", "load_route_config", "load_router", "parse_router_model", "resolve_router_model",
    "threshold_for_share",
]
