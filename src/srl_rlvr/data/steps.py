r"""Split an expert solution written as free text into steps.

Three styles are tried in order; the first that applies wins:

1. **numbered** - lines that begin with a step marker (``1.``, ``1)``, ``Step 1:``, ``**Step 1:**``,
   ``### Step 1``, ``1. **Title**: ...``). The markers must count 1, 2, 3, ... (at least two of them), so a
   stray ``3.`` in prose or an indented sub-list does not start a step.
2. **headings** - two or more markdown headings (``#`` to ``####``); each heading starts a step.
3. **paragraphs** - split on blank lines.

Markers are removed; a step's title (``**Identify the constraint**:``, a heading) stays at the start of
the step it titles. See :func:`split_steps` for the exact rules.

>>> split_steps("We count in two steps.\n1. **Pairs**: there are 3.\n2. **Total**: so 2 * 3 = 6.")
['We count in two steps.', '**Pairs**: there are 3.', '**Total**: so 2 * 3 = 6.']
>>> detect_step_style("## Setup\nLet x = 1.\n## Solve\nx + 1 = 2.")
'headings'
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

STEP_STYLES = ("numbered", "headings", "paragraphs")

# Marker patterns match a line with its indentation removed. Group 1 is the step number, group 2 the rest
# of the line (kept: it is the step's title or first sentence). The lookaheads stop "1.5" or "Step 1 is"
# from counting as markers.
_NUM = r"([0-9]+)"
_HEADING_STEP = re.compile(r"#{1,4}[ \t]+step[ \t]+" + _NUM + r"(?:[ \t]*[:.)\-–—])?(?=\s|$)[ \t]*(.*)", re.I)
_BOLD_STEP = re.compile(r"\*\*step[ \t]+" + _NUM + r"[ \t]*[:.]?[ \t]*\*\*(?:[ \t]*[:.])?(?=\s|$)[ \t]*(.*)", re.I)
# "**Step 1: Compute the sum**": the title sits inside the bold; it is kept, re-wrapped as "**Compute the sum**".
_BOLD_STEP_TITLED = re.compile(r"\*\*step[ \t]+" + _NUM + r"[ \t]*[:.\-–—][ \t]*(?=[^*\s])(.*)", re.I)
_STEP_WORD = re.compile(r"step[ \t]+" + _NUM + r"[ \t]*[:.](?=\s|$)[ \t]*(.*)", re.I)
_DOT = re.compile(_NUM + r"\.(?=\s|$)[ \t]*(.*)")
_PAREN = re.compile(_NUM + r"\)(?=\s|$)[ \t]*(.*)")

_HEADING = re.compile(r"#{1,4}[ \t]+\S")
# A line that titles what follows: a heading, or bold text ending in a colon ("**Case 2:**", "**Case 2**:").
_TITLE_LINE = re.compile(r"(?:#{1,4}[ \t]+\S.*|\*\*[^*]+:\*\*|\*\*[^*]+\*\*[ \t]*:)[ \t]*")
_FENCE = re.compile(r"[ \t]*(```|~~~)")


@dataclass(frozen=True)
class _Marker:
    line: int  # index of the marker's line
    number: int
    indent: int  # width of the line's indentation (tabs = 4)
    rest: str  # the line after the marker


def _match_heading_step(line: str) -> tuple[int, str] | None:
    m = _HEADING_STEP.fullmatch(line)
    return (int(m[1]), m[2]) if m else None


def _match_bold_step(line: str) -> tuple[int, str] | None:
    m = _BOLD_STEP.fullmatch(line)
    if m:
        return int(m[1]), m[2]
    m = _BOLD_STEP_TITLED.fullmatch(line)
    return (int(m[1]), "**" + m[2]) if m else None


def _match_step_word(line: str) -> tuple[int, str] | None:
    m = _STEP_WORD.fullmatch(line)
    return (int(m[1]), m[2]) if m else None


def _match_dot(line: str) -> tuple[int, str] | None:
    m = _DOT.fullmatch(line)
    return (int(m[1]), m[2]) if m else None


def _match_paren(line: str) -> tuple[int, str] | None:
    m = _PAREN.fullmatch(line)
    return (int(m[1]), m[2]) if m else None


# Marker families, most explicit first. When two families both count 1, 2, ... at the same indentation,
# the more explicit one wins, so "**Step 1:** ... 1. case a / 2. case b" splits on the Step markers and keeps
# the plain list inside a step.
_FAMILIES: tuple[Callable[[str], tuple[int, str] | None], ...] = (
    _match_heading_step,
    _match_bold_step,
    _match_step_word,
    _match_dot,
    _match_paren,
)


def _lines(text: str) -> list[str]:
    # Split on newlines only: str.splitlines() would also split on \x0b, \u2028, ... inside a step.
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def _in_code_block(lines: list[str]) -> list[bool]:
    """For each line, whether it is in (or opens/closes) a fenced code block: ``# comment`` there is no heading."""
    flags, fence = [], None
    for line in lines:
        m = _FENCE.match(line)
        if fence is None and m:
            fence = m[1]
            flags.append(True)
        elif fence is not None:
            flags.append(True)
            if m and m[1] == fence:
                fence = None
        else:
            flags.append(False)
    return flags


def _indent(line: str) -> int:
    expanded = line.expandtabs(4)
    return len(expanded) - len(expanded.lstrip(" "))


def _counting_run(markers: list[_Marker]) -> list[_Marker]:
    """Markers numbered 1, 2, 3, ... in reading order; a marker with any other number is skipped (stays text)."""
    run: list[_Marker] = []
    for m in markers:
        if m.number == len(run) + 1:
            run.append(m)
    return run


def _dot_run(markers: list[_Marker]) -> list[_Marker]:
    """The run for ``N.`` markers, where DeepSeek-style ``N. **Title**`` steps may hold an unindented list.

    The titled markers alone are used when counting all ``N.`` markers would skip one of them (a sub-list
    took its number). Otherwise all are used, so untitled steps between or after titled ones still count;
    but untitled markers after the last titled one are dropped when some ``N.`` marker among them was
    skipped, since that is a list inside the last titled step.
    """
    full = _counting_run(markers)
    titled = _counting_run([m for m in markers if m.rest.startswith("**")])
    if len(titled) < 2:
        return full
    if not {m.line for m in titled} <= {m.line for m in full}:
        return titled
    last_titled = max(k for k, m in enumerate(full) if m.rest.startswith("**"))
    in_run = {m.line for m in full}
    tail_start, tail_end = full[last_titled].line, full[-1].line
    if any(tail_start < m.line < tail_end and m.line not in in_run for m in markers):
        return full[: last_titled + 1]
    return full


def _numbered_run(lines: list[str], code: list[bool]) -> list[_Marker] | None:
    """The markers that start steps, or None when no family counts 1, 2, ... at least twice."""
    best: tuple[int, int, list[_Marker]] | None = None
    for rank, match in enumerate(_FAMILIES):
        markers = []
        for i, line in enumerate(lines):
            if code[i]:
                continue
            found = match(line.lstrip(" \t"))
            if found:
                markers.append(_Marker(i, found[0], _indent(line), found[1]))
        if not markers:
            continue
        # Only the family's shallowest markers count: deeper ones are sub-lists inside a step.
        top = min(m.indent for m in markers)
        shallow = [m for m in markers if m.indent == top]
        run = _dot_run(shallow) if match is _match_dot else _counting_run(shallow)
        # The least-indented family wins (a "1)" list with indented "1." sub-lists splits on "1)").
        if len(run) >= 2 and (best is None or (top, rank) < best[:2]):
            best = (top, rank, run)
    return best[2] if best else None


def _title_start(lines: list[str], code: list[bool], marker_line: int, floor: int) -> int:
    """Where the step starting at ``marker_line`` really starts: title lines just above it belong to it."""
    start, j = marker_line, marker_line - 1
    while j > floor:
        if not lines[j].strip():
            j -= 1
            continue
        if code[j] or not _TITLE_LINE.fullmatch(lines[j]):
            break
        start = j
        j -= 1
    return start


def _cut_numbered(lines: list[str], code: list[bool], run: list[_Marker]) -> list[str]:
    starts = [run[0].line]
    for k in range(1, len(run)):
        starts.append(_title_start(lines, code, run[k].line, run[k - 1].line))
    chunks = ["\n".join(lines[: starts[0]])]  # the preamble
    for k, marker in enumerate(run):
        end = starts[k + 1] if k + 1 < len(run) else len(lines)
        titles = lines[starts[k] : marker.line]
        chunks.append("\n".join([*titles, marker.rest, *lines[marker.line + 1 : end]]))
    return chunks


def _heading_lines(lines: list[str], code: list[bool]) -> list[int]:
    return [i for i, line in enumerate(lines) if not code[i] and _HEADING.match(line)]


def _cut_headings(lines: list[str], heads: list[int]) -> list[str]:
    chunks = ["\n".join(lines[: heads[0]])]
    pending = ""  # a heading with no body of its own titles the next section (never left on its own)
    for k, start in enumerate(heads):
        end = heads[k + 1] if k + 1 < len(heads) else len(lines)
        section = "\n".join(lines[start:end]).strip()
        if "\n" not in section and k + 1 < len(heads):
            pending += section + "\n"
            continue
        chunks.append(pending + section)
        pending = ""
    return chunks


def _cut_paragraphs(lines: list[str], code: list[bool]) -> list[str]:
    chunks, current = [], []
    for i, line in enumerate(lines):
        if not line.strip() and not code[i]:
            chunks.append("\n".join(current))
            current = []
        else:
            current.append(line)
    chunks.append("\n".join(current))
    return chunks


def _strip_lone_first_marker(lines: list[str], code: list[bool]) -> list[str]:
    """A one-step numbered solution ("Step 1: ..." and nothing after): drop the marker, keep the text."""
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is None or code[first]:
        return lines
    for match in _FAMILIES:
        found = match(lines[first].lstrip(" \t"))
        if found and found[0] == 1:
            return [*lines[:first], found[1], *lines[first + 1 :]]
    return lines


def _split(text: str) -> tuple[str, list[str]]:
    lines = _lines(text)
    code = _in_code_block(lines)
    run = _numbered_run(lines, code)
    if run is None:
        lines = _strip_lone_first_marker(lines, code)
    if run is not None:
        style, chunks = "numbered", _cut_numbered(lines, code, run)
    elif len(heads := _heading_lines(lines, code)) >= 2:
        style, chunks = "headings", _cut_headings(lines, heads)
    else:
        style, chunks = "paragraphs", _cut_paragraphs(lines, code)
    return style, [c.strip() for c in chunks if c.strip()]


def split_steps(text: str) -> list[str]:
    r"""Split a free-text expert solution into its steps, in order.

    Rules (the first style that applies wins):

    * numbered: a marker starts a line (after any indentation) and is one of: ``#``-``####`` ``Step 1``
      (optionally followed by ``:``, ``.``, ``)``, ``-``); ``**Step 1**``, ``**Step 1:**``, ``**Step 1.**``
      (optionally followed by ``:``) or ``**Step 1: Title**``; ``Step 1:`` / ``Step 1.``; ``1.``; ``1)``.
      Each kind is a family. Within a family only its least-indented markers count, and a marker starts a
      step only if its number is the next one expected (1, then 2, ...); any other marker stays in the
      text. A family needs two or more such steps. Of the families that have them, the least indented
      wins, then the more explicit (in the order listed). For ``1.`` markers, those followed by a bold
      title (``1. **Title**: ...``) are counted alone when counting all ``1.`` markers would skip one of
      them; and untitled ``N.`` markers after the last titled one stay in the last step when a ``1.``-style
      marker among them was skipped (an unindented list). Lines inside fenced code blocks are never markers.
      If no family qualifies but the first non-blank line starts with a marker numbered 1 (a one-step
      solution), that marker is removed and the text goes on to the next rules.
    * headings: two or more lines that start with ``#``-``####`` and a space; each starts a step and is
      kept in it. A heading with no text under it joins the step that follows.
    * paragraphs: split on blank lines (not inside fenced code blocks).

    The marker itself (``1.``, ``Step 1:``, ``**Step 1:**``, ``### Step 1:``) is removed; the rest of its line
    (the title, e.g. ``**Identify the constraint**:``) starts the step. A heading line or a bold line ending
    in a colon directly above a marker (blank lines allowed) belongs to that marker's step, not the one
    before. Text before the first marker is its own first step; text after the last marker stays in the
    last step. Steps are whitespace-stripped and empty ones dropped. ``\r\n`` and ``\r`` count as newlines.

    >>> split_steps("Step 1: Let n = 3.\nStep 2: Then n + 1 = 4.\nSo the answer is 4.")
    ['Let n = 3.', 'Then n + 1 = 4.\nSo the answer is 4.']
    >>> split_steps("1. Count.\n   1. odd ones\n   2. even ones\n2. Add.")
    ['Count.\n   1. odd ones\n   2. even ones', 'Add.']
    """
    return _split(text)[1]


def detect_step_style(text: str) -> str:
    """Which rule :func:`split_steps` uses for ``text``: "numbered", "headings" or "paragraphs".

    >>> detect_step_style("First idea.\\n\\nSecond idea.")
    'paragraphs'
    """
    return _split(text)[0]
