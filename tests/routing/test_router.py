"""Policy, router decisions, fallbacks/retries/cooldowns, budgets, model names and calibration."""

from __future__ import annotations

from dataclasses import replace

import pytest

from srl_rlvr.errors import UserInputError
from srl_rlvr.routing import (
    AllTiersFailed,
    BudgetBook,
    BudgetExceeded,
    NoTierAvailable,
    Router,
    Tier,
    TierCost,
    TierHealth,
    choose_tier,
    format_router_model,
    parse_router_model,
    resolve_router_model,
)


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FixedQuality:
    """A stand-in predictor: the same qualities for every prompt, or per prompt."""

    def __init__(self, table):
        self.table = table
        self.models = {tier for qualities in table.values() for tier in qualities}  # the tiers it "fitted"

    def predict(self, prompt):
        return self.table.get(prompt, self.table.get("*"))


SMALL = Tier("small", "hf", "m-small", TierCost(0.0, 1.0), latency_slo_ms=1000, expected_latency_ms=100,
             expected_output_tokens=100)
MID = Tier("mid", "hf", "m-mid", TierCost(0.5, 5.0), latency_slo_ms=1000, expected_latency_ms=300,
           expected_output_tokens=100)
BIG = Tier("big", "openai", "m-big", TierCost(3.0, 15.0), latency_slo_ms=5000, expected_latency_ms=800,
           expected_output_tokens=100)
TIERS = [BIG, SMALL, MID]  # order in the list does not matter: cost does


def cost(tier):
    return tier.estimated_cost("a prompt")


def test_policy_picks_the_cheapest_good_enough_tier():
    q = {"small": 0.4, "mid": 0.7, "big": 0.95}
    assert choose_tier(TIERS, q, 0.3, cost).tier is SMALL
    choice = choose_tier(TIERS, q, 0.6, cost)
    assert choice.tier is MID and [t.name for t in choice.fallbacks] == ["big", "small"]
    assert choose_tier(TIERS, q, 0.9, cost).tier is BIG
    best = choose_tier(TIERS, q, 0.99, cost)
    assert best.tier is BIG and "no tier reaches target" in best.reason


def test_policy_skips_tiers_predicted_slower_than_their_slo():
    q = {"small": 0.9, "mid": 0.9, "big": 0.9}
    slow_small = {"small": 2000.0, "mid": 300.0, "big": 800.0}
    assert choose_tier(TIERS, q, 0.5, cost, latency_ms=lambda t: slow_small[t.name]).tier is MID
    assert choose_tier(TIERS, q, 0.5, cost, max_latency_ms=200).tier is SMALL
    with pytest.raises(NoTierAvailable):
        choose_tier(TIERS, q, 0.5, cost, excluded={"small", "mid", "big"})


def test_route_uses_predictor_then_tier_quality_and_names_the_model():
    big_quality = Tier("big", "openai", "m-big", TierCost(3.0, 15.0), quality={"math": 0.97})
    router = Router([SMALL, big_quality], FixedQuality({"easy": {"small": 0.9}, "*": {"small": 0.1}}), threshold=0.5,
                    name="cb")
    assert router.on_prior == ("big",)  # the predictor has no model for it: its prior, counted by the server
    d = router.route("easy")
    assert d.tier.name == "small" and d.predicted_quality == 0.9 and d.model == "router-cb-0.5"
    assert d.est_cost == pytest.approx(SMALL.estimated_cost("easy"))
    hard = router.route("hard")
    assert hard.tier.name == "big" and hard.predicted_quality == 0.97  # from the tier's eval quality


def test_call_retries_then_falls_back_and_cools_the_tier_down():
    clock = Clock()
    health = TierHealth(allowed_fails=2, window_s=60, cooldown_s=30, clock=clock)
    router = Router([SMALL, BIG], FixedQuality({"*": {"small": 0.9, "big": 0.99}}), 0.5, health=health, num_retries=1)
    calls = []

    def call_tier(tier, prompt, n):
        calls.append(tier.name)
        if tier.name == "small":
            raise ConnectionError("backend down")
        return ["The answer is 4."] * n

    result = router.call("q", call_tier)
    assert calls == ["small", "small", "big"]  # one retry, then the fallback
    assert result.tier.name == "big" and result.outputs == ["The answer is 4."]
    assert [t for t, _ in result.failures] == ["small", "small"]
    assert health.cooling_down() == {"small"}
    assert router.route("q").tier.name == "big"  # skipped while cooling down
    clock.now = 31
    assert router.route("q").tier.name == "small"


def test_all_tiers_failing_raises_with_every_error():
    router = Router([SMALL, BIG], FixedQuality({"*": {"small": 0.9, "big": 0.9}}), 0.5, num_retries=0)

    def broken(tier, prompt, n):
        raise TimeoutError(tier.name)

    with pytest.raises(AllTiersFailed) as info:
        router.call("q", broken)
    assert [t for t, _ in info.value.errors] == ["small", "big"]


def test_budget_downgrades_then_refuses():
    q = FixedQuality({"*": {"small": 0.2, "big": 0.99}})
    budgets = BudgetBook({"team": BIG.estimated_cost("p") * 1.5})
    router = Router([SMALL, BIG], q, 0.9, budgets=budgets)

    def answer(tier, prompt, n):
        return ["x" * 400] * n  # 100 tokens, the tiers' expected output

    assert router.call("p", answer, api_key="team").tier.name == "big"
    downgraded = router.route("p", api_key="team")  # not enough left for big: the cheap tier instead
    assert downgraded.tier.name == "small" and "budget" in downgraded.reason
    assert budgets.spent("team") == pytest.approx(BIG.estimated_cost("p"))
    refusing = Router([SMALL, BIG], q, 0.9, budgets=budgets, on_over_budget="refuse")
    with pytest.raises(BudgetExceeded, match="team"):
        refusing.route("p", api_key="team")
    assert router.route("p", api_key="other").tier.name == "big"  # other keys are unlimited


def test_budget_resets_after_its_period():
    clock = Clock()
    book = BudgetBook({"k": 1.0}, period_s=10, clock=clock)
    book.record("k", 0.9)
    assert book.remaining("k") == pytest.approx(0.1)
    clock.now = 11
    assert book.remaining("k") == pytest.approx(1.0)


def test_predictor_tiers_must_match_the_config_and_no_tier_falls_back_to_zero():
    with pytest.raises(UserInputError, match=r"fitted on tier\(s\) gold, which the route config does not have"):
        Router([SMALL, BIG], FixedQuality({"*": {"small": 0.5, "big": 0.9, "gold": 0.99}}))
    with pytest.raises(UserInputError, match=r"tier\(s\) big: no predictor model and no quality prior"):
        Router([SMALL, BIG], FixedQuality({"*": {"small": 0.5}}))  # big: neither -> no silent 0.0
    assert Router([SMALL, BIG], FixedQuality({"*": {"small": 0.5, "big": 0.9}})).on_prior == ()


def test_model_names_round_trip_and_resolve():
    assert parse_router_model(format_router_model("my-router", 0.25)) == ("my-router", 0.25)
    for bad in ("router-cb", "gpt-4", "router-cb-1.5", "router--0.5"):
        with pytest.raises(UserInputError):
            parse_router_model(bad)
    base = Router([replace(SMALL, quality={"math": 0.3}), replace(BIG, quality={"math": 0.9})], None, 0.5, name="cb")
    r = resolve_router_model("router-cb-0.8", {"cb": base})
    assert r.threshold == 0.8 and r.health is base.health and r.budgets is base.budgets
    with pytest.raises(UserInputError, match="no router named 'xx'"):
        resolve_router_model("router-xx-0.5", {"cb": base})


def test_calibrated_threshold_hits_the_strong_share():
    prompts = [f"p{i}" for i in range(10)]
    q = FixedQuality({p: {"small": i / 10, "big": 0.99} for i, p in enumerate(prompts)})
    router = Router([SMALL, BIG], q, 0.5).calibrated(prompts, 0.3)
    routed = [router.route(p).tier.name for p in prompts]
    assert routed.count("big") == 3 and routed[:3] == ["big"] * 3  # the three least promising prompts
