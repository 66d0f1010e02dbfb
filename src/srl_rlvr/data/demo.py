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

Four splits, each from its own seeded stream (``make_demo_splits``; ``write_demo_task(out_dir)`` writes them):

* ``test`` (stream ``srl-rlvr-demo-heldout-{seed}``): the published split. No tuning reads it.
* ``dev`` (stream ``srl-rlvr-demo-test-{seed}``): for choosing recipes and settings. It is the split that was
  called "test" before dev existed (same problems, ids renamed ``demo-dev-NNNN``), which earlier sessions
  tuned on; that is why it is dev now.
* ``transfer`` (stream ``srl-rlvr-demo-transfer-{seed}``): the same operations, number scale and step counts
  in a second phrasing family (other templates, verbs, nouns, subjects, sentence frames and questions;
  rows carry ``"phrasing": "transfer"``) that no training split ever uses::

      A bakery receives 4 racks, each holding 6 loaves. In the morning, a delivery brings 7 more loaves.
      Around noon, customers take home 5 loaves. How many loaves are left?

* ``train`` (stream ``srl-rlvr-demo-train-{seed}``).

Draw order is test, dev, transfer, train, and a split drops any problem text an earlier one holds, so no text
is in two splits. The test split also never takes a text among the first ``RESERVE`` (1000) distinct problems
of the dev and train streams, so a test problem was never in any dev (old test) or train split of up to that
size, and then dev (up to ``RESERVE`` rows) and train (up to about ``RESERVE``) never meet a test text. So
test depends only on (n_test, seed, min_ops, max_ops, numbers); dev only on (n_dev, ...) while
n_dev <= RESERVE; transfer only on (n_transfer, ...) (its phrasing cannot produce a standard text); train also
on the dev and transfer it excludes. The style changes the steps only: both styles draw the same problems.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

MAX_VALUE = 999  # every running value stays in 1..MAX_VALUE (the "standard" number scale)
MIN_OPS, MAX_OPS = 2, 4
ANSWER_PHRASE = "The answer is"
STYLES = ("prose", "equations")
SPLITS = ("train", "dev", "test", "transfer")
# The stream each split is drawn from ("{seed}" is the task seed). "srl-rlvr-demo-test-" is the stream of the
# split that was called test until dev existed; recipes were chosen on it, so it is dev now.
STREAMS = {
    "test": "srl-rlvr-demo-heldout-{seed}",
    "dev": "srl-rlvr-demo-test-{seed}",
    "transfer": "srl-rlvr-demo-transfer-{seed}",
    "train": "srl-rlvr-demo-train-{seed}",
}
RESERVE = 1000  # test never takes one of the first RESERVE distinct problems of the dev or the train stream


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


# --- the transfer phrasing family -------------------------------------------------------------------------
# The same four operations on the same number scale, told with other subjects, nouns, verbs, sentence frames,
# connectives and questions. None of the standard family's verbs (buys, gives, finds, trades, bakes, sells,
# shares, picks, uses, drops, donates, lends, loses, orders, "is handed", "ends up with", doubles/triples/
# quadruples), names, objects, containers, "has/have", "in each" or "First ... then ... finally" appear.


@dataclass(frozen=True)
class _TransferScene:
    """A place (or a named person) whose stock goes up, down or multiplies.

    Templates take {A} (the subject as a sentence opener: "A bakery" / "Hugo"), {s} (the subject later on:
    "the bakery" / "Hugo"), {obj}, {container}, {n}, {a}, {b} and {k}. Each event is (problem clause, step lead).
    """

    subjects: tuple[str, ...]  # nouns that take an article; empty for the named-person scene
    objects: tuple[str, ...]
    containers: tuple[str, ...]
    starts: tuple[str, ...]
    boxes: tuple[str, ...]
    add: tuple[tuple[str, str], ...]
    sub: tuple[tuple[str, str], ...]
    times: tuple[tuple[str, str], ...]


_TRANSFER_NAMES = ("Grace", "Victor", "Ines", "Hugo", "Tariq", "Yuki", "Marta", "Felix", "Amara", "Diego", "Tom",
                   "Elif")

_TRANSFER_SCENES = (
    _TransferScene(
        subjects=("bakery", "corner shop", "village store"),
        objects=("loaves", "pies", "bagels", "scones"),
        containers=("racks", "bins", "sacks"),
        starts=("{A} opens in the morning with {n} {obj} on display.", "There are {n} {obj} on the counter of {s}."),
        boxes=("{A} receives {a} {container}, each holding {b} {obj}.",
               "A van brings {a} {container} to {s}, with {b} {obj} apiece."),
        add=(("a delivery brings {k} more {obj}", "Once the delivery arrives"),
             ("the kitchen sends out {k} fresh {obj}", "With {k} fresh ones from the kitchen")),
        sub=(("customers take home {k} {obj}", "Once customers take home {k}"),
             ("{k} {obj} are packed up for a party", "Packing {k} for a party")),
        times=(("the stock grows to {k} times its size", "When the stock grows {k}-fold"),
               ("a big batch multiplies the stock by {k}", "Multiplying the stock by {k}")),
    ),
    _TransferScene(
        subjects=("classroom", "art room", "school"),
        objects=("crayons", "rulers", "notebooks", "folders"),
        containers=("tubs", "drawers", "cupboards"),
        starts=("{A} keeps {n} {obj} in a cupboard.", "There are {n} {obj} in {s}."),
        boxes=("{A} is stocked with {a} {container} holding {b} {obj} apiece.",
               "In {s} stand {a} {container}, and every one holds {b} {obj}."),
        add=(("the head teacher sends over {k} more {obj}", "With {k} more from the head teacher"),
             ("pupils bring in {k} extra {obj}", "Once pupils bring in {k}")),
        sub=(("{k} {obj} go missing", "Once {k} go missing"),
             ("the class throws out {k} worn {obj}", "Throwing out {k} worn ones")),
        times=(("the supply is multiplied by {k}", "Multiplying the supply by {k}"),
               ("a grant lets the supply grow to {k} times its old size", "When the supply grows {k}-fold")),
    ),
    _TransferScene(
        subjects=("farm", "ranch", "homestead"),
        objects=("hens", "goats", "geese", "ducks"),
        containers=("coops", "barns", "sheds"),
        starts=("There are {n} {obj} on {s}.", "{A} is home to {n} {obj}."),
        boxes=("{A} keeps {a} {container}, each housing {b} {obj}.",
               "On {s} stand {a} {container}, and {b} {obj} live in every one."),
        add=(("{k} more {obj} wander in from next door", "When {k} more wander in"),
             ("a neighbour brings over {k} {obj}", "Adding the neighbour's {k}")),
        sub=(("{k} {obj} are moved to another field", "Moving {k} to another field"),
             ("{k} {obj} wander off", "Once {k} wander off")),
        times=(("the number of {obj} grows to {k} times what it was", "When the count grows {k}-fold"),
               ("over the season the flock is multiplied by {k}", "Multiplying the flock by {k}")),
    ),
    _TransferScene(
        subjects=("library", "reading room", "school library"),
        objects=("novels", "atlases", "magazines", "journals"),
        containers=("carts", "racks", "cabinets"),
        starts=("{A} holds {n} {obj}.", "The catalogue of {s} lists {n} {obj}."),
        boxes=("{A} sets up {a} {container}, each carrying {b} {obj}.",
               "{A} fills {a} {container} with {b} {obj} apiece."),
        add=(("{k} new {obj} come in", "When {k} new ones come in"),
             ("{s} acquires {k} more {obj}", "Acquiring {k} more")),
        sub=(("readers check out {k} {obj}", "Once readers check out {k}"),
             ("{k} {obj} are sent away for repair", "Sending {k} away for repair")),
        times=(("after a merger the collection is {k} times its old size", "When the collection grows {k}-fold"),
               ("the collection grows to {k} times its size", "Multiplying the collection by {k}")),
    ),
    _TransferScene(
        subjects=(),  # a named person
        objects=("bottles", "candles", "tiles", "bolts"),
        containers=("pallets", "barrels", "bins"),
        starts=("{A} keeps {n} {obj} in a storeroom.", "In {A}'s storeroom sit {n} {obj}."),
        boxes=("{A} loads {a} {container}, each holding {b} {obj}.",
               "{A} lines up {a} {container} with {b} {obj} apiece."),
        add=(("{s} makes {k} more {obj}", "Making {k} more"),
             ("a supplier ships {k} more {obj} to {s}", "With {k} more from the supplier")),
        sub=(("{s} ships {k} {obj} away", "Shipping {k} away"),
             ("{k} {obj} turn out faulty and are thrown out", "Throwing out {k} faulty ones")),
        times=(("the storeroom stock is multiplied by {k}", "Multiplying the stock by {k}"),
               ("the stock grows to {k} times its size", "When the stock grows {k}-fold")),
    ),
)

# Connectives that order the events: each event is its own sentence, or they share one sentence with semicolons.
_TRANSFER_CONNECTIVES = (
    ("In the morning", "Around noon", "In the afternoon", "By evening"),
    ("On Monday", "On Tuesday", "On Wednesday", "On Thursday"),
    ("To begin with", "Next", "Later on", "Last of all"),
    ("Early on", "After a while", "Later", "At the close"),
)
_TRANSFER_QUESTIONS = ("What is the total number of {obj} now?", "How many {obj} does {s} hold in the end?")
_TRANSFER_GREW = ("How many {obj} are there in all?",)  # only when nothing was taken away
_TRANSFER_LEFT = ("How many {obj} are left?", "How many {obj} remain?")  # only after something was taken away


def _make_transfer_problem(rng: random.Random, style: str, ops: tuple[int, int],
                           scale: _NumberScale) -> tuple[str, list[str], int]:
    """Draw one transfer-family problem; return (problem text, steps, answer). Same operations and scale."""
    terse = style == "equations"
    scene = rng.choice(_TRANSFER_SCENES)
    if scene.subjects:
        noun = rng.choice(scene.subjects)
        opener, subject = f"A {noun}", f"the {noun}"
    else:
        opener = subject = rng.choice(_TRANSFER_NAMES)
    obj = rng.choice(scene.objects)
    num_ops = rng.randint(*ops)
    fill = {"A": opener, "s": subject, "obj": obj}
    steps: list[str] = []
    events: list[str] = []

    if rng.random() < 0.5:
        container = rng.choice(scene.containers)
        a, b = rng.randint(*scale.box_count), rng.randint(*scale.box_size)
        value = a * b
        intro = rng.choice(scene.boxes).format(a=a, b=b, container=container, **fill)
        steps.append(f"{a} * {b} = {value}" if terse else f"At the start there are {a} * {b} = {value} {obj}.")
    else:
        value = rng.randint(*scale.start)
        intro = rng.choice(scene.starts).format(n=value, **fill)
    intro = intro[0].upper() + intro[1:]

    took_away = False
    while len(steps) < num_ops:
        op = rng.choice(("+", "-", "*"))
        if op == "*":
            k = rng.randint(2, scale.times)
            if value * k > scale.max_value:
                continue
            clause, lead = rng.choice(scene.times)
            new = value * k
        elif op == "-":
            if value < 3:
                continue
            k = rng.randint(2, min(value - 1, scale.sub))
            clause, lead = rng.choice(scene.sub)
            new = value - k
            took_away = True
        else:
            k = rng.randint(2, scale.add)
            if value + k > scale.max_value:
                continue
            clause, lead = rng.choice(scene.add)
            new = value + k
        events.append(clause.format(k=k, **fill))
        steps.append(f"{value} {op} {k} = {new}" if terse else
                     f"{lead.format(k=k, **fill)}, there are {value} {op} {k} = {new} {obj}.")
        value = new

    steps[-1] += f". {ANSWER_PHRASE} {value}." if terse else f" {ANSWER_PHRASE} {value}."
    connectives = rng.choice(_TRANSFER_CONNECTIVES)
    one_sentence = rng.random() < 0.5
    questions = _TRANSFER_QUESTIONS + (_TRANSFER_LEFT if took_away else _TRANSFER_GREW)
    question = rng.choice(questions).format(**fill)
    story = " ".join(part for part in (intro, _join_events(connectives, events, one_sentence), question) if part)
    return story, steps, value


def _join_events(connectives: tuple[str, ...], events: list[str], one_sentence: bool) -> str:
    """'In the morning, x. Around noon, y.' or 'In the morning, x; around noon, y.' (a lone event: 'Later, x.')"""
    if not events:
        return ""
    if len(events) == 1:
        return f"{connectives[2]}, {events[0]}."
    lead = [f"{c}, {e}" for c, e in zip(connectives, events)]
    if one_sentence:
        return "; ".join(lead[:1] + [x[0].lower() + x[1:] for x in lead[1:]]) + "."
    return " ".join(x + "." for x in lead)


_MAKERS = {"standard": _make_problem, "transfer": _make_transfer_problem}


# --- splits ------------------------------------------------------------------------------------------------
def _generate(rng: random.Random, n: int, split: str, exclude: set[str], style: str,
              ops: tuple[int, int], scale: _NumberScale, phrasing: str = "standard") -> list[dict[str, Any]]:
    make = _MAKERS[phrasing]
    rows: list[dict[str, Any]] = []
    seen = set(exclude)
    width = max(4, len(str(n)))
    attempts = 0
    while len(rows) < n:
        attempts += 1
        if attempts > 50 * n + 1000:
            raise ValueError(f"could not draw {n} distinct demo problems for the {split} split")
        problem, steps, answer = make(rng, style, ops, scale)
        if problem in seen:
            continue
        seen.add(problem)
        row = {
            "id": f"demo-{split}-{len(rows) + 1:0{width}d}",
            "problem": problem,
            "steps": steps,
            "answer": str(answer),
            "domain": "math",
            "num_ops": len(steps),
        }
        if phrasing != "standard":  # standard rows keep their old fields (and their files their old bytes)
            row["phrasing"] = phrasing
        rows.append(row)
    return rows


def separate_answer_step(row: dict[str, Any]) -> dict[str, Any]:
    """The same row with the final answer as a step of its own: ``[..., "33 + 15 = 48", "The answer is 48."]``.

    Every operation step is then one operation, and stopping is a step the model writes when the steps so
    far have solved the problem (``answer_step=True``; docs/results.md). ``num_ops`` still counts operations.

    >>> separate_answer_step({"steps": ["3 + 4 = 7. The answer is 7."], "answer": "7"})["steps"]
    ['3 + 4 = 7', 'The answer is 7.']
    """
    *head, last = row["steps"]
    tail = f" {ANSWER_PHRASE} {row['answer']}."
    if not last.endswith(tail):
        raise ValueError(f"last step of {row.get('id')!r} does not end with the answer: {last!r}")
    rest = last[: -len(tail)]
    if re.fullmatch(r"[\d +*=-]+\.", rest):  # an equations step: no full stop, like the steps before it
        rest = rest[:-1]
    return {**row, "steps": [*head, rest, f"{ANSWER_PHRASE} {row['answer']}."]}


def _stream(split: str, seed: int) -> random.Random:
    return random.Random(STREAMS[split].format(seed=seed))


@lru_cache(maxsize=32)
def _reserved(seed: int, ops: tuple[int, int], numbers: str) -> frozenset[str]:
    """The first RESERVE distinct problem texts of the dev and the train streams (fewer if a stream runs dry)."""
    texts: set[str] = set()
    for split in ("dev", "train"):
        rng, drawn, attempts = _stream(split, seed), set(), 0
        while len(drawn) < RESERVE and attempts < 50 * RESERVE:
            attempts += 1
            drawn.add(_make_problem(rng, "equations", ops, NUMBER_SCALES[numbers])[0])  # text is style-free
        texts |= drawn
    return frozenset(texts)


def _check_options(style: str, min_ops: int, max_ops: int, numbers: str, counts: dict[str, int]) -> None:
    if numbers not in NUMBER_SCALES:
        raise ValueError(f"numbers must be one of {', '.join(NUMBER_SCALES)}, got {numbers!r}")
    negative = [name for name, n in counts.items() if n < 0]
    if negative:
        raise ValueError(f"{' and '.join(negative)} must be >= 0")
    if not 1 <= min_ops <= max_ops:
        raise ValueError(f"need 1 <= min_ops <= max_ops, got {min_ops} and {max_ops}")
    if style not in STYLES:
        raise ValueError(f"style must be one of {', '.join(STYLES)}, got {style!r}")


def make_demo_splits(n_train: int = 400, n_dev: int = 100, n_test: int = 100, n_transfer: int = 100,
                     seed: int = 0, style: str = "prose", min_ops: int = MIN_OPS, max_ops: int = MAX_OPS,
                     numbers: str = "standard", answer_step: bool = False) -> dict[str, list[dict]]:
    """Return {"train", "dev", "test", "transfer": rows} in the trajectory format; deterministic for a seed.

    ``dev`` is for tuning; ``test`` is the published split and must never be read while tuning; ``transfer``
    asks the same arithmetic in a phrasing family no split trains on. No problem text is in two splits.
    ``min_ops``/``max_ops`` set the range of steps per problem (default 2-4); 1-step problems make a
    mixed-difficulty stream, e.g. for routing (docs/routing.md). ``numbers`` picks a key of
    ``NUMBER_SCALES``: "standard" (values up to 999) or "small" (operands <= 9, values <= 50).
    ``answer_step`` writes the final answer as a step of its own (:func:`separate_answer_step`); the
    problems are the same either way.
    """
    _check_options(style, min_ops, max_ops, numbers,
                   {"n_train": n_train, "n_dev": n_dev, "n_test": n_test, "n_transfer": n_transfer})
    scale, ops = NUMBER_SCALES[numbers], (min_ops, max_ops)
    # Order test, dev, transfer, train: each split skips the texts of the ones before it (see the module doc).
    test = _generate(_stream("test", seed), n_test, "test", set(_reserved(seed, ops, numbers)), style, ops, scale)
    taken = {row["problem"] for row in test}
    dev = _generate(_stream("dev", seed), n_dev, "dev", taken, style, ops, scale)
    taken |= {row["problem"] for row in dev}
    transfer = _generate(_stream("transfer", seed), n_transfer, "transfer", taken, style, ops, scale, "transfer")
    taken |= {row["problem"] for row in transfer}
    train = _generate(_stream("train", seed), n_train, "train", taken, style, ops, scale)
    splits = {"train": train, "dev": dev, "test": test, "transfer": transfer}
    if answer_step:
        splits = {name: [separate_answer_step(row) for row in rows] for name, rows in splits.items()}
    return splits


def make_demo_task(n_train: int = 400, n_test: int = 100, seed: int = 0, style: str = "prose",
                   min_ops: int = MIN_OPS, max_ops: int = MAX_OPS, numbers: str = "standard", *,
                   n_dev: int = 100, n_transfer: int = 100, answer_step: bool = False) -> tuple[list[dict], list[dict]]:
    """Return (train rows, test rows) of ``make_demo_splits`` with the same arguments (the rows
    ``write_demo_task`` writes). The test rows do not depend on n_train, n_dev or n_transfer."""
    splits = make_demo_splits(n_train, n_dev, n_test, n_transfer, seed, style, min_ops, max_ops, numbers, answer_step)
    return splits["train"], splits["test"]


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(path)  # readers never see a half-written file


def write_demo_task(out_dir: str | Path, n_train: int = 400, n_test: int = 100, seed: int = 0,
                    style: str = "prose", min_ops: int = MIN_OPS, max_ops: int = MAX_OPS,
                    numbers: str = "standard", *, n_dev: int = 100, n_transfer: int = 100,
                    answer_step: bool = False) -> dict[str, Any]:
    """Write ``out_dir/{train,dev,test,transfer}.jsonl``; return their paths (keys "train", "dev", "test",
    "transfer"), row counts ("n_train", "n_dev", "n_test", "n_transfer") and the task options."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    splits = make_demo_splits(n_train, n_dev, n_test, n_transfer, seed, style, min_ops, max_ops, numbers, answer_step)
    info: dict[str, Any] = {}
    for name in SPLITS:
        path = out / f"{name}.jsonl"
        _write_jsonl(path, splits[name])
        info[name] = str(path)
    info.update({f"n_{name}": len(splits[name]) for name in SPLITS})
    info.update({"seed": seed, "style": style, "min_ops": min_ops, "max_ops": max_ops, "numbers": numbers,
                 "answer_step": answer_step})
    return info
