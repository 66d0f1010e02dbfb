"""The demo task: seeded multi-step arithmetic word problems with expert steps and an integer answer.

Each problem takes 2-4 operations (+, -, *) by default (``min_ops``/``max_ops``; ``srl-rlvr demo`` uses 1-3 with
``numbers="small"``: operands <= 9, values <= 50). Every expert step does one operation, written with ASCII
operators as ``a op b = c`` plus the running value, and the last step ends with "The answer is N."::

    Mia has 7 boxes with 6 pens in each. First she gives away 9 pens, and then she buys 15 more.
    How many pens does she have now?
    -> "Mia starts with 7 * 6 = 42 pens."
       "After giving away 9, she has 42 - 9 = 33 pens."
       "After buying 15 more, she has 33 + 15 = 48 pens. The answer is 48."

``style="equations"`` writes the same problems with terse steps, one equation each
(``7 * 6 = 42`` / ``42 - 9 = 33`` / ``33 + 15 = 48. The answer is 48.``): the SRL step reward (2M/T
similarity) is then decided by the numbers and operators rather than by the wording around them, which
is what a 135M model can learn in a CPU-sized run (docs/results.md).

The test split depends only on (n_test, seed, style), so growing n_train never changes it, and no problem
text appears in both splits. Both styles draw the same problems for the same seed. Write the files with ``write_demo_task(out_dir)``.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAX_VALUE = 999  # every running value stays in 1..MAX_VALUE (the "standard" number scale)
MIN_OPS, MAX_OPS = 2, 4
ANSWER_PHRASE = "The answer is"
STYLES = ("prose", "equations")


@dataclass(frozen=True)
class _NumberScale:
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
    "standard": _NumberScale((2, 9), (3, 12), (8, 60), 40, 40, 4, MAX_VALUE),
    "small": _NumberScale((2, 5), (2, 5), (3, 15), 9, 9, 3, 50),
}

_NAMES = {
    "she": ["Mia", "Emma", "Ava", "Sofia", "Lena", "Zoe", "Nora", "Priya", "Aisha", "Chloe", "Hana", "Rosa"],
    "he": ["Noah", "Liam", "Lucas", "Ethan", "Leo", "Omar", "Ravi", "Ben", "Kai", "Mateo", "Jonas", "Sam"],
}


@dataclass(frozen=True)
class _Scene:
    """A theme: what is counted, what holds it, and how the count goes up, down, or multiplies."""

    objects: tuple[str, ...]
    containers: tuple[str, ...]
    add: tuple[tuple[str, str], ...]  # (problem clause, step lead); both take {k} and {obj}
    sub: tuple[tuple[str, str], ...]


_SCENES = (
    _Scene(
        objects=("pens", "pencils", "stickers", "markers", "erasers"),
        containers=("boxes", "packs", "cases"),
        add=(("buys {k} more", "After buying {k} more"), ("gets {k} more from a friend", "After getting {k} more")),
        sub=(("gives away {k} {obj}", "After giving away {k}"), ("loses {k} {obj}", "After losing {k}")),
    ),
    _Scene(
        objects=("marbles", "shells", "coins", "stamps", "cards"),
        containers=("bags", "jars", "albums", "tins"),
        add=(("finds {k} more", "After finding {k} more"), ("trades for {k} more", "After trading for {k} more")),
        sub=(("sells {k} {obj}", "After selling {k}"), ("gives {k} {obj} to a cousin", "After giving {k} away")),
    ),
    _Scene(
        objects=("cookies", "muffins", "rolls", "cupcakes"),
        containers=("trays", "boxes", "baskets"),
        add=(("bakes {k} more", "After baking {k} more"), ("is handed {k} more", "After being handed {k} more")),
        sub=(("sells {k} {obj}", "After selling {k}"), ("shares {k} {obj} with friends", "After sharing {k}")),
    ),
    _Scene(
        objects=("apples", "pears", "plums", "lemons", "eggs"),
        containers=("crates", "baskets", "bags", "cartons"),
        add=(("picks {k} more", "After picking {k} more"), ("buys {k} more at the market", "After buying {k} more")),
        sub=(("uses {k} {obj}", "After using {k}"), ("drops {k} {obj}", "After dropping {k}")),
    ),
    _Scene(
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


def _make_problem(rng: random.Random, style: str, ops: tuple[int, int], scale: _NumberScale) -> tuple[str, list[str], int]:
    """Draw one problem; return (problem text, steps, answer). The style changes only how steps are written."""
    terse = style == "equations"
    scene = rng.choice(_SCENES)
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
        op = rng.choice(("+", "-", "*"))
        if op == "*":
            k = rng.randint(2, scale.times)
            if value * k > scale.max_value:
                continue
            clause, lead = _times_clause(rng, k, pron, obj)
            new = value * k
        elif op == "-":
            if value < 3:
                continue
            k = rng.randint(2, min(value - 1, scale.sub))  # k >= 2 keeps "k {obj}" plural
            clause, lead = rng.choice(scene.sub)
            new = value - k
        else:
            k = rng.randint(2, scale.add)
            if value + k > scale.max_value:
                continue
            clause, lead = rng.choice(scene.add)
            new = value + k
        clauses.append(clause.format(k=k, obj=obj))
        steps.append(f"{value} {op} {k} = {new}" if terse else f"{lead.format(k=k)}, {pron} has {value} {op} {k} = {new} {obj}.")
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


def _generate(rng: random.Random, n: int, split: str, exclude: set[str], style: str,
              ops: tuple[int, int], scale: _NumberScale) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    seen = set(exclude)
    width = max(4, len(str(n)))
    attempts = 0
    while len(rows) < n:
        attempts += 1
        if attempts > 50 * n + 1000:
            raise ValueError(f"could not draw {n} distinct demo problems for the {split} split")
        problem, steps, answer = _make_problem(rng, style, ops, scale)
        if problem in seen:
            continue
        seen.add(problem)
        rows.append(
            {
                "id": f"demo-{split}-{len(rows) + 1:0{width}d}",
                "problem": problem,
                "steps": steps,
                "answer": str(answer),
                "domain": "math",
                "num_ops": len(steps),
            }
        )
    return rows


def make_demo_task(n_train: int = 400, n_test: int = 100, seed: int = 0, style: str = "prose",
                   min_ops: int = MIN_OPS, max_ops: int = MAX_OPS,
                   numbers: str = "standard") -> tuple[list[dict], list[dict]]:
    """Return (train rows, test rows) in the trajectory format; deterministic for a seed.

    ``min_ops``/``max_ops`` set the range of steps per problem (default 2-4); 1-step problems make a
    mixed-difficulty stream, e.g. for routing (docs/routing.md). ``numbers`` picks a key of
    ``NUMBER_SCALES``: "standard" (values up to 999) or "small" (operands <= 9, values <= 50).
    """
    if numbers not in NUMBER_SCALES:
        raise ValueError(f"numbers must be one of {', '.join(NUMBER_SCALES)}, got {numbers!r}")
    scale = NUMBER_SCALES[numbers]
    if n_train < 0 or n_test < 0:
        raise ValueError("n_train and n_test must be >= 0")
    if not 1 <= min_ops <= max_ops:
        raise ValueError(f"need 1 <= min_ops <= max_ops, got {min_ops} and {max_ops}")
    ops = (min_ops, max_ops)
    if style not in STYLES:
        raise ValueError(f"style must be one of {', '.join(STYLES)}, got {style!r}")
    # Separate streams: the test split must not change when n_train does.
    test = _generate(random.Random(f"srl-rlvr-demo-test-{seed}"), n_test, "test", set(), style, ops, scale)
    train = _generate(random.Random(f"srl-rlvr-demo-train-{seed}"), n_train, "train",
                      {row["problem"] for row in test}, style, ops, scale)
    return train, test


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(path)  # readers never see a half-written file


def write_demo_task(out_dir: str | Path, n_train: int = 400, n_test: int = 100, seed: int = 0,
                    style: str = "prose", min_ops: int = MIN_OPS, max_ops: int = MAX_OPS,
                    numbers: str = "standard") -> dict[str, Any]:
    """Write ``out_dir/train.jsonl`` and ``out_dir/test.jsonl``; return their paths and row counts."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    train, test = make_demo_task(n_train, n_test, seed, style, min_ops, max_ops, numbers)
    paths = {"train": out / "train.jsonl", "test": out / "test.jsonl"}
    _write_jsonl(paths["train"], train)
    _write_jsonl(paths["test"], test)
    return {
        "train": str(paths["train"]),
        "test": str(paths["test"]),
        "n_train": len(train),
        "n_test": len(test),
        "seed": seed,
        "style": style,
        "min_ops": min_ops,
        "max_ops": max_ops,
        "numbers": numbers,
    }
