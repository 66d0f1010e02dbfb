"""Math answer reward: 1.0 when the completion's final answer equals the gold answer, judged by math-verify.

One definition of "the answer": :func:`_read_answer` runs math-verify's own ``parse`` (default extraction:
LaTeX first, ``\\boxed{...}`` with top priority, then "final answer is ..."; then plain expressions, where
"the answer is 12", "Answer: 12" and, failing any marker, the last number in the text are read).
:func:`extract_answer` reports the text it read and :func:`math_answer_reward` verifies what it parsed,
so the predictions file and the reward can never disagree.

Two rules of ours on top of math-verify:

* When the completion closes a think block, only the text after the last ``</think>`` is judged:
  the monologue is scratch work, and a guess boxed there is not the answer.
* The gold answer is parsed inside ``\\boxed{...}`` unless it already contains ``\\boxed`` or ``$``:
  datasets store bare answers, and bare LaTeX is otherwise misread (``2\\pi`` parses as ``2``).
  For plain numbers this changes nothing: ``parse("12") == parse("\\boxed{12}")``.

Timeouts: math-verify bounds parsing/verification with ``signal.alarm``, which only works in the main
thread (elsewhere it raises ValueError). We pass 5 s in the main thread and ``None`` (no timeout,
math-verify's documented opt-out) in any other thread, so the reward also works from thread pools.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

THINK_CLOSE = "</think>"
MAIN_THREAD_TIMEOUT_S = 5
_GOLD_CACHE_MAX = 4096
_gold_cache: dict[str, list[Any]] = {}


def _math_verify() -> tuple[Any, Any]:
    # Imported on first use: math-verify pulls in sympy (~1 s), which SRL-only users never need.
    from math_verify import parse, verify

    return parse, verify


def _timeout_s() -> int | None:
    """math-verify's signal-based timeout where it works (main thread), none elsewhere."""
    return MAIN_THREAD_TIMEOUT_S if threading.current_thread() is threading.main_thread() else None


@dataclass(frozen=True)
class _ReadAnswer:
    parsed: list[Any]  # math-verify's parse() result: [sympy object, matched text] or []
    text: str | None  # the answer text as written in the completion


def _judged_text(completion: str) -> str:
    _, separator, tail = completion.rpartition(THINK_CLOSE)
    return tail if separator else completion


def _read_answer(completion: str) -> _ReadAnswer:
    parse, _ = _math_verify()
    parsed = parse(_judged_text(completion), parsing_timeout=_timeout_s())
    if not parsed:
        return _ReadAnswer([], None)
    # With math-verify's default fallback the last item is the matched string; otherwise print the object.
    text = next((item for item in reversed(parsed) if isinstance(item, str)), str(parsed[0]))
    return _ReadAnswer(list(parsed), text)


def _gold_text(answer: str) -> str:
    answer = answer.strip()
    if "\\boxed" in answer or "$" in answer:
        return answer
    return "\\boxed{" + answer + "}"


def _parse_gold(answer: str) -> list[Any]:
    """Parsed gold answer, cached: a GRPO group scores many completions against one gold answer."""
    cached = _gold_cache.get(answer)
    if cached is not None:
        return cached
    parse, _ = _math_verify()
    parsed = list(parse(_gold_text(answer), parsing_timeout=_timeout_s()))
    if parsed:  # don't pin a timed-out parse forever
        if len(_gold_cache) >= _GOLD_CACHE_MAX:
            _gold_cache.clear()
        _gold_cache[answer] = parsed
    return parsed


def extract_answer(completion: str) -> str | None:
    """The answer text :func:`math_answer_reward` judges, or ``None`` when it finds none.

    >>> extract_answer("We add them, so the total is \\\\boxed{\\\\frac{1}{2}}.")
    '\\\\frac{1}{2}'
    >>> extract_answer("The answer is 12")
    '12'
    >>> extract_answer("<think>maybe \\\\boxed{5}</think>So she has 12 apples.")
    '12'
    >>> extract_answer("no idea") is None
    True
    """
    return _read_answer(completion).text


def math_answer_reward(completion: str, answer: str) -> float:
    """1.0 if the completion's answer is mathematically equal to ``answer`` (math-verify), else 0.0.

    Equals ``float(verify(parse(answer), parse(completion)))`` wherever the completion's answer is in
    ``\\boxed{}`` and carries no think block (see the module docstring for the two extra rules).
    Argument order matters to math-verify: ``verify(gold, prediction)``.

    >>> math_answer_reward("so the answer is \\\\boxed{24/2}", "12")
    1.0
    >>> math_answer_reward("Answer: 0.5", "\\\\frac{1}{2}")
    1.0
    >>> math_answer_reward("She had 5 apples and bought 7, so she has 12 apples.", "12")
    1.0
    >>> math_answer_reward("\\\\boxed{13}", "12")
    0.0
    """
    read = _read_answer(completion)
    if not read.parsed:
        return 0.0
    gold = _parse_gold(answer)
    if not gold:
        return 0.0
    _, verify = _math_verify()
    return 1.0 if verify(gold, read.parsed, timeout_seconds=_timeout_s()) else 0.0
