"""The demo task's standard phrasing family, its number scales and the constants every split shares.

    >>> import random
    >>> text, steps, answer = make_problem(random.Random(0), "equations", (1, 2), NUMBER_SCALES["small"])
    >>> steps[-1].endswith(f"{ANSWER_PHRASE} {answer}.")
    True

:data:`SCENES` is public: the demo solver (:mod:`srl_rlvr.data.demo.solver`) reads its clauses.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

MAX_VALUE = 999  # every running value stays in 1..MAX_VALUE (the "standard" number scale)
MIN_OPS, MAX_OPS = 2, 4
ANSWER_PHRASE = "The answer is"
STYLES = ("prose", "equations")


@dataclass(frozen=True)
class NumberScale:
    """Ranges the operands are drawn from (inclusive)."""

    box_count: tuple[int, int]  # "a containers with b each": a
    box_size: tuple[int, int]  # b
    start: tuple[int, int]  # a plain starting count
    add: int  # largest amount added
    sub: int  # largest amount taken away
    times: int  # largest multiplier
    max_value: int  # every running value stays in 1..max_value


# "standard": 2-3 digit running values (SmolLM2-135M gets 1-2 of 50 right).
# "small": sums and products a 135M model can compute (operands <= 9, values <= 50), so what is left to
# learn is the structure: which quantity, which operation, and when to stop (docs/results.md).
NUMBER_SCALES = {
    "standard": NumberScale((2, 9), (3, 12), (8, 60), 40, 40, 4, MAX_VALUE),
    "small": NumberScale((2, 5), (2, 5), (3, 15), 9, 9, 3, 50),
}

_NAMES = {
    "she": ["Mia", "Emma", "Ava", "Sofia", "Lena", "Zoe", "Nora", "Priya", "Aisha", "Chloe", "Hana", "Rosa"],
    "he": ["Noah", "Liam", "Lucas", "Ethan", "Leo", "Omar", "Ravi", "Ben", "Kai", "Mateo", "Jonas", "Sam"],
}


@dataclass(frozen=True)
class Scene:
    """A theme: what is counted, what holds it, and how the count goes up, down, or multiplies."""

    objects: tuple[str, ...]
    containers: tuple[str, ...]
    add: tuple[tuple[str, str], ...]  # (problem clause, step lead); both take {k} and {obj}
    sub: tuple[tuple[str, str], ...]


SCENES = (
    Scene(
        objects=("pens", "pencils", "stickers", "markers", "erasers"),
        containers=("boxes", "packs", "cases"),
        add=(("buys {k} more", "After buying {k} more"), ("gets {k} more from a friend", "After getting {k} more")),
        sub=(("gives away {k} {obj}", "After giving away {k}"), ("loses {k} {obj}", "After losing {k}")),
    ),
    Scene(
        objects=("marbles", "shells", "coins", "stamps", "cards"),
        containers=("bags", "jars", "albums", "tins"),
        add=(("finds {k} more", "After finding {k} more"), ("trades for {k} more", "After trading for {k} more")),
        sub=(("sells {k} {obj}", "After selling {k}"), ("gives {k} {obj} to a cousin", "After giving {k} away")),
    ),
    Scene(
        objects=("cookies", "muffins", "rolls", "cupcakes"),
        containers=("trays", "boxes", "baskets"),
        add=(("bakes {k} more", "After baking {k} more"), ("is handed {k} more", "After being handed {k} more")),
        sub=(("sells {k} {obj}", "After selling {k}"), ("shares {k} {obj} with friends", "After sharing {k}")),
    ),
    Scene(
        objects=("apples", "pears", "plums", "lemons", "eggs"),
        containers=("crates", "baskets", "bags", "cartons"),
        add=(("picks {k} more", "After picking {k} more"), ("buys {k} more at the market", "After buying {k} more")),
        sub=(("uses {k} {obj}", "After using {k}"), ("drops {k} {obj}", "After dropping {k}")),
    ),
    Scene(
        objects=("books", "comics", "puzzles", "games"),
        containers=("shelves", "boxes", "stacks"),
        add=(("is given {k} more", "After being given {k} more"), ("orders {k} more", "After ordering {k} more")),
        sub=(("donates {k} {obj}", "After donating {k}"), ("lends out {k} {obj}", "After lending out {k}")),
    ),
)

# Multiplying a count reads naturally as "doubles" or "k times as many"; both phrasings are drawn.
_TIMES_VERB = {2: ("doubles", "doubling"), 3: ("triples", "tripling"), 4: ("quadruples", "quadrupling")}


def _times_clause(rng: random.Random, k: int, pron: str, obj: str) -> tuple[str, str]:
    if k in _TIMES_VERB and rng.random() < 0.5:
        verb, gerund = _TIMES_VERB[k]
        poss = "her" if pron == "she" else "his"
        return f"{poss} number of {obj} {verb}", f"After {gerund}"
    return f"ends up with {k} times as many {obj}", f"With {k} times as many"


def draw_operation(rng: random.Random, value: int, scale: NumberScale) -> tuple[str, int, int] | None:
    """One arithmetic step on ``value``: (operator, operand, new value), or None when the draw breaks the
    scale's bounds (the caller draws again). Both phrasing families share it, so their arithmetic and their
    random draws stay the same."""
    op = rng.choice(("+", "-", "*"))
    if op == "*":
        k = rng.randint(2, scale.times)
        return None if value * k > scale.max_value else (op, k, value * k)
    if op == "-":
        if value < 3:
            return None
        k = rng.randint(2, min(value - 1, scale.sub))  # k >= 2 keeps "k {obj}" plural
        return op, k, value - k
    k = rng.randint(2, scale.add)
    return None if value + k > scale.max_value else (op, k, value + k)


def make_problem(rng: random.Random, style: str, ops: tuple[int, int],
                 scale: NumberScale) -> tuple[str, list[str], int]:
    """Draw one problem; return (problem text, steps, answer). The style changes only how steps are written."""
    terse = style == "equations"
    scene = rng.choice(SCENES)
    pron = rng.choice(("she", "he"))
    name = rng.choice(_NAMES[pron])
    obj = rng.choice(scene.objects)
    num_ops = rng.randint(*ops)
    steps: list[str] = []
    clauses: list[str] = []

    # Half the problems start with "a containers with b each", which is already the first operation.
    if rng.random() < 0.5:
        container = rng.choice(scene.containers)
        a, b = rng.randint(*scale.box_count), rng.randint(*scale.box_size)
        value = a * b
        intro = f"{name} has {a} {container} with {b} {obj} in each."
        steps.append(f"{a} * {b} = {value}" if terse else f"{name} starts with {a} * {b} = {value} {obj}.")
    else:
        value = rng.randint(*scale.start)
        intro = f"{name} has {value} {obj}."

    while len(steps) < num_ops:
        if (drawn := draw_operation(rng, value, scale)) is None:
            continue
        op, k, new = drawn
        if op == "*":
            clause, lead = _times_clause(rng, k, pron, obj)
        else:
            clause, lead = rng.choice(scene.sub if op == "-" else scene.add)
        clauses.append(clause.format(k=k, obj=obj))
        steps.append(f"{value} {op} {k} = {new}" if terse
                     else f"{lead.format(k=k)}, {pron} has {value} {op} {k} = {new} {obj}.")
        value = new

    steps[-1] += f". {ANSWER_PHRASE} {value}." if terse else f" {ANSWER_PHRASE} {value}."
    question = rng.choice(
        (f"How many {obj} does {pron} have now?", f"How many {obj} does {name} have at the end?")
    )
    story = " ".join(part for part in (intro, _join_clauses(pron, clauses), question) if part)
    return story, steps, value


def _join_clauses(pron: str, clauses: list[str]) -> str:
    """'She x.' / 'First she x, and then she y.' / 'First she x, then she y, and finally she z.'"""
    # A clause that starts with "her/his number ..." is its own subject; others need the pronoun.
    parts = [c if c.startswith(("her ", "his ")) else f"{pron} {c}" for c in clauses]
    if not parts:  # a one-step "a containers with b each" problem
        return ""
    if len(parts) == 1:
        return parts[0][0].upper() + parts[0][1:] + "."
    if len(parts) == 2:
        return f"First {parts[0]}, and then {parts[1]}."
    middle = ", then ".join(parts[1:-1])
    return f"First {parts[0]}, then {middle}, and finally {parts[-1]}."
