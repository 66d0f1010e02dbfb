"""The estimator's arithmetic, on a synthetic tier whose answer is known by hand."""

from __future__ import annotations

import re

import pytest

from srl_rlvr.errors import UserInputError
from srl_rlvr.tiers.estimate import estimate, format_estimate, parse_throughput

SYNTHETIC = {
    "model": "toy",
    "srl": {"num_generations": 4, "max_completion_length": 100},
    "throughput": {"measured": True, "source": "a test", "tokens_per_s": 50, "train_share": 0.5,
                   "mean_completion_tokens": 25, "refill_factor": 1.0, "price_per_hour": 2.0},
}


def test_arithmetic_on_a_synthetic_tier():
    e = estimate(SYNTHETIC, examples=100, epochs=2)
    # 100 x 2 x 4 = 800 completions; x 25 tokens = 20,000 tokens; / 50 tok/s = 400 s; / (1 - 0.5) = 800 s
    assert e.completions == 800
    assert e.completion_tokens == 20_000
    assert e.generation_seconds == pytest.approx(400)
    assert e.training_seconds == pytest.approx(400)
    assert e.total_seconds == pytest.approx(800)
    assert e.cost == pytest.approx(800 / 3600 * 2.0)


def test_refill_factor_and_price_flag():
    tier = {**SYNTHETIC, "throughput": {**SYNTHETIC["throughput"], "refill_factor": 1.5}}
    e = estimate(tier, examples=100, epochs=2, price_per_hour=36.0)
    assert e.completions == pytest.approx(1200)
    assert e.total_seconds == pytest.approx(1200)
    assert e.cost == pytest.approx(12.0)
    assert e.price_from_flag


def test_defaults_epochs_from_tier_and_mean_tokens_from_max_completion_length():
    throughput = {k: v for k, v in SYNTHETIC["throughput"].items() if k != "mean_completion_tokens"}
    tier = {**SYNTHETIC, "srl": {**SYNTHETIC["srl"], "num_train_epochs": 3}, "throughput": throughput}
    e = estimate(tier, examples=10)
    assert e.epochs == 3
    assert e.mean_completion_tokens == 100 and e.mean_tokens_assumed_max
    assert "an upper bound" in format_estimate(e)


def test_max_steps_caps_the_run():
    tier = {**SYNTHETIC, "srl": {**SYNTHETIC["srl"], "max_steps": 5, "per_device_train_batch_size": 16},
            "hardware": {"training_processes": 2}}
    e = estimate(tier, examples=1000, epochs=1)
    assert e.capped_by_max_steps == 5
    assert e.completions == 5 * 16 * 2  # steps x per-device batch x processes
    assert "capped by srl.max_steps=5" in format_estimate(e)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"tokens_per_s": None}, "no throughput figures"),
        ({"tokens_per_s": 0}, "throughput.tokens_per_s must be in (0"),
        ({"train_share": 1.0}, "throughput.train_share must be in [0, 1)"),
        ({"refill_factor": 0.5}, "throughput.refill_factor must be in [1"),
        ({"measured": "yes"}, "throughput.measured must be true or false"),
        ({"source": " "}, "throughput.source must say where"),
        ({"tokens_per_s": "fast"}, "must be a number"),
    ],
)
def test_bad_throughput_blocks_are_user_errors(change, message):
    with pytest.raises(UserInputError, match=re.escape(message)):
        parse_throughput({**SYNTHETIC["throughput"], **change}, "toy.yaml")


@pytest.mark.parametrize(("kwargs", "message"), [({"examples": 0}, "--examples"),
                                                  ({"examples": 5, "epochs": 0}, "--epochs"),
                                                  ({"examples": 5, "price_per_hour": -1}, "--price-per-hour")])
def test_bad_arguments_are_user_errors(kwargs, message):
    with pytest.raises(UserInputError, match=message):
        estimate(SYNTHETIC, **kwargs)
