"""Refit the router's quality predictor on the tiers' outcomes on the gate set, after the champion changed.

Outcomes per tier of the route config, on the gate problems:

* the tier that *is* the served champion (its ``model`` is the registry name the server answers to): the
  champion's own eval predictions (the ones the gate compared);
* a tier that answers in process (the SIMULATED demo solver): asked here, scored with the math reward;
* any other tier: left out, so the router keeps that tier's quality prior, and the report says so.

The predictor is written atomically over the file the server watches (``--predictor``), which reloads it
on its next routed request.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from srl_rlvr.eval.summary import read_predictions
from srl_rlvr.routing import TARGET_BACKENDS, QualityPredictor
from srl_rlvr.routing.config import RouteConfig


def tier_outcomes(route: RouteConfig, rows: list[dict[str, Any]], champion_predictions: Path,
                  champion_names: set[str]) -> tuple[dict[str, list[float]], dict[str, str]]:
    """({tier: outcome per row}, {tier: where its outcomes came from, or why it has none})."""
    from srl_rlvr.rewards.math import math_answer_reward

    correct = read_predictions(champion_predictions)
    missing = [r["id"] for r in rows if r["id"] not in correct]
    if missing:
        raise ValueError(f"{champion_predictions}: no prediction for {len(missing)} gate problems "
                         f"(first: {missing[0]})")
    outcomes: dict[str, list[float]] = {}
    sources: dict[str, str] = {}
    for spec in route.tiers:
        tier = spec.tier
        backend = TARGET_BACKENDS.get(tier.backend)
        if tier.model in champion_names:
            outcomes[tier.name] = [float(correct[r["id"]]) for r in rows]
            sources[tier.name] = f"the champion's gate predictions ({champion_predictions})"
        elif backend.in_process is not None:
            call = backend.in_process()
            outcomes[tier.name] = [math_answer_reward(str(call(tier, r["problem"], 1)[0]), str(r["answer"]))
                                   for r in rows]
            sources[tier.name] = "asked in process" + (" (SIMULATED)" if tier.simulated else "")
        else:
            sources[tier.name] = "no outcomes here: the router keeps its quality prior"
    return outcomes, sources


def refit_predictor(route: RouteConfig, rows: list[dict[str, Any]], champion_predictions: Path,
                    champion_names: set[str], path: Path) -> dict[str, Any]:
    """Fit, write ``path`` atomically, return what was fitted (per tier: n, success rate, source)."""
    outcomes, sources = tier_outcomes(route, rows, champion_predictions, champion_names)
    p = route.predictor
    predictor = QualityPredictor.fit([r["problem"] for r in rows], outcomes, hash_dim=p.hash_dim, C=p.C,
                                     min_per_class=p.min_per_class, seed=p.seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    predictor.save(tmp)
    os.replace(tmp, path)  # the server never reads a half-written predictor
    return {"path": str(path), "n": len(rows),
            "tiers": {name: {"source": sources[name],
                             **({"success_rate": round(predictor.models[name].success_rate, 4),
                                 "constant": predictor.models[name].constant is not None}
                                if name in predictor.models else {})}
                      for name in sources}}


__all__ = ["refit_predictor", "tier_outcomes"]
