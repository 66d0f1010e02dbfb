r"""s1K-1.1-style rows (the Hugging Face dataset simplescaling/s1K-1.1, exported to JSONL).

Each row has the columns ``solution`` (reference solution), ``question``, ``cot_type``, ``source_type``,
``metadata`` (a string), ``gemini_thinking_trajectory``, ``gemini_attempt``, ``deepseek_thinking_trajectory``,
``deepseek_attempt``, ``gemini_grade``, ``gemini_grade_reason``, ``deepseek_grade``, ``deepseek_grade_reason``.

The expert trajectory is one text column (by default ``deepseek_attempt``, as in the SRL paper); it becomes
the Trajectory's ``solution`` and is split into steps later by :func:`srl_rlvr.data.steps.split_steps`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from srl_rlvr.data.loaders.jsonl import LoadResult, load_jsonl, required_text
from srl_rlvr.data.schema import Trajectory, validate_trajectory
from srl_rlvr.errors import InvalidRecord, UserInputError

S1K_SOURCES = ("deepseek_attempt", "solution", "gemini_attempt")
_BOXED = re.compile(r"\\boxed\s*\{")


def _balanced_group(text: str, start: int) -> str | None:
    """The text from ``start`` up to the brace closing an already-open ``{``; None if it never closes."""
    depth, i = 1, start
    while i < len(text):
        ch = text[i]
        if ch == "\\":  # \{ and \} are literal braces, not grouping
            i += 2
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return text[start:i]
        i += 1
    return None


def last_boxed(text: str) -> str | None:
    r"""The content of the last non-empty, closed ``\boxed{...}`` in ``text`` (nested braces kept), else None.

    >>> last_boxed(r"First \boxed{2}, then \(\boxed{\frac{1}{2}}\).")
    '\\frac{1}{2}'
    >>> last_boxed("no box here") is None
    True
    """
    for m in reversed(list(_BOXED.finditer(text))):
        content = _balanced_group(text, m.end())
        if content is not None and content.strip():
            return content.strip()
    return None


def _row_id(row: dict[str, Any], path: str, line: int) -> str:
    if "id" not in row:
        return f"s1k-{line}"
    value = row["id"]
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InvalidRecord(path, line, "id", f"expected a string, got {type(value).__name__}")
    return str(value)


def s1k_row_to_trajectory(row: Any, path: str, line: int, source: str = "deepseek_attempt") -> Trajectory:
    """Turn one decoded s1K row into a Trajectory; raise InvalidRecord naming ``path:line`` and the column."""
    if not isinstance(row, dict):
        raise InvalidRecord(path, line, "<row>", f"expected a JSON object, got {type(row).__name__}")
    question = required_text(row, "question", path, line)
    text = required_text(row, source, path, line)
    reference = row.get("solution")
    answer = last_boxed(text)
    if answer is None and isinstance(reference, str):
        answer = last_boxed(reference)

    record = {k: v for k, v in row.items() if k not in ("id", "question", source)}
    if "solution" in record:  # the reference solution; `solution` now holds the chosen expert text
        record["reference_solution"] = record.pop("solution")
    record.update(
        id=_row_id(row, path, line),
        problem=question,
        solution=text,
        answer=answer,
        domain="math",
        s1k_source=source,
    )
    return validate_trajectory(record, path, line)


def load_s1k(
    path: str | Path, source: str = "deepseek_attempt", skip_invalid: bool = False
) -> LoadResult[Trajectory]:
    """Load s1K-1.1-style JSONL; the expert text comes from column ``source``.

    ``id`` is the row's ``id`` column or ``s1k-<line>``; ``answer`` is the last ``\\boxed{}`` in the chosen
    text, else in the reference ``solution``, else None. Other columns are kept as metadata; the reference
    solution is kept as ``reference_solution`` and the chosen column's name as ``s1k_source``.
    """
    if source not in S1K_SOURCES:
        raise UserInputError(f"unknown s1K source column {source!r}; choose one of: {', '.join(S1K_SOURCES)}")
    return load_jsonl(
        path, lambda row, p, line: s1k_row_to_trajectory(row, p, line, source), skip_invalid=skip_invalid
    )
