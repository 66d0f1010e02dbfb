"""SRL step reward: exact difflib agreement (cdifflib fast path included), format rule, lenient mode."""

from __future__ import annotations

import random
from difflib import SequenceMatcher

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from srl_rlvr.rewards import parse_think_action, similarity, srl_step_reward
from srl_rlvr.rewards.similarity import difflib_ratio

PROPERTY_SETTINGS = settings(
    max_examples=500, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)

# Any code point, lone surrogates included (hypothesis leaves those out by default).
any_char = st.characters(blacklist_categories=())
small_alphabets = st.sampled_from(["ab", "ab ", "xyz\n", "0123456789+-=x ", "αβγ ", "中文字", "\U0001f600\u0301e"])


@st.composite
def repetitive_text(draw, min_size: int = 0, max_size: int = 700) -> str:
    """Long, low-entropy text: characters repeat far more than 1% of the time, so autojunk fires."""
    alphabet = draw(small_alphabets)
    return draw(st.text(alphabet=alphabet, min_size=min_size, max_size=max_size))


@st.composite
def step_like_text(draw) -> str:
    """Text shaped like SRL steps: repeated words, numbers, long enough (> 200 chars) now and then."""
    words = ["x", "=", "2", "+", "3", "the", "sum", "so", "we", "get", "\n", "step", "(", ")"]
    count = draw(st.integers(0, 120))
    return " ".join(draw(st.lists(st.sampled_from(words), min_size=count, max_size=count)))


texts = st.one_of(
    st.text(alphabet=any_char, max_size=40),
    st.text(alphabet=any_char, min_size=190, max_size=320),
    repetitive_text(),
    repetitive_text(min_size=200, max_size=700),
    step_like_text(),
)


def test_cdifflib_fast_path_is_live() -> None:
    # The property tests below only prove something about cdifflib if it is the path being taken.
    assert similarity.uses_cdifflib()


@PROPERTY_SETTINGS
@given(a=texts, b=texts)
def test_difflib_ratio_is_bitwise_difflib(a: str, b: str) -> None:
    assert difflib_ratio(a, b) == SequenceMatcher(None, a, b).ratio()
    assert difflib_ratio(b, a) == SequenceMatcher(None, b, a).ratio()


@PROPERTY_SETTINGS
@given(a=texts, b=texts)
def test_strict_reward_is_exact_difflib_ratio(a: str, b: str) -> None:
    assume(a.strip() and "<think>" not in a and "</think>" not in a)
    expected = SequenceMatcher(None, a.strip(), b.strip()).ratio()
    assert srl_step_reward("<think>x</think>" + a, b) == expected
    assert srl_step_reward("<think>x</think>" + a, b, mode="lenient") == expected


@PROPERTY_SETTINGS
@given(a=texts, b=texts)
def test_lenient_malformed_is_shifted_ratio(a: str, b: str) -> None:
    assume("<think>" not in a and "</think>" not in a)
    shifted = SequenceMatcher(None, a.strip(), b.strip()).ratio() - 1.0
    assert srl_step_reward(a, b, mode="lenient") == shifted  # no tags at all: the whole text is the action
    assert srl_step_reward("<think>unclosed " + a, b, mode="lenient") == (
        SequenceMatcher(None, ("<think>unclosed " + a).strip(), b.strip()).ratio() - 1.0
    )
    assert -1.0 <= shifted <= 0.0
    assert srl_step_reward(a, b) == -1.0


def test_autojunk_regime_matches_difflib_on_seeded_pairs() -> None:
    rng = random.Random(2510_25992)
    for _ in range(300):
        random_code_points = "".join(chr(rng.randrange(0x110000)) for _ in range(4))
        alphabet = rng.choice(["ab", "abc ", "x = 1 + 2\n", "αβ", random_code_points])
        a = "".join(rng.choice(alphabet) for _ in range(rng.choice([199, 200, 201, 350, 900])))
        b = "".join(rng.choice(alphabet) for _ in range(rng.choice([0, 1, 199, 200, 201, 350, 900])))
        assert difflib_ratio(a, b) == SequenceMatcher(None, a, b).ratio()
        assert difflib_ratio(a, a) == SequenceMatcher(None, a, a).ratio()  # may be < 1.0 under autojunk


def test_long_inputs_fall_back_to_difflib(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(similarity, "_FAST_MAX_TOTAL_CHARS", 10)
    a, b = "the cat sat " * 30, "a cat sat down " * 25
    assert difflib_ratio(a, b) == SequenceMatcher(None, a, b).ratio()


def test_trivial_cases_match_difflib() -> None:
    for a, b in [("", ""), ("a", ""), ("", "a"), ("a", "a"), (" ", " "), ("ab", "ba")]:
        assert difflib_ratio(a, b) == SequenceMatcher(None, a, b).ratio()
    assert SequenceMatcher(None, "", "").ratio() == 1.0


@pytest.mark.parametrize(
    "completion",
    [
        "",
        "x = 5",
        "<think>reasoning</think>",  # no action
        "<think>reasoning</think>   \n ",  # whitespace-only action
        "<think>a</think>b</think>c",  # two closings
        "<think>a<think>b</think>c",  # two openings
        "<think>a</think>b<think>c",  # re-opened after the action
        "pre <think>a</think>b",  # text before the opening
        "<THINK>a</THINK>b",  # tags are case-sensitive
        "</think>a<think>b",  # wrong order
        "<think>never closed, x = 5",
    ],
)
def test_format_failures_score_minus_one(completion: str) -> None:
    assert parse_think_action(completion) is None
    assert srl_step_reward(completion, "x = 5") == -1.0


def test_well_formed_edges() -> None:
    assert parse_think_action("\n\t <think>\n</think>\nx = 5\n") == ("", "x = 5")
    assert srl_step_reward("  <think>m</think>  x = 5  ", "  x = 5\n") == 1.0
    assert srl_step_reward("<think>m</think>x", "") == 0.0  # empty expert step: difflib's 2*0/1


def test_lenient_ordering_and_boundary_tie() -> None:
    expert = "x = 2 + 3 = 5"
    well_formed_far = srl_step_reward("<think>t</think>zzzzzzzzz", expert, mode="lenient")
    malformed_exact = srl_step_reward(expert, expert, mode="lenient")
    malformed_close = srl_step_reward("x = 2 + 3 = 6", expert, mode="lenient")
    malformed_far = srl_step_reward("zzzzzzzzz", expert, mode="lenient")
    assert well_formed_far == 0.0 and malformed_exact == 0.0  # the documented tie at the boundary
    assert malformed_far == -1.0
    assert malformed_far < malformed_close < malformed_exact <= well_formed_far
    # Text after the last </think> is what a malformed completion is graded on.
    assert srl_step_reward("<think>a</think>b</think>" + expert, expert, mode="lenient") == 0.0


def test_lenient_gives_a_spread_where_strict_gives_none() -> None:
    # The measured failure mode: a group of malformed rollouts. Strict: zero spread; lenient: some.
    group = ["x = 5", "x = 2 + 3", "we add", "", "<think>unclosed x = 2 + 3 = 5", "5", "x=5", "y"]
    strict = [srl_step_reward(c, "x = 2 + 3 = 5") for c in group]
    lenient = [srl_step_reward(c, "x = 2 + 3 = 5", mode="lenient") for c in group]
    assert len(set(strict)) == 1
    assert len(set(lenient)) > 1 and all(-1.0 <= r <= 0.0 for r in lenient)


def test_unknown_mode_names_valid_modes() -> None:
    with pytest.raises(ValueError, match="'strict', 'lenient'"):
        srl_step_reward("<think>a</think>b", "b", mode="soft")
