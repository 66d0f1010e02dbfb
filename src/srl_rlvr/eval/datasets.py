"""Eval data: load problems with answers from any source, and set aside the ones the scorer cannot judge.

    srl-rlvr eval --model smollm2-135m --data champ --out out/eval_champ

``source`` is a trajectory JSONL file, any format the loader registry reads (``--format``), or
``champ`` (the problems shipped in the champ-dataset package). A row without an answer is an error
(the file is wrong); a row whose answer exists but cannot be judged by
:func:`srl_rlvr.rewards.math.math_answer_reward` is skipped, counted and listed, never dropped silently.
CHAMP is the case this is for: about a third of its answers are prose ("No integer solutions",
"0 is the only possible value") that math-verify reads as a product of single-letter symbols, so
no completion could ever be scored right on them.

An answer is judged unscorable when:

* it holds a word: a run of 3+ letters that is not a math function name (``sqrt``, ``floor``, ...;
  LaTeX commands such as ``\\frac`` are ignored), or a 2-letter English connective (``or``, ``no``, ...);
* or math-verify cannot turn it into a math object (it falls back to the raw string, e.g. ``x(x-1)...``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from srl_rlvr.data.schema import Trajectory
from srl_rlvr.errors import UserInputError

# Function names math-verify/sympy read as functions, not as products of letters.
MATH_WORDS = frozenset({"sqrt", "floor", "ceil", "log", "ln", "exp", "sin", "cos", "tan", "cot", "sec", "csc",
                        "arcsin", "arccos", "arctan", "pi", "mod", "gcd", "lcm", "max", "min", "inf", "infty"})
# Short English words that only ever appear in prose answers ("x=1 or x=2", "No").
PROSE_SHORT_WORDS = frozenset({"no", "or", "is", "as", "if", "of", "to", "at", "an", "by", "be", "it", "so", "in",
                               "on", "ie", "eg"})
_LATEX_COMMAND = re.compile(r"\\[A-Za-z]+")
_LETTERS = re.compile(r"[A-Za-z]+")


def unscorable_reason(answer: str | None) -> str | None:
    """Why ``answer`` cannot be judged by the math scorer, or None when it can.

    >>> unscorable_reason("2^(n-1)") is None and unscorable_reason("\\\\frac{1}{2}") is None
    True
    >>> unscorable_reason("Infinitely many solutions")
    "prose answer (word 'Infinitely'): the math scorer would read it as a product of letters"
    >>> unscorable_reason("x(x-1)(x-2)...(x-2022)")
    'math-verify cannot parse it into a math expression'
    """
    if answer is None or not answer.strip():
        return "no answer"
    bare = _LATEX_COMMAND.sub(" ", answer)
    for word in _LETTERS.findall(bare):
        lower = word.lower()
        if (len(word) >= 3 and lower not in MATH_WORDS) or lower in PROSE_SHORT_WORDS:
            return f"prose answer (word {word!r}): the math scorer would read it as a product of letters"
    from srl_rlvr.rewards.math import parse_gold  # the scorer's own reading of a gold answer

    parsed = parse_gold(answer)
    if not parsed or isinstance(parsed[0], str):
        return "math-verify cannot parse it into a math expression"
    return None


@dataclass
class EvalItems:
    """The problems to evaluate, and those set aside with the reason."""

    source: str
    rows: list[Trajectory]
    skipped: list[dict[str, Any]] = field(default_factory=list)  # {"id", "answer", "reason"}
    total: int = 0  # rows read (before ``limit``)

    def summary(self, with_source: bool = True) -> str:
        """One line for the console, e.g. ``champ: skipped 143 of 270 problems whose answer ... ; evaluating 127``."""
        prefix = f"{self.source}: " if with_source else ""
        if not self.skipped:
            return f"{prefix}{len(self.rows)} problems"
        counts: dict[str, int] = {}
        for row in self.skipped:
            key = row["reason"].split(" (")[0].split(":")[0]
            counts[key] = counts.get(key, 0) + 1
        why = ", ".join(f"{k}: {v}" for k, v in counts.items())
        return (f"{prefix}skipped {len(self.skipped)} of {self.total} problems whose answer the math "
                f"scorer cannot judge ({why}); evaluating {len(self.rows)}")


def split_scorable(rows: Sequence[Trajectory], source: str) -> EvalItems:
    """Rows with a judgeable answer, and the rest with reasons; a row with no answer at all is an error."""
    missing = next((t for t in rows if t.answer is None or not t.answer.strip()), None)
    if missing is not None:
        raise UserInputError(f"{source}: item {missing.id!r} has no 'answer', so it cannot be scored")
    items = EvalItems(source=source, rows=[], total=len(rows))
    for t in rows:
        reason = unscorable_reason(t.answer)
        if reason is None:
            items.rows.append(t)
        else:
            items.skipped.append({"id": t.id, "answer": t.answer, "reason": reason})
    return items


def load_eval_items(source: str, fmt: str = "auto", limit: int | None = None) -> EvalItems:
    """Load ``source`` (a file or ``champ``), keep the scorable problems, then the first ``limit`` of them."""
    from srl_rlvr.data.loaders.registry import load_source

    rows = load_source(source, fmt=fmt).rows
    if not rows:
        raise UserInputError(f"{source}: no problems to evaluate")
    items = split_scorable(rows, source)
    if not items.rows:
        raise UserInputError(f"{source}: none of the {items.total} problems has an answer the math scorer can judge")
    items.rows = items.rows[:limit]
    return items
