"""The routing rule itself, as one pure function: the cheapest tier that is good enough and fast enough.

For one request, given each tier's predicted quality and predicted latency:

1. among the tiers not excluded (cooling down, over the caller's budget), in order of estimated cost for
   this prompt, take the first whose predicted quality is at least ``target`` and whose predicted
   latency is within its SLO (and the request's own limit, if any);
2. if none is good enough, take the best predicted quality among those fast enough;
3. if none is fast enough, take the fastest.

The rest of the usable tiers become the fallbacks: first the more expensive ones in cost order (a
failure escalates), then the cheaper ones, most expensive first.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass

from srl_rlvr.routing.targets import Tier


class NoTierAvailable(RuntimeError):
    """Every tier is excluded (cooling down or over budget)."""


@dataclass(frozen=True)
class Choice:
    tier: Tier
    reason: str
    fallbacks: tuple[Tier, ...]


def choose_tier(
    tiers: Sequence[Tier],
    quality: Mapping[str, float],
    target: float,
    cost: Callable[[Tier], float],
    latency_ms: Callable[[Tier], float | None] = lambda tier: tier.expected_latency_ms,
    max_latency_ms: float | None = None,
    excluded: Collection[str] = (),
) -> Choice:
    """Apply the rule above. ``quality`` maps tier name to P(correct); a missing tier counts as 0."""
    usable = sorted((t for t in tiers if t.name not in excluded), key=cost)  # sorted() keeps list order on ties
    if not usable:
        raise NoTierAvailable("every tier is cooling down or over budget")

    def fast_enough(tier: Tier) -> bool:
        predicted = latency_ms(tier)
        limits = [x for x in (tier.latency_slo_ms, max_latency_ms) if x is not None]
        return predicted is None or not limits or predicted <= min(limits)

    fast = [t for t in usable if fast_enough(t)]
    chosen = next((t for t in fast if quality.get(t.name, 0.0) >= target), None)
    if chosen is not None:
        reason = f"cheapest tier with predicted quality {quality.get(chosen.name, 0.0):.3f} >= target {target:.3f}"
    elif fast:
        chosen = max(fast, key=lambda t: quality.get(t.name, 0.0))  # max() keeps the first (cheapest) on ties
        reason = f"no tier reaches target {target:.3f}; best predicted quality {quality.get(chosen.name, 0.0):.3f}"
    else:
        chosen = min(usable, key=lambda t: latency_ms(t) or 0.0)
        reason = "no tier is predicted to meet its latency SLO; fastest tier"
    at = usable.index(chosen)
    fallbacks = tuple(usable[at + 1:]) + tuple(reversed(usable[:at]))
    return Choice(chosen, reason, fallbacks)
