"""Math answer reward: 1.0 when the completion's final answer equals the gold answer, judged by math-verify.

One definition of "the answer": :func:`_read_answer` runs math-verify's own ``parse`` (default extraction:
LaTeX first, ``\\boxed{...}`` with top priority, then "final answer is ..."; then plain expressions, where
"the answer is 12", "Answer: 12" and, failing any marker, the last number in the text are read) on the
completion's committed text (below). :func:`extract_answer` reports the text it read and
:func:`math_answer_reward` verifies what it parsed, so the predictions file and the reward can never disagree.

Three rules of ours on top of math-verify:

* When the completion closes a think block, only the text after the last ``</think>`` is judged:
  the monologue is scratch work, and a guess boxed there is not the answer.
* The answer is the value the model states, never an expression beside it. math-verify alone reads
  "The final answer is 29 + 27 + 12 = 54." as ``29 + 27 + 12``, so gold 68 scored a wrong total as right
  and RLVR rewarded the right sum with any result. Before parsing, :func:`_committed_text` rewrites the
  judged text to what the model committed to. A *member* here is plain arithmetic: numbers (``1,000``,
  ``-3``, ``0.5``, ``20%``), numeric ``\\frac{}{}``, ``+ - * / × ÷ ^ \\times \\cdot \\div`` and
  parentheses, bare or in ``\\boxed{}``, ``$...$``, ``\\(...\\)``, ``\\[...\\]`` or ``**...**``; no
  variables, no functions.

  - A chain of members joined by ``=`` (or ``→``, ``=>``, ``\\to``, ``\\Rightarrow``, ``\\implies``; ``≈``,
    ``\\approx`` for "about") becomes its most evaluated member, the last of those: a plain number, else a
    lone fraction, else the last member. ``29 + 27 + 12 = 54`` -> ``54``, ``\\boxed{3+4=7}`` ->
    ``\\boxed{7}``, ``\\boxed{29+27+12} = 54`` -> ``\\boxed{54}``, and also ``54 = 29 + 27 + 12`` -> ``54``
    (what follows the number is its working: reading it would credit a wrong number for the expression
    after it). ``\\frac{4}{6} = \\frac{1}{2}+\\frac{1}{3}`` -> ``\\frac{4}{6}``. An approximation counts
    only where no exact value is stated (``22/7 \\approx 3.14`` -> ``22/7``, ``29 + 27 + 12 ≈ 54`` -> ``54``).
    Around a variable only the numeric part goes: ``x = 3 + 4 = 7`` -> ``x = 7``; ``x + 3 = 7`` stays.
  - A member with another in parentheses becomes the more evaluated one, else the outer one:
    ``54 (29 + 27 + 12)`` and ``29 + 27 + 12 (= 54)`` -> ``54`` (``5 + 2 (3 + 4)`` is a product and stays).
  - An expression that has a number after it on its line (``29 + 27 + 12 which is 54``, ``...12. That
    makes 54``), or a number between it and an "answer" before it on its line (``the answer is 54, i.e.
    $29 + 27 + 12$``), is dropped: the number is what was stated.

  So an expression is an answer only when nothing is stated after it: ``The answer is 29 + 27 + 12.`` is
  judged by its value, 68, as math-verify does (and ``\\boxed{24/2}`` is 12). We keep that on purpose: an
  unevaluated answer is mathematically right, and a task that needs the value itself can refuse
  expressions (the cascade verifier in ``srl_rlvr.routing.cascade`` does). LaTeX values
  (``\\frac{1}{2}``, ``2\\pi``, ``\\sqrt{2}``, ``0.5``) are math-verify's to read, unchanged.
* The gold answer is parsed inside ``\\boxed{...}`` unless it already contains ``\\boxed`` or ``$``:
  datasets store bare answers, and bare LaTeX is otherwise misread (``2\\pi`` parses as ``2``).
  For plain numbers this changes nothing: ``parse("12") == parse("\\boxed{12}")``. Gold answers are
  never rewritten.

Timeouts: math-verify bounds parsing/verification with ``signal.alarm``, which only works in the main
thread (elsewhere it raises ValueError). We pass 5 s in the main thread and ``None`` (no timeout,
math-verify's documented opt-out) in any other thread, so the reward also works from thread pools.
The rewriting is regex work on local values (thread-safe; bounded repetitions keep it linear in the
text, so it needs no timeout).
"""

from __future__ import annotations

import bisect
import re
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


# --- The committed text: what math-verify is shown, so that it can only read the value the model stated ---

_S = r"[ \t]*"
_OP = r"(?:[-+*/×÷·^]|\\(?:times|cdot|div)(?![A-Za-z]))"
_NUMBER = r"(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?|\.\d+"
_PERCENT = rf"(?:{_S}\\?%)?"
_FRACTION = (
    rf"\\[dt]?frac{_S}\{{{_S}-?(?:{_NUMBER}){_S}\}}{_S}\{{{_S}-?(?:{_NUMBER}){_S}\}}"
    r"|\\[dt]?frac\d\d(?!\d)"  # \frac12
)
# Parenthesis runs are capped, so that no search is quadratic.
_OPEN_PARENS = rf"(?:\({_S}){{0,8}}"
_CLOSE_PARENS = rf"(?:{_S}\)){{0,8}}"
_SIMPLE_TERM = rf"{_OPEN_PARENS}-?(?:{_FRACTION}|(?:{_NUMBER}){_PERCENT}){_CLOSE_PARENS}"
_SIMPLE_MEMBER = rf"{_SIMPLE_TERM}(?:{_S}{_OP}{_S}{_SIMPLE_TERM}|(?=\(){_SIMPLE_TERM})*"
_COMPOUND_FRACTION = rf"\\[dt]?frac{_S}\{{{_S}{_SIMPLE_MEMBER}{_S}\}}{_S}\{{{_S}{_SIMPLE_MEMBER}{_S}\}}"
_TERM = rf"{_OPEN_PARENS}-?(?:{_FRACTION}|{_COMPOUND_FRACTION}|(?:{_NUMBER}){_PERCENT}){_CLOSE_PARENS}"
# A member: numbers and numeric fractions joined by operators, with parentheses; no variables, no functions.
_MEMBER = rf"{_TERM}(?:{_S}{_OP}{_S}{_TERM}|(?=\(){_TERM})*"
# A member as written: bare or wrapped. A wrapper may also open before an earlier member or close after a
# later one, as in "\boxed{3 + 4 = 7}" (lone_open on the first member, lone_close on the last).
_WRITTEN_MEMBER = re.compile(
    rf"(?P<open>\\boxed{_S}\{{{_S}|(?<!\\)\${_S}|\\\({_S}|\\\[{_S}|\*\*)?(?P<member>{_MEMBER})"
    rf"(?P<close>{_S}\}}|{_S}\$|{_S}\\\)|{_S}\\\]|\*\*)?"
)
_CLOSE_OF = {"\\boxed{": "}", "$": "$", "\\(": "\\)", "\\[": "\\]", "**": "**"}
# What joins the members of a chain: "=" (not "==" or "=>"), the usual ways of writing "gives", and "about".
_RELATION = re.compile(
    r"\s*(?:=(?![=>])|=>|->|→|⟶|⇒|\\(?:to|rightarrow|Rightarrow|longrightarrow|implies)(?![A-Za-z])"
    r"|(?P<about>≈|≃|\\(?:approx|simeq)(?![A-Za-z])))\s*"
)
# "54 (29 + 27 + 12)", "29 + 27 + 12 (= 54)": after a member, its value or its working in parentheses.
_ASIDE = re.compile(rf"[ \t]+\({_S}(?:(?:[=:≈]|\\approx(?![A-Za-z])){_S})?(?P<inside>{_MEMBER}){_S}\)")
_PLAIN_NUMBER = re.compile(rf"\(*-?(?:{_NUMBER}){_PERCENT}\)*")
_LONE_FRACTION = re.compile(rf"\(*-?(?:{_FRACTION}|(?:{_NUMBER}){_S}/{_S}(?:{_NUMBER}))\)*")
# Before a member: glued to a word, a decimal or LaTeX, or after an operator, it is only the tail of a longer
# expression ("x + 3 = 7", "2^{10} = 1024"). "**" is markdown bold, not an operator.
_BAD_BEFORE = re.compile(r"(?:[\w.\\^_{]|(?:[-+/×÷·^%]|(?<!\*)\*)\s*|\\(?:times|cdot|div)\s*)\Z")
_OPERAND_BEFORE = re.compile(r"(?:[\d)}\]]|(?<![A-Za-z])[A-Za-z])\s*\Z")  # then a leading "-" is binary
_FACTOR_BEFORE = re.compile(r"[\d)]\s*\Z")  # then a leading "(" multiplies: "2 (3 + 4)"
_NEXT = re.compile(r"([ \t]*)(\\[A-Za-z]+|\\.|.)?", re.DOTALL)
_HARMLESS_AFTER = frozenset(["\\text", "\\textbf", "\\mathrm", "\\mbox", "\\quad", "\\qquad", "\\,", "\\;",
                             "\\!", "\\ ", "\\\\", "\\)", "\\]", "\\$"])
_BOXED_OPEN = re.compile(r"\\boxed\s*\Z")
_ANSWER_WORD = re.compile(r"answer", re.IGNORECASE)
_STANDALONE_NUMBER = re.compile(r"(?<![\w.\\^_{])\d")  # not in a word, a decimal, a LaTeX argument or a power


@dataclass(frozen=True)
class _Written:
    """A member as written: ``start``/``end`` span its wrappers too, ``text`` is the arithmetic alone."""

    start: int
    end: int
    text: str
    text_start: int
    text_end: int
    open: str | None  # "\\boxed{", "$", "\\(", "\\[" or "**", whitespace removed
    close: str | None

    @property
    def paired(self) -> bool:
        return self.open is not None and _CLOSE_OF[self.open] == self.close

    @property
    def lone_open(self) -> str | None:
        return None if self.paired else self.open

    @property
    def lone_close(self) -> str | None:
        return None if self.paired else self.close


def _written(match: re.Match[str]) -> _Written:
    open_, close = match.group("open"), match.group("close")
    return _Written(match.start(), match.end(), match.group("member"), match.start("member"),
                    match.end("member"), re.sub(r"\s", "", open_) if open_ else None,
                    close.strip() if close else None)


def _balanced(text: str) -> bool:
    return text.count("(") == text.count(")")


def _rank(member: str) -> int:
    """How far evaluated a member is: a plain number 2, a lone fraction 1, an expression 0."""
    if _PLAIN_NUMBER.fullmatch(member):
        return 2
    return 1 if _LONE_FRACTION.fullmatch(member) else 0


def _bad_before(text: str, member: _Written) -> bool:
    """Whether ``member`` only continues an expression begun before it (``x + 3``, ``2^{10}``, ``2 (3)``)."""
    head = text[max(0, member.text_start - 16):member.text_start]
    return bool(
        _BAD_BEFORE.search(head)
        or (member.text.startswith("-") and _OPERAND_BEFORE.search(head))
        or (member.text.startswith("(") and _FACTOR_BEFORE.search(head))
    )


def _bad_after(text: str, index: int) -> bool:
    """Whether the expression goes on past ``index`` (``7x``, ``7 + y``, ``7\\pi``, ``3!``)."""
    match = _NEXT.match(text, index)
    assert match is not None  # every group is optional
    gap, following = match.group(1), match.group(2)
    if not following:
        return False
    if following.startswith("\\"):
        return following not in _HARMLESS_AFTER
    if following in "+-*/×÷·^!":
        return not text.startswith("**", match.start(2))  # markdown bold is no operator
    return not gap and (following.isalnum() or following in "_{(")


def _boxed_before(text: str, index: int) -> bool:
    """Whether the innermost ``{`` still open at ``index`` is a ``\\boxed{``."""
    depth = 0
    for j in range(index - 1, -1, -1):
        if text[j] == "}":
            depth += 1
        elif text[j] == "{":
            if depth == 0:
                return bool(_BOXED_OPEN.search(text, 0, j))
            depth -= 1
    return False


def _chain_at(text: str, match: re.Match[str]) -> tuple[list[_Written], list[bool]]:
    """The members chained from ``match`` on, and for each whether it follows an "about" sign.

    A wrapper opened on a later member, or closed on an earlier one, ends the chain; so does a member with
    unbalanced parentheses (only the first may open, and the last close, parentheses around the chain).
    """
    chain, about = [_written(match)], [False]
    while not chain[-1].lone_close and (
        _balanced(chain[-1].text) or (len(chain) == 1 and chain[0].text.count("(") > chain[0].text.count(")"))
    ):
        relation = _RELATION.match(text, chain[-1].end)
        following = _WRITTEN_MEMBER.match(text, relation.end()) if relation else None
        if relation is None or following is None or (member := _written(following)).lone_open:
            break
        chain.append(member)
        about.append(relation.group("about") is not None)
    return chain, about


def _chain_replacement(text: str, chain: list[_Written], about: list[bool]) -> tuple[int, int, str] | None:
    """(start, end, replacement) reducing ``chain`` to its stated value, or None when it is no chain."""
    first, last = chain[0], chain[-1]
    if last.lone_close and (
        _CLOSE_OF[first.lone_open] != last.lone_close if first.lone_open
        else last.lone_close == "}" and not _boxed_before(text, first.start)
    ):
        chain = chain[:-1]  # that "}" closes a \frac{}{} or a \text{}, not a box: the member is an argument
    elif not last.close and _bad_after(text, last.text_end):
        chain = chain[:-1]  # "... = 7x": the last member goes on with a variable
    if len(chain) < 2 or (not first.open and _bad_before(text, first)):
        return None
    last = chain[-1]
    texts = [member.text for member in chain]
    start, end = first.start, last.end
    while texts[0].count("(") > texts[0].count(")") and texts[0].startswith("(") and not first.open:
        texts[0] = texts[0][1:].lstrip(" \t")  # "(3 + 4 = 7)": the outer parentheses stay in the text
        start = first.text_end - len(texts[0])
    while texts[-1].count(")") > texts[-1].count("(") and texts[-1].endswith(")") and not last.close:
        texts[-1] = texts[-1][:-1].rstrip(" \t")
        end = last.text_start + len(texts[-1])
    if not all(_balanced(member) for member in texts):
        return None
    # The most evaluated member, the last of those; an approximation only where no exact value is stated.
    exact = [i for i in range(len(texts)) if not about[i]]
    candidates = exact if max(_rank(texts[i]) for i in exact) > 0 else range(len(texts))
    k = max(candidates, key=lambda i: (_rank(texts[i]), i))
    wrap_open, wrap_close = next(((m.open, m.close) for m in (chain[k], *chain) if m.paired), ("", ""))
    head = text[first.start:first.text_start] if first.lone_open else ""
    tail = text[last.text_end:last.end] if last.lone_close else ""
    return start, end, f"{head}{wrap_open}{texts[k]}{wrap_close}{tail}"


def _collapse_chains(text: str) -> str:
    """Each chain of members becomes its most evaluated member (see the module docstring):
    ``29 + 27 + 12 = 54`` -> ``54``, ``\\boxed{54 = 29 + 27 + 12}`` -> ``\\boxed{54}``,
    ``x = 3 + 4 = 7`` -> ``x = 7``.
    """
    pieces: list[str] = []
    copied = at = 0
    while (match := _WRITTEN_MEMBER.search(text, at)) is not None:
        chain, about = _chain_at(text, match)
        replacement = _chain_replacement(text, chain, about) if len(chain) > 1 else None
        if replacement is None:
            # No chain here; one may still start inside this member ("x(3 + 4 = 7)").
            at = match.end() if len(chain) == 1 else match.start() + 1
            continue
        start, end, new = replacement
        pieces += [text[copied:start], new]
        copied = at = end
    return "".join(pieces) + text[copied:]


def _collapse_asides(text: str) -> str:
    """``54 (29 + 27 + 12)``, ``29 + 27 + 12 (= 54)`` -> ``54``: the more evaluated side, else the outer."""
    pieces: list[str] = []
    copied = at = 0
    while (match := _WRITTEN_MEMBER.search(text, at)) is not None:
        member = _written(match)
        at = match.end()
        aside = _ASIDE.match(text, member.end)
        if member.open or member.close or aside is None:
            continue
        outside, inside = member.text, aside.group("inside")
        if (
            max(_rank(outside), _rank(inside)) == 0  # "5 + 2 (3 + 4)" is a product
            or not (_balanced(outside) and _balanced(inside))
            or _bad_before(text, member)
            or _bad_after(text, aside.end())
        ):
            continue
        pieces += [text[copied:member.start], inside if _rank(inside) > _rank(outside) else outside]
        copied = at = aside.end()
    return "".join(pieces) + text[copied:]


def _drop_superseded_expressions(text: str) -> str:
    """Drop each arithmetic expression beside a stated number on its line: after it, or between it and an
    "answer" before it (``29 + 27 + 12 which is 54``, ``the answer is 54, i.e. $29 + 27 + 12$``)."""
    numbers = [match.start() for match in _STANDALONE_NUMBER.finditer(text)]
    markers = [match.end() for match in _ANSWER_WORD.finditer(text)]

    def number_in(start: int, end: int) -> bool:
        i = bisect.bisect_left(numbers, start)
        return i < len(numbers) and numbers[i] < end

    pieces: list[str] = []
    copied = at = 0
    while (match := _WRITTEN_MEMBER.search(text, at)) is not None:
        member = _written(match)
        at = match.end()
        if (
            _rank(member.text) != 0
            or ((member.open or member.close) and not member.paired)
            or not _balanced(member.text)
            or (not member.open and _bad_before(text, member))
            or (not member.close and _bad_after(text, member.text_end))
            or _ASIDE.match(text, member.end)  # "5 + 2 (3 + 4)": the expression goes on
        ):
            continue
        line_start = text.rfind("\n", 0, member.start) + 1
        line_end = text.find("\n", member.end) % (len(text) + 1)  # -1 (last line) -> len(text)
        marker = bisect.bisect_right(markers, member.start) - 1
        if number_in(member.end, line_end) or (
            marker >= 0 and markers[marker] > line_start and number_in(markers[marker], member.start)
        ):
            pieces.append(text[copied:member.start])
            copied = member.end
    return "".join(pieces) + text[copied:]


def _committed_text(text: str) -> str:
    """``text`` with each stated value standing alone: what math-verify is given (see the module docstring).

    >>> _committed_text("The final answer is 29 + 27 + 12 = 54.")
    'The final answer is 54.'
    >>> _committed_text("So \\\\boxed{54 = 29 + 27 + 12}, x = 3 + 4 = 7 and x + 3 = 10.")
    'So \\\\boxed{54}, x = 7 and x + 3 = 10.'
    >>> _committed_text("The answer is 54 (29 + 27 + 12); 29 + 27 + 12 is 54 too.")
    'The answer is 54;  is 54 too.'
    >>> _committed_text("The answer is 29 + 27 + 12.")  # nothing stated after it: math-verify evaluates it
    'The answer is 29 + 27 + 12.'
    """
    return _drop_superseded_expressions(_collapse_asides(_collapse_chains(text)))


def _read_answer(completion: str) -> _ReadAnswer:
    parse, _ = _math_verify()
    parsed = parse(_committed_text(_judged_text(completion)), parsing_timeout=_timeout_s())
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


def parse_gold(answer: str) -> list[Any]:
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
    ``\\boxed{}``, carries no think block and has no arithmetic written beside it with ``=`` or the like
    (see the module docstring for the three extra rules).
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
    gold = parse_gold(answer)
    if not gold:
        return 0.0
    _, verify = _math_verify()
    return 1.0 if verify(gold, read.parsed, timeout_seconds=_timeout_s()) else 0.0
