"""A SIMULATED big tier: an exact solver for the demo arithmetic task (:mod:`srl_rlvr.data.demo`), reached
as the ``demo_solver`` route-target backend (:mod:`srl_rlvr.routing.backends` registers it; data never
imports routing).

No model larger than SmolLM2-135M is installed here, so the "big teacher" of the CPU route config is
this parser: it reads the problem text (never the gold answer), applies each operation in order and
writes the steps and "The answer is N.". It is right on every demo problem (a test checks 500) and
answers nothing else, so its quality and its configured price stand in for a real teacher's and are
labelled SIMULATED in every report.
"""

from __future__ import annotations

import re

from srl_rlvr.data.demo.problems import ANSWER_PHRASE, SCENES

UNSOLVED = "I cannot solve this problem."
_TIMES_WORDS = {"doubles": 2, "triples": 3, "quadruples": 4}
_INTRO_CONTAINERS = re.compile(r"\bhas (\d+) \w+ with (\d+) \w+ in each\.")
_INTRO_COUNT = re.compile(r"\bhas (\d+) \w+\.")
_TIMES_AS_MANY = re.compile(r"ends up with (\d+) times as many \w+")
_TIMES_VERB = re.compile(r"(?:[Hh]er|[Hh]is) number of \w+ (doubles|triples|quadruples)")


def _template_regex(template: str) -> str:
    """'gives away {k} {obj}' -> r'gives away (\\d+) \\w+'"""
    return re.escape(template).replace(r"\{k\}", r"(\d+)").replace(r"\{obj\}", r"\w+")


def _op_patterns() -> list[tuple[str, re.Pattern[str]]]:
    adds = {clause for scene in SCENES for clause, _ in scene.add}
    subs = {clause for scene in SCENES for clause, _ in scene.sub}
    return [("+", re.compile(_template_regex(c))) for c in sorted(adds)] + \
           [("-", re.compile(_template_regex(c))) for c in sorted(subs)]


_OPS = _op_patterns()


def solve_demo_problem(problem: str) -> tuple[int, list[str]] | None:
    """(answer, steps) for a demo problem, or None when the text is not one.

    >>> solve_demo_problem("Mia has 7 boxes with 6 pens in each. First she gives away 9 pens, "
    ...                    "and then she buys 15 more. How many pens does she have now?")[0]
    48
    >>> solve_demo_problem("Kai has 2 crates with 3 apples in each. How many apples does he have now?")[0]
    6
    >>> solve_demo_problem("What is the capital of France?") is None
    True
    """
    steps: list[str] = []
    intro = _INTRO_CONTAINERS.search(problem)
    containers = intro is not None  # "a containers with b each" is an operation by itself
    if intro:
        a, b = int(intro[1]), int(intro[2])
        value = a * b
        steps.append(f"Start with {a} * {b} = {value}.")
        rest_at = intro.end()
    else:
        intro = _INTRO_COUNT.search(problem)
        if not intro:
            return None
        value = int(intro[1])
        steps.append(f"Start with {value}.")
        rest_at = intro.end()
    rest = problem[rest_at:]
    found: dict[int, tuple[str, int]] = {}  # start offset -> (op, operand); one operation per offset
    for op, pattern in _OPS:
        for m in pattern.finditer(rest):
            found.setdefault(m.start(), (op, int(m[1])))
    for m in _TIMES_AS_MANY.finditer(rest):
        found.setdefault(m.start(), ("*", int(m[1])))
    for m in _TIMES_VERB.finditer(rest):
        found.setdefault(m.start(), ("*", _TIMES_WORDS[m[1]]))
    if not found and not containers:
        return None
    for _, (op, k) in sorted(found.items()):
        new = value + k if op == "+" else value - k if op == "-" else value * k
        steps.append(f"{value} {op} {k} = {new}.")
        value = new
    steps[-1] += f" {ANSWER_PHRASE} {value}."
    return value, steps


def solve_demo_completion(problem: str) -> str:
    """The solver's reply: numbered steps ending in "The answer is N.", or a refusal without a number."""
    solved = solve_demo_problem(problem)
    if solved is None:
        return UNSOLVED
    return "\n".join(f"Step {i}: {s}" for i, s in enumerate(solved[1], 1))
