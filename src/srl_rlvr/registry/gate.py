"""The promotion gate: a candidate takes an alias only when its eval beats the holder's, on the same eval
set, by a margin, with a paired test.

    srl-rlvr registry promote demo-math 3                    # gate: candidate vs the current champion
    srl-rlvr registry promote demo-math 3 --force --reason "hotfix: champion leaks PII"

Both versions must carry eval metrics from ``srl-rlvr eval`` (``metrics.json``) with the
``predictions.jsonl`` beside it, computed on the same eval set (same digest). The gate pairs the two
models' per-problem correctness, and passes when the mean difference is above ``margin`` and the
one-sided sign-flip p-value (exact McNemar for 0/1 scores; ``eval.stats.paired_difference``) is below
``alpha``. With no holder yet, a candidate that has eval metrics passes (the first champion).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from srl_rlvr.registry.base import ModelVersion, RegistryError


@dataclass
class GateSettings:
    metric: str = field(default="greedy_accuracy", metadata={"help": "The eval metric reported beside the test."})
    margin: float = field(default=0.0, metadata={"help": "Required mean per-problem gain over the holder."})
    alpha: float = field(default=0.05, metadata={"help": "Significance of the one-sided paired test."})


@dataclass
class GateDecision:
    passed: bool
    summary: str  # one line with the numbers
    numbers: dict[str, Any] = field(default_factory=dict)


def predictions_digest(path: str | Path) -> str:
    """sha256 of the sorted problem ids of a predictions.jsonl: what "the same eval set" means to the gate."""
    from srl_rlvr.eval.summary import read_predictions

    return ids_digest(read_predictions(Path(path)))


def ids_digest(ids) -> str:
    """sha256 of sorted problem ids: the identity of an eval set (also before any prediction exists)."""
    return hashlib.sha256("\n".join(sorted(str(i) for i in ids)).encode("utf-8")).hexdigest()


def _correctness(version: ModelVersion) -> dict[str, bool]:
    from srl_rlvr.eval.summary import read_predictions

    path = version.lineage.eval_predictions
    if not path:
        raise RegistryError(f"{version.ref} has no eval predictions: register it with --eval METRICS.json "
                            "(the predictions.jsonl beside it is what the gate compares)")
    if not Path(path).is_file():
        raise RegistryError(f"{version.ref}: its eval predictions {path} are gone; re-evaluate and register again")
    return read_predictions(Path(path))


def evaluate_gate(candidate: ModelVersion, holder: ModelVersion | None, settings: GateSettings) -> GateDecision:
    from srl_rlvr.eval.stats import paired_difference

    metric = settings.metric
    cand_value = candidate.lineage.eval_metrics.get(metric)
    if cand_value is None:
        return GateDecision(False, f"{candidate.ref} has no eval metric {metric!r}: register it with --eval")
    if holder is None:
        return GateDecision(True, f"{candidate.ref}: {metric} {cand_value:.3f}; no current holder, so it becomes "
                                  "the first", {"candidate": cand_value})
    if holder.version == candidate.version:
        return GateDecision(False, f"{candidate.ref} already holds the alias")
    if candidate.lineage.eval_set_digest != holder.lineage.eval_set_digest:
        return GateDecision(False, f"{candidate.ref} and {holder.ref} were evaluated on different eval sets "
                                   f"({candidate.lineage.eval_set_digest[:12]} vs "
                                   f"{holder.lineage.eval_set_digest[:12]}); evaluate both on the same set")
    a, b = _correctness(candidate), _correctness(holder)
    ids = sorted(a)
    if set(ids) != set(b):
        return GateDecision(False, f"{candidate.ref} and {holder.ref} scored different problems")
    test = paired_difference([float(a[i]) for i in ids], [float(b[i]) for i in ids])
    hold_value = holder.lineage.eval_metrics.get(metric, float("nan"))
    passed = test["mean_diff"] > settings.margin and test["p_one_sided"] < settings.alpha
    lo, hi = test["ci"]
    verdict = "passes" if passed else "refused"
    summary = (f"gate {verdict}: {candidate.ref} {metric} {cand_value:.3f} vs {holder.ref} {hold_value:.3f} on "
               f"n={test['n']}: difference {test['mean_diff']:+.3f} [{lo:+.3f}, {hi:+.3f}], one-sided p="
               f"{test['p_one_sided']:.3g} (needs > {settings.margin:+.3f} and p < {settings.alpha:g})")
    numbers = {"candidate": cand_value, "holder": hold_value, "n": test["n"], "mean_diff": test["mean_diff"],
               "ci": test["ci"], "p_one_sided": test["p_one_sided"], "margin": settings.margin,
               "alpha": settings.alpha, "method": test["method"]}
    return GateDecision(passed, summary, numbers)
