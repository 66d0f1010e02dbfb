"""Cost-benefit routing and the escalation cascade; pure Python, importable without FastAPI or torch.

* :class:`Router` picks the cheapest tier whose predicted quality meets the threshold
  (``router-<name>-<threshold>`` model names), with fallbacks, retries, cooldowns and per-key budgets.
* :class:`Cascade` asks the cheapest tier first and escalates when :class:`MathVerifier` is unsure,
  logging each escalation as a trajectory row for distillation.
* ``srl-rlvr route eval`` (:mod:`srl_rlvr.routing.evaluate`) measures APGR/CPT against a random router.

Imports run one way: ``router`` and ``cascade`` stand on ``calls`` (a tier call, its cost, AllTiersFailed),
which stands on ``targets`` (tiers and their costs); ``config`` reads route YAML and imports neither;
``build`` makes routers and cascades from a config, so it is the one module that imports all three.

See docs/routing.md.
"""

from __future__ import annotations

from srl_rlvr.routing.backends import TARGET_BACKENDS, TargetBackend, register_target_backend
from srl_rlvr.routing.budget import BudgetBook, BudgetExceeded
from srl_rlvr.routing.build import build_cascade, build_router, load_router
from srl_rlvr.routing.calibration import format_router_model, is_router_model, parse_router_model, threshold_for_share
from srl_rlvr.routing.calls import AllTiersFailed, TierCaller, call_cost
from srl_rlvr.routing.cascade import Cascade, CascadeResult, Escalation, EscalationLog, MathVerifier, Verdict
from srl_rlvr.routing.config import RouteConfig, load_route_config
from srl_rlvr.routing.health import TierHealth
from srl_rlvr.routing.policy import NoTierAvailable, choose_tier
from srl_rlvr.routing.predictor import QualityPredictor
from srl_rlvr.routing.router import RoutedCall, RouteDecision, Router, resolve_router_model
from srl_rlvr.routing.targets import Tier, TierCost, derived_cost

__all__ = [
    "TARGET_BACKENDS", "AllTiersFailed", "BudgetBook", "BudgetExceeded", "Cascade", "CascadeResult", "Escalation",
    "EscalationLog", "MathVerifier", "NoTierAvailable", "QualityPredictor", "RouteConfig", "RouteDecision",
    "RoutedCall", "Router", "TargetBackend", "Tier", "TierCaller", "TierCost", "TierHealth", "Verdict",
    "build_cascade", "build_router", "call_cost", "choose_tier", "derived_cost", "format_router_model",
    "is_router_model", "load_route_config", "load_router", "parse_router_model", "register_target_backend",
    "resolve_router_model", "threshold_for_share",
]
