"""The demo task's transfer phrasing family: the same operations and number scale, other wording.

No training split uses it (``make_demo_splits`` draws the ``transfer`` split from it).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from srl_rlvr.data.demo.problems import ANSWER_PHRASE, NumberScale, draw_operation

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


def make_transfer_problem(rng: random.Random, style: str, ops: tuple[int, int],
                           scale: NumberScale) -> tuple[str, list[str], int]:
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
        if (drawn := draw_operation(rng, value, scale)) is None:
            continue
        op, k, new = drawn
        clause, lead = rng.choice({"*": scene.times, "-": scene.sub, "+": scene.add}[op])
        took_away = took_away or op == "-"
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
