"""Run-time and cost estimate of an SRL stage on a tier, from the tier's ``throughput`` figures.

    generated completions = examples x epochs x rollouts x refill_factor      (capped by srl.max_steps)
    generation seconds    = completions x mean_completion_tokens / tokens_per_s
    wall seconds          = generation seconds / (1 - train_share)
    cost                  = wall hours x price_per_hour

``throughput`` keys (a tier's free-form section; the estimator reads these and ignores the rest):

* ``tokens_per_s``            completion tokens generated per second, the tier's whole hardware together;
* ``train_share``             share of a step's wall time that is not generation (logprobs, backward,
                              optimiser, weight sync), in [0, 1);
* ``mean_completion_tokens``  tokens per completion (default: ``srl.max_completion_length``, an upper bound);
* ``refill_factor``           completions generated per completion trained on (dynamic sampling), >= 1;
* ``price_per_hour``          USD per hour for the tier's whole hardware (``--price-per-hour`` overrides);
* ``measured``, ``source``    whether the figures were measured, and where they come from (always printed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from srl_rlvr.errors import UserInputError

DEFAULT_ROLLOUTS = 8  # TRL GRPOConfig.num_generations


@dataclass(frozen=True)
class Throughput:
    tokens_per_s: float
    train_share: float
    measured: bool
    source: str
    mean_completion_tokens: float | None = None
    refill_factor: float = 1.0
    price_per_hour: float | None = None

    @property
    def provenance(self) -> str:
        """How the report labels the figures: measured ones say where, assumed ones say on what grounds."""
        return f"(measured on {self.source})" if self.measured else f"(assumption: {self.source})"


def _number(block: dict[str, Any], key: str, where: str, low: float, high: float = math.inf,
            low_open: bool = False, high_open: bool = False, default: float | None = None) -> float | None:
    value = block.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UserInputError(f"{where}: throughput.{key} must be a number, got {value!r}")
    too_low = value <= low if low_open else value < low
    too_high = value >= high if high_open else value > high
    if too_low or too_high:
        lo, hi = ("(" if low_open else "["), (")" if high_open else "]")
        raise UserInputError(f"{where}: throughput.{key} must be in {lo}{low:g}, {high:g}{hi}, got {value!r}")
    return float(value)


def parse_throughput(block: Any, where: str) -> Throughput:
    """Check a tier's ``throughput`` section; errors say which key is wrong and how to get the figures."""
    if not isinstance(block, dict) or block.get("tokens_per_s") is None:
        raise UserInputError(
            f"{where}: no throughput figures (throughput.tokens_per_s); measure them with "
            "scripts/measure_cpu_throughput.py or add assumed ones with measured: false and a source"
        )
    if not isinstance(block.get("measured"), bool):
        raise UserInputError(f"{where}: throughput.measured must be true or false")
    source = block.get("source")
    if not isinstance(source, str) or not source.strip():
        raise UserInputError(f"{where}: throughput.source must say where the figures come from")
    return Throughput(
        tokens_per_s=_number(block, "tokens_per_s", where, 0.0, low_open=True),
        train_share=_number(block, "train_share", where, 0.0, 1.0, high_open=True, default=0.0),
        measured=block["measured"],
        source=" ".join(source.split()),
        mean_completion_tokens=_number(block, "mean_completion_tokens", where, 0.0, low_open=True),
        refill_factor=_number(block, "refill_factor", where, 1.0, default=1.0),
        price_per_hour=_number(block, "price_per_hour", where, 0.0),
    )


@dataclass(frozen=True)
class Estimate:
    tier: str
    model: str
    examples: int
    epochs: float
    rollouts: int
    mean_completion_tokens: float
    mean_tokens_assumed_max: bool  # no figure in the tier: max_completion_length used as an upper bound
    completions: float
    capped_by_max_steps: int | None  # srl.max_steps when it stops the run before the requested epochs
    completion_tokens: float
    generation_seconds: float
    training_seconds: float
    total_seconds: float
    price_per_hour: float | None
    price_from_flag: bool
    throughput: Throughput

    @property
    def cost(self) -> float | None:
        return None if self.price_per_hour is None else self.total_seconds / 3600 * self.price_per_hour


def rollouts_per_step(srl: dict[str, Any], hardware: dict[str, Any]) -> int:
    """Completions trained on per optimiser step: per-device batch x accumulation x training processes."""
    processes = hardware.get("training_processes") or 1
    return (int(srl.get("per_device_train_batch_size", 8)) * int(srl.get("gradient_accumulation_steps", 1))
            * int(processes))


def estimate(tier: dict[str, Any], examples: int, epochs: float | None = None, price_per_hour: float | None = None,
             label: str = "tier") -> Estimate:
    """Estimate the SRL stage of ``tier`` (raw tier YAML) on ``examples`` SRL instances."""
    if examples <= 0:
        raise UserInputError(f"--examples must be a positive number of SRL instances, got {examples}")
    if price_per_hour is not None and price_per_hour < 0:
        raise UserInputError(f"--price-per-hour must be >= 0, got {price_per_hour}")
    tp = parse_throughput(tier.get("throughput"), label)
    srl = tier.get("srl") or {}
    hardware = tier.get("hardware") or {}
    if epochs is None:
        epochs = float(srl.get("num_train_epochs", 1))
    if epochs <= 0:
        raise UserInputError(f"--epochs must be > 0, got {epochs}")
    rollouts = int(srl.get("num_generations", DEFAULT_ROLLOUTS))
    trained = examples * epochs * rollouts
    cap = None
    max_steps = int(srl.get("max_steps", -1) or -1)
    if max_steps > 0 and max_steps * rollouts_per_step(srl, hardware) < trained:
        cap, trained = max_steps, max_steps * rollouts_per_step(srl, hardware)
    completions = trained * tp.refill_factor
    mean_tokens = tp.mean_completion_tokens
    assumed_max = mean_tokens is None
    if assumed_max:
        mean_tokens = float(srl.get("max_completion_length", 512))  # GRPOConfig's default
    tokens = completions * mean_tokens
    generation = tokens / tp.tokens_per_s
    total = generation / (1.0 - tp.train_share)
    flag = price_per_hour is not None
    return Estimate(
        tier=label, model=str(tier.get("model", "?")), examples=examples, epochs=epochs, rollouts=rollouts,
        mean_completion_tokens=mean_tokens, mean_tokens_assumed_max=assumed_max, completions=completions,
        capped_by_max_steps=cap, completion_tokens=tokens, generation_seconds=generation,
        training_seconds=total - generation, total_seconds=total,
        price_per_hour=price_per_hour if flag else tp.price_per_hour, price_from_flag=flag, throughput=tp,
    )


def format_duration(seconds: float) -> str:
    """Compact wall time.

    >>> format_duration(42.4), format_duration(3725), format_duration(2 * 86400 + 3 * 3600)
    ('42s', '1h02m', '2d03h')
    """
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def _n(x: float) -> str:
    return f"{x:,.0f}" if float(x).is_integer() or x >= 100 else f"{x:,.2f}".rstrip("0").rstrip(".")


def format_estimate(e: Estimate) -> str:
    tp = e.throughput
    epochs = f"{_n(e.epochs)} epoch{'s' if e.epochs != 1 else ''}"
    lines = [f"tier {e.tier}: {e.model}, SRL stage"]
    if e.capped_by_max_steps is not None:
        lines.append(f"  {_n(e.examples)} examples x {epochs} x {e.rollouts} rollouts, capped by srl.max_steps="
                     f"{e.capped_by_max_steps}: {_n(e.completions / tp.refill_factor)} completions trained")
    else:
        lines.append(f"  {_n(e.examples)} examples x {epochs} x {e.rollouts} rollouts = "
                     f"{_n(e.completions / tp.refill_factor)} completions trained")
    if tp.refill_factor != 1.0:
        lines.append(f"  x {_n(tp.refill_factor)} refill (dynamic sampling) = "
                     f"{_n(e.completions)} completions generated")
    mean_note = " (max_completion_length: no mean in the tier, an upper bound)" if e.mean_tokens_assumed_max else ""
    lines.append(f"  x {_n(e.mean_completion_tokens)} tokens each{mean_note} = "
                 f"{_n(e.completion_tokens)} completion tokens")
    lines.append(f"  generation: / {_n(tp.tokens_per_s)} tokens/s = {format_duration(e.generation_seconds)}")
    lines.append(f"    {tp.provenance}")
    lines.append(f"  training share {tp.train_share:.2f} of each step: + {format_duration(e.training_seconds)}")
    lines.append(f"  estimated wall time: {format_duration(e.total_seconds)} ({e.total_seconds / 3600:,.2f} h)")
    if e.price_per_hour is None:
        lines.append("  cost: no price (give --price-per-hour or throughput.price_per_hour)")
    else:
        where = "--price-per-hour" if e.price_from_flag else "the tier's throughput.price_per_hour"
        lines.append(f"  estimated cost: {e.total_seconds / 3600:,.2f} h x ${e.price_per_hour:,.2f}/h = ${e.cost:,.2f}"
                     f"  (price from {where})")
    return "\n".join(lines)
