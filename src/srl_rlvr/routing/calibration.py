"""Router model names (``router-<name>-<threshold>``, as in RouteLLM) and threshold calibration.

Our threshold is the quality target of :func:`srl_rlvr.routing.policy.choose_tier`: a request goes to
the strong (most expensive) tier exactly when no cheaper tier's predicted P(correct) reaches it. So
raising the threshold sends more requests to the strong tier. :func:`threshold_for_share` picks the
threshold at which a given share of a set of prompts goes there; it needs only the prompts, not their
answers (RouteLLM calibrates on unlabeled queries the same way).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from srl_rlvr.errors import UserInputError

ROUTER_PREFIX = "router-"
_NAME = re.compile(r"^router-(?P<name>[A-Za-z0-9_.]+(?:-[A-Za-z0-9_.]+)*?)-(?P<threshold>\d*\.?\d+(?:[eE][-+]?\d+)?)$")


def is_router_model(model: str) -> bool:
    return model.startswith(ROUTER_PREFIX)


def format_router_model(name: str, threshold: float) -> str:
    """The model name a client sends to use router ``name`` at ``threshold``.

    >>> format_router_model("cb", 0.5), format_router_model("my-router", 0.123456789)
    ('router-cb-0.5', 'router-my-router-0.123457')
    """
    return f"{ROUTER_PREFIX}{name}-{threshold:.6g}"


def parse_router_model(model: str) -> tuple[str, float]:
    """``router-<name>-<threshold>`` -> (name, threshold); the name may hold hyphens.

    >>> parse_router_model("router-cb-0.5"), parse_router_model("router-my-router-1")
    (('cb', 0.5), ('my-router', 1.0))
    """
    match = _NAME.match(model)
    if not match:
        raise UserInputError(f"model {model!r}: expected router-<name>-<threshold>, e.g. router-cb-0.5")
    threshold = float(match["threshold"])
    if not 0.0 <= threshold <= 1.0:
        raise UserInputError(f"model {model!r}: threshold must be in [0, 1], got {threshold}")
    return match["name"], threshold


def threshold_for_share(best_cheaper_quality: Sequence[float], strong_share: float) -> float:
    """The threshold that sends about ``strong_share`` of the prompts to the strong tier.

    ``best_cheaper_quality[i]`` is the highest predicted quality of any non-strong tier on prompt i; a
    prompt goes to the strong tier when that is below the threshold. Between distinct values the
    threshold sits halfway, so it is robust to small shifts on new prompts. Prompts with equal values
    all go the same way, so when a tie straddles the asked share the threshold takes the side whose
    share is closer (the cheaper side when both are as close); the caller reports the reached share.

    >>> threshold_for_share([0.1, 0.2, 0.3, 0.4], 0.5)
    0.25
    >>> threshold_for_share([0.1, 0.2], 0.0), threshold_for_share([0.1, 0.2], 1.0)
    (0.0, 1.0)
    >>> threshold_for_share([0.1, 0.3, 0.3, 0.3], 0.5)  # 1 of 4 (share 0.25) beats 4 of 4 (1.0)
    0.2
    """
    if not 0.0 <= strong_share <= 1.0:
        raise ValueError(f"strong_share must be in [0, 1], got {strong_share}")
    values = sorted(best_cheaper_quality)
    if not values:
        raise ValueError("need at least one prompt to calibrate on")
    n = len(values)
    k = round(strong_share * n)
    if k == 0:
        return 0.0  # nothing is below 0: no strong calls
    if values[k - 1] == values[min(k, n - 1)] and k < n:  # a tie straddles the k-th place
        tied = values[k - 1]
        below = sum(v < tied for v in values)  # strong calls with the whole tie on the cheap side
        through = sum(v <= tied for v in values)  # ... with the whole tie on the strong side
        if abs(below - k) <= abs(through - k):
            k = below
        else:
            k = through
        if k == 0:
            return 0.0
    if k == n:
        return 1.0 if values[-1] < 1.0 else values[-1] + 1e-9
    return (values[k - 1] + values[k]) / 2
