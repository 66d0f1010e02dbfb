"""One tier call, as the router, the cascade and every ``call_tier`` implementation see it.

``call_tier(tier, prompt, n) -> list`` returns ``n`` completions, each a ``str`` or an object with
``.text`` (and ``.num_tokens``, used for the cost when present); it raises on failure. When every tier a
request could go to has failed, the router and the cascade raise :class:`AllTiersFailed`.

    >>> from srl_rlvr.routing.targets import Tier, TierCost
    >>> call_cost(Tier("t", "hf", "m", TierCost(0.0, 2.0)), "a prompt", ["12345678"])  # 2 output tokens
    4e-06
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from srl_rlvr.routing.targets import Tier, estimate_tokens

TierCaller = Callable[[Tier, str, int], Sequence[Any]]


class AllTiersFailed(RuntimeError):
    """The chosen tier and every fallback failed; ``errors`` holds (tier, error) per failed attempt."""

    def __init__(self, errors: list[tuple[str, str]]):
        self.errors = errors
        super().__init__("every tier failed: " + "; ".join(f"{t}: {e}" for t, e in errors))


def output_text(output: Any) -> str:
    return output if isinstance(output, str) else str(output.text)


def output_tokens(output: Any) -> int:
    count = getattr(output, "num_tokens", None)
    return int(count) if count is not None else estimate_tokens(output_text(output))


def call_cost(tier: Tier, prompt: str, outputs: Sequence[Any]) -> float:
    """Dollars for one call that returned ``outputs`` (the prompt is paid once per call)."""
    return tier.cost.usd(estimate_tokens(prompt), sum(output_tokens(o) for o in outputs))


__all__ = ["AllTiersFailed", "TierCaller", "call_cost", "output_text", "output_tokens"]
