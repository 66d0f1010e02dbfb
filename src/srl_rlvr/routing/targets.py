"""Route targets: a tier is one endpoint a request can go to: a backend and model (or adapter), what it
costs, how fast it must answer, and how good it is per task type. (Not the training and serving tier
profiles of :mod:`srl_rlvr.tiers`; the backends a tier may name are in :mod:`srl_rlvr.routing.backends`.)

Cost, in US dollars per 1M tokens, is either configured (``usd_per_mtok_input``/``usd_per_mtok_output``,
as a provider's price list gives it) or derived from an instance's hourly price and its throughput:
``usd_per_mtok = instance_usd_per_hour / (tokens_per_s * 3600) * 1e6``, for output tokens from
``output_tokens_per_s`` and for input tokens from ``input_tokens_per_s`` (omitted: input costs nothing,
since prefill on a local instance is cheap next to decoding). A throughput of ``"measured"`` is filled in
from a run (the route eval times each tier it runs).

Input tokens are estimated from text length (4 characters a token) wherever a backend does not count
them; it is the same estimate for every tier, so it cannot favour one.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from srl_rlvr.errors import UserInputError

CHARS_PER_TOKEN = 4
MEASURED = "measured"


def estimate_tokens(text: str) -> int:
    """Rough token count of a text (4 characters a token, at least 1).

    >>> estimate_tokens("12345678"), estimate_tokens("")
    (2, 1)
    """
    return max(1, math.ceil(len(text) / CHARS_PER_TOKEN))


@dataclass(frozen=True)
class TierCost:
    """Dollar prices per 1M tokens, and how they were obtained (for reports)."""

    usd_per_mtok_input: float
    usd_per_mtok_output: float
    source: str = "configured"  # "configured" | "derived: $X/h at Y tok/s"

    def usd(self, input_tokens: int, output_tokens: int) -> float:
        """Dollars for one call.

        >>> TierCost(1.0, 2.0).usd(1_000_000, 500_000)
        2.0
        """
        return (input_tokens * self.usd_per_mtok_input + output_tokens * self.usd_per_mtok_output) / 1e6


def derived_cost(instance_usd_per_hour: float, output_tokens_per_s: float,
                 input_tokens_per_s: float | None = None) -> TierCost:
    """Prices from an instance's hourly rate and throughput.

    >>> c = derived_cost(3.6, 100.0)  # $3.6/h = $0.001/s; 100 tok/s -> $10 per 1M output tokens
    >>> round(c.usd_per_mtok_output, 6), c.usd_per_mtok_input
    (10.0, 0.0)
    """
    if (instance_usd_per_hour < 0 or output_tokens_per_s <= 0
            or (input_tokens_per_s is not None and input_tokens_per_s <= 0)):
        raise ValueError("need instance_usd_per_hour >= 0 and throughputs > 0")
    per_token_second = instance_usd_per_hour / 3600.0
    out = per_token_second / output_tokens_per_s * 1e6
    inp = per_token_second / input_tokens_per_s * 1e6 if input_tokens_per_s else 0.0
    return TierCost(inp, out,
                    source=f"derived: ${instance_usd_per_hour:g}/h at {output_tokens_per_s:.1f} output tok/s")


@dataclass(frozen=True)
class Tier:
    """One endpoint. ``quality`` maps a task type (``math``, ``code``, ``agent``) to an accuracy in [0, 1]."""

    name: str
    backend: str
    model: str | None = None
    cost: TierCost = field(default_factory=lambda: TierCost(0.0, 0.0))
    latency_slo_ms: float | None = None  # the tier must answer within this
    expected_latency_ms: float | None = None  # prior for the router's latency estimate
    expected_output_tokens: int = 256  # for cost estimates before the call
    quality: dict[str, float] = field(default_factory=dict)
    simulated: bool = False  # True: cost and quality are stand-ins (e.g. an exact solver for a big teacher)

    def estimated_cost(self, prompt: str) -> float:
        return self.cost.usd(estimate_tokens(prompt), self.expected_output_tokens)

    def quality_for(self, task: str) -> float | None:
        return self.quality.get(task)

    def with_cost(self, cost: TierCost) -> "Tier":
        return replace(self, cost=cost)

    def describe(self) -> dict[str, Any]:
        """What reports print about a tier (SIMULATED ones say so)."""
        return {
            "backend": self.backend,
            "model": self.model,
            "usd_per_mtok_input": self.cost.usd_per_mtok_input,
            "usd_per_mtok_output": self.cost.usd_per_mtok_output,
            "cost_source": ("SIMULATED " if self.simulated else "") + self.cost.source,
            "latency_slo_ms": self.latency_slo_ms,
            "quality": dict(self.quality),
            "simulated": self.simulated,
        }


def quality_from_report(path: str | Path, where: str) -> float:
    """``greedy_accuracy`` from a ``metrics.json`` written by ``srl-rlvr eval``."""
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"{where}: eval report {path} not found (write one with `srl-rlvr eval ... --out DIR`)")
    try:
        value = json.loads(path.read_text(encoding="utf-8"))["greedy_accuracy"]
    except (ValueError, KeyError, TypeError) as exc:
        raise UserInputError(f"{where}: {path} is not an eval metrics.json with 'greedy_accuracy' ({exc})") from None
    return float(value)


def measured_tokens_per_s(eval_dir: str | Path) -> float | None:
    """Generated tokens per second of an ``srl-rlvr eval`` run (predictions' ``num_tokens`` / run seconds).

    Counts greedy tokens only, so it is exact for k=1 runs; None when the folder lacks what it needs.
    """
    eval_dir = Path(eval_dir)
    run_file, predictions = eval_dir / "eval_run.json", eval_dir / "predictions.jsonl"
    if not run_file.is_file() or not predictions.is_file():
        return None
    run = json.loads(run_file.read_text(encoding="utf-8"))
    if run.get("config", {}).get("k", 1) != 1 or not run.get("seconds"):
        return None
    tokens = sum(json.loads(line).get("num_tokens", 0)
                 for line in predictions.read_text(encoding="utf-8").splitlines() if line.strip())
    return tokens / float(run["seconds"]) if tokens else None
