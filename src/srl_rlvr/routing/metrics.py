"""RouteLLM's router metrics: the performance-gap-recovered curve, APGR and CPT(x%).

A binary router sends each request to a *weak* or a *strong* tier. Sweeping its threshold traces
``share of strong calls -> performance``. With ``W`` the performance of sending everything to the weak
tier and ``S`` that of sending everything to the strong one:

* ``PGR(share) = (performance(share) - W) / (S - W)``: the share of the gap between the tiers recovered;
* ``APGR``: the area under ``share -> PGR(share)`` for share in [0, 1] (a random router scores 0.5 in
  expectation; an oracle that escalates exactly the items the weak tier gets wrong scores more);
* ``CPT(x%)``: the smallest share of strong calls at which ``PGR >= x/100``.

Performance is the mean per-item score (1/0 correctness, or a fraction for avg@k). Requests are routed to
the strong tier in order of decreasing escalation score; items whose scores tie are routed in random
order, so within a tie the curve is the straight line between the tie's ends (its expectation).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class GapCurve:
    """The polyline ``share -> PGR`` (both lists the same length, share rising from 0 to 1)."""

    shares: list[float]
    performance: list[float]  # mean score at each share
    weak: float  # performance with every request on the weak tier
    strong: float  # ... on the strong tier

    @property
    def gap(self) -> float:
        return self.strong - self.weak

    @property
    def pgr(self) -> list[float] | None:
        """None when the tiers perform the same (no gap to recover)."""
        if self.gap == 0:
            return None
        return [(p - self.weak) / self.gap for p in self.performance]


def gap_curve(scores: Sequence[float], weak: Sequence[float], strong: Sequence[float]) -> GapCurve:
    """Curve of a router that escalates the items with the highest ``scores`` first.

    >>> c = gap_curve([0.9, 0.1], weak=[0, 1], strong=[1, 1])  # escalates the item weak gets wrong
    >>> c.shares, c.performance
    ([0.0, 0.5, 1.0], [0.5, 1.0, 1.0])
    >>> gap_curve([0.5, 0.5], weak=[0, 1], strong=[1, 1]).shares  # a tie: only its ends are points
    [0.0, 1.0]
    """
    n = len(scores)
    if n == 0 or len(weak) != n or len(strong) != n:
        raise ValueError(f"need equally long, non-empty inputs, got {n}, {len(weak)}, {len(strong)}")
    order = sorted(range(n), key=lambda i: -scores[i])
    total = float(sum(weak))
    shares, perf = [0.0], [total / n]
    i = 0
    while i < n:
        j = i
        while j < n and scores[order[j]] == scores[order[i]]:
            total += strong[order[j]] - weak[order[j]]
            j += 1
        shares.append(j / n)
        perf.append(total / n)
        i = j
    return GapCurve(shares, perf, weak=sum(weak) / n, strong=sum(strong) / n)


def apgr(curve: GapCurve) -> float | None:
    """Area under ``share -> PGR`` (trapezoids; exact on the polyline). None without a gap.

    >>> apgr(gap_curve([0.9, 0.1], weak=[0, 1], strong=[1, 1]))
    0.75
    >>> apgr(gap_curve([0.5, 0.5], weak=[0, 1], strong=[1, 1]))
    0.5
    """
    pgr = curve.pgr
    if pgr is None:
        return None
    xs = curve.shares
    return sum((xs[k + 1] - xs[k]) * (pgr[k] + pgr[k + 1]) / 2 for k in range(len(xs) - 1))


def cpt(curve: GapCurve, percent: float) -> float | None:
    """Smallest share of strong calls with ``PGR >= percent/100`` (interpolated on the polyline).

    >>> c = gap_curve([0.9, 0.1], weak=[0, 1], strong=[1, 1])
    >>> cpt(c, 50), cpt(c, 80)
    (0.25, 0.4)
    """
    pgr = curve.pgr
    if pgr is None:
        return None
    target = percent / 100.0
    xs = curve.shares
    if pgr[0] >= target:
        return 0.0
    for k in range(len(xs) - 1):
        lo, hi = pgr[k], pgr[k + 1]
        if hi >= target > lo:
            return xs[k] + (xs[k + 1] - xs[k]) * (target - lo) / (hi - lo)
    return 1.0  # at share 1 every request is on the strong tier, so PGR is 1 there


def performance_at(curve: GapCurve, share: float) -> float:
    """Mean score at a share of strong calls (linear between the curve's points).

    >>> performance_at(gap_curve([0.5, 0.5], weak=[0, 1], strong=[1, 1]), 0.5)
    0.75
    """
    xs, ys = curve.shares, curve.performance
    share = min(max(share, 0.0), 1.0)
    for k in range(len(xs) - 1):
        if xs[k] <= share <= xs[k + 1]:
            if xs[k + 1] == xs[k]:
                return ys[k + 1]
            return ys[k] + (ys[k + 1] - ys[k]) * (share - xs[k]) / (xs[k + 1] - xs[k])
    return ys[-1]


def summarize(curve: GapCurve) -> dict[str, float | None]:
    return {"apgr": apgr(curve), "cpt50": cpt(curve, 50), "cpt80": cpt(curve, 80)}


def random_router_summary(weak: Sequence[float], strong: Sequence[float], seeds: int,
                          seed: int = 0) -> dict[str, float | None]:
    """APGR/CPT of a router that escalates in random order, averaged over ``seeds`` orders.

    Its expectation is APGR 0.5 and CPT(x%) = x/100; the empirical mean is what RouteLLM reports.
    """
    rng = random.Random(seed)
    runs = [summarize(gap_curve([rng.random() for _ in weak], weak, strong)) for _ in range(seeds)]
    out: dict[str, float | None] = {}
    for key in ("apgr", "cpt50", "cpt80"):
        values = [r[key] for r in runs if r[key] is not None]
        out[key] = sum(values) / len(values) if values else None
    return out
