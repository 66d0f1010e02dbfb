"""The SRL think split: same answer as the reward's parser on well-formed text, and streaming == non-streaming."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from serving_helpers import write_stage_manifest

from srl_rlvr.rewards.srl import parse_think_action
from srl_rlvr.serving.think_format import (
    CONTENT,
    REASONING,
    ThinkFormat,
    ThinkSplitter,
    resolve_think_format,
    split_completion,
)

# Pieces that make tag boundaries, whitespace and partial tags likely.
_PIECES = st.sampled_from(["<think>", "</think>", "<th", "ink>", "</", "think", ">", " ", "\n", "x = 5", "a", "é",
                           "<"])
TEXTS = st.lists(_PIECES, max_size=12).map("".join) | st.text(max_size=30)


def _streamed(text: str, cuts: list[int], prefilled: bool) -> tuple[str | None, str]:
    splitter = ThinkSplitter(prefilled=prefilled)
    body = text[len("<think>"):] if prefilled else text
    bounds = sorted({0, len(body), *(c % (len(body) + 1) for c in cuts)})
    parts = []
    for a, b in zip(bounds, bounds[1:]):
        parts += splitter.feed(body[a:b])
    parts += splitter.finish()
    assert all(t for _, t in parts)  # no empty deltas are sent
    reasoning = "".join(t for k, t in parts if k == REASONING)
    return (reasoning if splitter.saw_think else None), "".join(t for k, t in parts if k == CONTENT)


@settings(max_examples=300, deadline=None)
@given(TEXTS, st.lists(st.integers(min_value=0, max_value=60), max_size=8))
def test_streaming_adds_up_to_the_full_split(text: str, cuts: list[int]):
    assert _streamed(text, cuts, prefilled=False) == split_completion(text)
    prefilled = "<think>" + text
    assert _streamed(prefilled, cuts, prefilled=True) == split_completion(prefilled)


@settings(max_examples=200, deadline=None)
@given(TEXTS)
def test_well_formed_text_splits_like_the_reward_parser(text: str):
    parsed = parse_think_action(text)
    if parsed is not None:
        assert split_completion(text) == parsed


def test_split_examples():
    assert split_completion(" <think> plan </think>\n x = 5 \n") == ("plan", "x = 5")
    assert split_completion("<think>a</think>b</think>c") == ("a", "b</think>c")  # lenient: first close wins
    assert split_completion("<think>never closed") == ("never closed", "")
    assert split_completion("no tags at all ") == (None, "no tags at all")
    assert split_completion("<thin") == (None, "<thin")


def test_think_format_puts_the_prefill_back():
    on = ThinkFormat(prefill=True, split=True)
    assert on.answer("plan</think> x = 5") == ("plan", "x = 5")
    assert ThinkFormat(prefill=True, split=False).answer("plan</think>x") == (None, "<think>plan</think>x")
    assert ThinkFormat().answer(" raw ") == (None, " raw ")


def test_auto_follows_the_stage_manifest(tmp_path: Path):
    assert resolve_think_format(str(tmp_path), "auto", "auto") == ThinkFormat(False, False)
    write_stage_manifest(tmp_path, think_prefill=True)
    assert resolve_think_format(str(tmp_path), "auto", "auto") == ThinkFormat(True, True)
    assert resolve_think_format(str(tmp_path), "auto", False) == ThinkFormat(True, False)
    assert resolve_think_format(str(tmp_path), False, "auto") == ThinkFormat(False, False)
    assert resolve_think_format("smollm2-135m", True, "auto") == ThinkFormat(True, True)
