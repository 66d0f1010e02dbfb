"""Step splitting: hand-written cases for every style, then property tests (round trip, nothing lost)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from srl_rlvr.data.steps import STEP_STYLES, detect_step_style, split_steps

# ---------------------------------------------------------------------------------------------- numbered


@pytest.mark.parametrize(
    "marker",
    [
        "{n}. ",
        "{n}) ",
        "Step {n}: ",
        "Step {n}. ",
        "step {n}: ",
        "**Step {n}** ",
        "**Step {n}:** ",
        "**Step {n}.** ",
        "**Step {n}**: ",
        "### Step {n}: ",
        "## Step {n} ",
        "#### Step {n}\n",
    ],
)
def test_each_numbered_style_splits_and_strips_its_markers(marker: str) -> None:
    text = "".join(marker.format(n=n) + body + "\n" for n, body in enumerate(["Let x = 2.", "So 2x = 4."], 1))
    assert split_steps(text) == ["Let x = 2.", "So 2x = 4."]
    assert detect_step_style(text) == "numbered"


def test_deepseek_titles_stay_at_the_start_of_their_step() -> None:
    text = (
        "1. **Identify the constraint**: We need n odd.\n\n"
        "2. **Count**: There are 50 odd numbers.\n"
    )
    assert split_steps(text) == ["**Identify the constraint**: We need n odd.", "**Count**: There are 50 odd numbers."]


def test_bold_step_title_is_kept_in_bold() -> None:
    text = "**Step 1: Compute the sum**\nWe add.\n\n**Step 2 - Check**\nIt holds."
    assert split_steps(text) == ["**Compute the sum**\nWe add.", "**Check**\nIt holds."]


def test_heading_step_title_is_kept_without_the_marker() -> None:
    text = "### Step 1: Setup\nLet x = 1.\n### Step 2\nThen x + 1 = 2."
    assert split_steps(text) == ["Setup\nLet x = 1.", "Then x + 1 = 2."]


def test_preamble_is_its_own_first_step_and_trailing_text_stays_in_the_last() -> None:
    text = (
        "We count in two steps.\n\n"
        "1. **Pairs**: there are 3.\n"
        "2. **Total**: so 2 * 3 = 6.\n\n"
        "**Final Answer**\n\\boxed{6}"
    )
    assert split_steps(text) == [
        "We count in two steps.",
        "**Pairs**: there are 3.",
        "**Total**: so 2 * 3 = 6.\n\n**Final Answer**\n\\boxed{6}",
    ]


def test_indented_sub_lists_stay_inside_their_step() -> None:
    text = (
        "1. **Count each set**:\n"
        "   1. Multiples of 3: 33.\n"
        "   2. Multiples of 5: 20.\n"
        "   - a bullet\n"
        "2. **Combine**: 33 + 20 - 6 = 47.\n"
    )
    steps = split_steps(text)
    assert len(steps) == 2
    assert steps[0].endswith("   - a bullet") and "   2. Multiples of 5: 20." in steps[0]


def test_paren_steps_with_indented_dot_sub_lists_split_on_the_parens() -> None:
    text = "1) First.\n   1. a\n   2. b\n2) Second.\n   1. c\n   2. d"
    assert split_steps(text) == ["First.\n   1. a\n   2. b", "Second.\n   1. c\n   2. d"]


def test_unindented_list_under_deepseek_titled_steps_stays_inside() -> None:
    text = (
        "1. **Fermat**: 3^6 = 1 mod 7.\n"
        "2. **Small powers**: they are\n1. 3\n2. 2\n3. 6\n4. 4\n\n"
        "3. **Conclude**: 3^100 = 4 mod 7."
    )
    assert split_steps(text) == [
        "**Fermat**: 3^6 = 1 mod 7.",
        "**Small powers**: they are\n1. 3\n2. 2\n3. 6\n4. 4",
        "**Conclude**: 3^100 = 4 mod 7.",
    ]


def test_unindented_list_in_the_last_titled_step_stays_inside() -> None:
    text = "1. **A**: a\n2. **B**: the cases are\n1. x\n2. y\n3. z\n4. w"
    assert split_steps(text) == ["**A**: a", "**B**: the cases are\n1. x\n2. y\n3. z\n4. w"]


def test_untitled_steps_between_titled_ones_still_count() -> None:
    text = "1. **A**: a\n2. **B**: b\n3. plain c\n4. **D**: d"
    assert split_steps(text) == ["**A**: a", "**B**: b", "plain c", "**D**: d"]


def test_explicit_step_markers_beat_a_plain_list_inside_them() -> None:
    text = "**Step 1:** List the cases.\n1. n even\n2. n odd\n3. n zero\n**Step 2:** Check each."
    assert split_steps(text) == ["List the cases.\n1. n even\n2. n odd\n3. n zero", "Check each."]


def test_stray_numbers_in_prose_do_not_split() -> None:
    # A wrapped line starting "4." before step 3 is not the next number, so it stays in step 2.
    text = "1. Eight outcomes.\n2. Favourable ones: 3 + 1 =\n4. These are HHT, HTH, THH, HHH.\n3. So 4/8 = 1/2."
    assert split_steps(text) == [
        "Eight outcomes.",
        "Favourable ones: 3 + 1 =\n4. These are HHT, HTH, THH, HHH.",
        "So 4/8 = 1/2.",
    ]


@pytest.mark.parametrize(
    "text",
    [
        "The value is\n3. stray, and nothing else is numbered.",
        "1.5 is a decimal\n2.5 is another",
        "Step 1 is to think.\nStep 2 is to act.",
        "Intro.\n1. Only one marker, after a preamble.",
        "2. Starts at two\n3. then three",
    ],
)
def test_no_valid_run_means_no_numbered_split(text: str) -> None:
    assert detect_step_style(text) != "numbered"
    assert "".join(split_steps(text)).replace("\n", "") == text.replace("\n", "")


@pytest.mark.parametrize("marker", ["1. ", "Step 1: ", "**Step 1** ", "**Step 1:** ", "### Step 1\n", "1) "])
def test_a_one_step_numbered_solution_loses_its_marker(marker: str) -> None:
    assert split_steps(marker + "Since 105 is odd, 7 | 3^105 + 4^105.") == ["Since 105 is odd, 7 | 3^105 + 4^105."]
    # the rest of the text is then split by the later rules
    assert split_steps(marker + "First.\n\nSecond.") == ["First.", "Second."]
    assert detect_step_style(marker + "First.\n\nSecond.") == "paragraphs"


def test_repeated_and_restarting_numbers_keep_the_first_run() -> None:
    text = "1. a\n2. b\n3. c\nChecking again:\n1. a'\n2. b'"
    assert split_steps(text) == ["a", "b", "c\nChecking again:\n1. a'\n2. b'"]


def test_empty_steps_are_dropped() -> None:
    assert split_steps("1.\n2. x\n3.   \n4. y") == ["x", "y"]


def test_heading_above_a_marker_belongs_to_the_next_step() -> None:
    text = "1. one\n\n## Part B\n\n2. two\n**Case 3:**\n3. three\n**x = 5**\n4. four"
    assert split_steps(text) == ["one", "## Part B\n\ntwo", "**Case 3:**\nthree\n**x = 5**", "four"]


def test_markers_inside_code_fences_are_ignored() -> None:
    text = "```python\n# 1. not a step\n1. not a step\n2. nor this\n```\n\nThen we run it."
    assert detect_step_style(text) == "paragraphs"
    assert split_steps(text) == ["```python\n# 1. not a step\n1. not a step\n2. nor this\n```", "Then we run it."]


def test_crlf_and_lone_cr_line_endings() -> None:
    assert split_steps("1. **A**: x\r\n   - y\r\n2. **B**: z\r\n") == ["**A**: x\n   - y", "**B**: z"]
    assert split_steps("Step 1: a\rStep 2: b") == ["a", "b"]
    assert split_steps("p one\r\n\r\np two") == ["p one", "p two"]


def test_unicode_text() -> None:
    text = "前言：我们计算。\n1. **求和**：1 + 2 = 3。\n2. **结论** — α ≤ β, √4 = 2 ✓\n   • détail"
    assert split_steps(text) == ["前言：我们计算。", "**求和**：1 + 2 = 3。",
                                 "**结论** — α ≤ β, √4 = 2 ✓\n   • détail"]


def test_line_separators_other_than_newline_do_not_split() -> None:
    assert split_steps("1. a\u2028still a\n2. b") == ["a\u2028still a", "b"]


# ---------------------------------------------------------------------------------------------- headings


def test_headings_each_start_a_step_and_stay_in_it() -> None:
    text = "Intro line.\n# Setup\nLet x = 1.\n## Solve\nx + 1 = 2.\n#### Check\nOK."
    assert detect_step_style(text) == "headings"
    assert split_steps(text) == ["Intro line.", "# Setup\nLet x = 1.", "## Solve\nx + 1 = 2.", "#### Check\nOK."]


def test_a_heading_with_no_body_joins_the_next_step() -> None:
    text = "# Solution\n## Part 1\ntext one\n## Part 2\ntext two"
    assert split_steps(text) == ["# Solution\n## Part 1\ntext one", "## Part 2\ntext two"]


def test_comments_in_code_are_not_headings_and_need_two_headings() -> None:
    text = "## Only heading\nSome text.\n\n```\n# a comment\n\nprint(1)\n```"
    assert detect_step_style(text) == "paragraphs"
    assert split_steps(text) == ["## Only heading\nSome text.", "```\n# a comment\n\nprint(1)\n```"]


def test_hash_without_space_or_five_hashes_is_not_a_heading() -> None:
    assert detect_step_style("#hashtag one\ntext\n##### deep\ntext") == "paragraphs"


# ---------------------------------------------------------------------------------------------- paragraphs


def test_paragraph_fallback_splits_on_blank_lines() -> None:
    text = "\n\nFirst idea,\nstill first.\n \t\nSecond idea.\n\n\n\nThird.\n"
    assert detect_step_style(text) == "paragraphs"
    assert split_steps(text) == ["First idea,\nstill first.", "Second idea.", "Third."]


@pytest.mark.parametrize("text", ["", "   ", "\n\n\r\n"])
def test_blank_text_has_no_steps(text: str) -> None:
    assert split_steps(text) == []
    assert detect_step_style(text) == "paragraphs"


def test_styles_constant_lists_every_detected_style() -> None:
    assert set(STEP_STYLES) == {"numbered", "headings", "paragraphs"}


# ---------------------------------------------------------------------------------------------- properties

# Prose lines start with a letter that cannot begin a marker ("Step", digits, "#", "*"); the rest may hold
# anything, including digits, periods, brackets, markdown and non-ASCII text.
_FIRST = "abcdefghijklmnopqrtuvwxyzABCDEFGHIJKLMNOPQRTUVWXYZéαβ数学Ж"
_REST = _FIRST + "sS0123456789 .,:;()[]{}=+-*/^_\\$'\"?!#`|<>≤√ ✓"
prose_line = st.builds(
    lambda first, rest: (first + rest).rstrip(), st.sampled_from(_FIRST), st.text(alphabet=_REST, max_size=30)
)
# Lines that may follow a step's first line: prose, an indented bullet, or an indented numbered sub-item.
continuation_line = st.one_of(
    prose_line,
    prose_line.map(lambda s: "   - " + s),
    st.tuples(st.integers(1, 4), prose_line).map(lambda t: f"   {t[0]}. {t[1]}"),
    st.tuples(st.integers(1, 4), prose_line).map(lambda t: f"    {t[0]}) {t[1]}"),
)
step_body = st.tuples(prose_line, st.lists(continuation_line, max_size=3), st.sampled_from(["\n", "\n\n"])).map(
    lambda t: t[2].join([t[0], *t[1]])
)

NUMBERED_RENDERERS = {
    "dot": lambda n, body: f"{n}. {body}",
    "paren": lambda n, body: f"{n}) {body}",
    "step-colon": lambda n, body: f"Step {n}: {body}",
    "step-dot": lambda n, body: f"Step {n}. {body}",
    "bold": lambda n, body: f"**Step {n}**\n{body}",
    "bold-colon": lambda n, body: f"**Step {n}:** {body}",
    "bold-dot": lambda n, body: f"**Step {n}.** {body}",
    "heading": lambda n, body: f"### Step {n}\n{body}",
    "heading-colon": lambda n, body: f"## Step {n}: {body}",
}


def _title(k: int) -> str:
    return f"**Claim ¶{k}¶**: "  # ¶ never occurs in generated prose, so a title is easy to trace


@st.composite
def numbered_documents(draw):  # -> (style, preamble or None, steps)
    style = draw(st.sampled_from(sorted(NUMBERED_RENDERERS)))
    bodies = draw(st.lists(step_body, min_size=2, max_size=7))
    titled = draw(st.lists(st.booleans(), min_size=len(bodies), max_size=len(bodies)))
    steps = [(_title(k) if t else "") + body for k, (body, t) in enumerate(zip(bodies, titled))]
    preamble = draw(st.one_of(st.none(), prose_line))
    return style, preamble, steps


def _render(style: str, preamble: str | None, steps: list[str], sep: str) -> str:
    blocks = [NUMBERED_RENDERERS[style](n, step) for n, step in enumerate(steps, 1)]
    return sep.join(([preamble] if preamble else []) + blocks)


@settings(max_examples=150, deadline=None)
@given(numbered_documents(), st.sampled_from(["\n", "\n\n", "\r\n"]))
def test_numbered_round_trip(document, sep: str) -> None:
    style, preamble, steps = document
    text = _render(style, preamble, steps, sep)
    if sep == "\r\n":
        text = text.replace("\n", "\r\n")
    expected = ([preamble] if preamble else []) + steps
    assert split_steps(text) == expected
    assert detect_step_style(text) == "numbered"


@settings(max_examples=100, deadline=None)
@given(numbered_documents())
def test_titles_never_leave_their_step(document) -> None:
    style, preamble, steps = document
    got = split_steps(_render(style, preamble, steps, "\n\n"))
    offset = 1 if preamble else 0
    for k, step in enumerate(steps):
        if step.startswith("**Claim"):
            holders = [i for i, s in enumerate(got) if f"¶{k}¶" in s]
            assert holders == [k + offset]
            assert got[k + offset].startswith(_title(k).strip())


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(prose_line, st.lists(prose_line, max_size=3)), min_size=2, max_size=6))
def test_headings_round_trip(sections) -> None:
    steps = ["\n".join([f"## {title}", *body]) if body else f"## {title}\n{title}" for title, body in sections]
    assert split_steps("\n\n".join(steps)) == steps


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(prose_line, min_size=1, max_size=3).map("\n".join), min_size=1, max_size=6))
def test_paragraphs_round_trip(paragraphs) -> None:
    assert split_steps("\n\n".join(paragraphs)) == paragraphs


# Any text at all: marker-like pieces, code fences, headings, CRs, unicode.
_FUZZ_PIECES = st.sampled_from(
    ["1. ", "2. ", "3) ", "Step 1: ", "Step 2. ", "**Step 1:** ", "**Step 2: T**", "### Step 1", "## H", "# ",
     "**T**:", "```", "\n", "\n\n", "\r\n", "\r", "   ", "\t", "x", "word ", "1.5", "é数", "**", "-", "   1. "]
)
fuzz_text = st.one_of(st.lists(_FUZZ_PIECES, max_size=40).map("".join), st.text(max_size=200))
_ANY_MARKER = re.compile(
    r"(?:#{1,4}[ \t]+step[ \t]+[0-9]+(?:[ \t]*[:.)\-–—])?|\*\*step[ \t]+[0-9]+[ \t]*[:.]?[ \t]*\*\*(?:[ \t]*[:.])?"
    r"|\*\*step[ \t]+[0-9]+[ \t]*[:.\-–—]|step[ \t]+[0-9]+[ \t]*[:.]|[0-9]+[.)])(.*)",
    re.I,
)


def _no_space(s: str) -> str:
    return "".join(s.split())


def _is_subsequence(small: str, big: str) -> bool:
    it = iter(big)
    return all(ch in it for ch in small)


@settings(max_examples=300, deadline=None)
@given(fuzz_text)
def test_nothing_is_lost_and_no_step_is_empty(text: str) -> None:
    steps = split_steps(text)
    assert detect_step_style(text) in STEP_STYLES
    assert all(step and step == step.strip() for step in steps)
    joined = "\n".join(steps)
    # Order is kept and nothing is invented ...
    assert _is_subsequence(_no_space(joined), _no_space(text))
    # ... and every line survives, except for the step marker at its start.
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        content = line.strip()
        if not content or content in joined:
            continue
        marker = _ANY_MARKER.fullmatch(content)
        assert marker is not None, f"line {content!r} lost"
        assert marker[1].strip().removesuffix("**") in joined
