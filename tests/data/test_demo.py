"""The demo arithmetic task: deterministic, disjoint splits, and every expert step's arithmetic is right."""

from __future__ import annotations

import itertools
import json
import random
import re
from pathlib import Path

import pytest

from srl_rlvr.data import demo
from srl_rlvr.data.demo import ANSWER_PHRASE, SPLITS, make_demo_splits, make_demo_task, write_demo_task
from srl_rlvr.data.demo import problems as demo_problems
from srl_rlvr.data.demo import splits as demo_splits
from srl_rlvr.data.demo import transfer as demo_transfer
from srl_rlvr.data.schema import validate_trajectory

STEP_MATH = re.compile(r"(\d+) ([-+*]) (\d+) = (\d+)")
TIMES_WORDS = {"2": "doubles", "3": "triples", "4": "quadruples"}
OPS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}
SMALL = {"min_ops": 1, "max_ops": 3, "numbers": "small"}
# The split called "test" before dev existed, for seed 0: dev must keep exactly these problems.
OLD_TEST_FIRST = ("Mia has 41 cookies. First she bakes 2 more, and then she sells 34 cookies. "
                  "How many cookies does Mia have at the end?")
OLD_TEST_FIRST_SMALL = "Mia has 11 cookies. She bakes 2 more. How many cookies does Mia have at the end?"


@pytest.fixture(scope="module")
def splits() -> dict[str, list[dict]]:
    return make_demo_splits(n_train=400, n_dev=100, n_test=100, n_transfer=100, seed=0)


@pytest.fixture(scope="module")
def small_splits() -> dict[str, list[dict]]:
    return make_demo_splits(n_train=400, n_dev=100, n_test=100, n_transfer=100, seed=0, **SMALL)


@pytest.fixture(scope="module")
def equation_splits() -> dict[str, list[dict]]:
    return make_demo_splits(n_train=100, n_dev=50, n_test=50, n_transfer=100, seed=1, style="equations", **SMALL)


@pytest.fixture(params=["splits", "small_splits", "equation_splits"])
def any_splits(request: pytest.FixtureRequest) -> dict[str, list[dict]]:
    return request.getfixturevalue(request.param)


def _all(splits: dict[str, list[dict]]) -> list[dict]:
    return [row for name in SPLITS for row in splits[name]]


def _texts(rows: list[dict]) -> list[str]:
    return [r["problem"] for r in rows]


def _core(rows: list[dict]) -> list[tuple]:
    return [(r["problem"], r["steps"], r["answer"], r["num_ops"]) for r in rows]


def _old_test_split(n: int, seed: int, style: str = "prose", min_ops: int = 2, max_ops: int = 4,
                    numbers: str = "standard") -> list[dict]:
    """The test split as it was before dev existed: the 'srl-rlvr-demo-test-' stream, excluding nothing."""
    return demo_splits._generate(random.Random(f"srl-rlvr-demo-test-{seed}"), n, "test", set(), style,
                          (min_ops, max_ops), demo.NUMBER_SCALES[numbers])


# --- shape ------------------------------------------------------------------------------------------------
def test_counts_ids_and_fields(splits: dict[str, list[dict]]) -> None:
    assert {name: len(rows) for name, rows in splits.items()} == {"train": 400, "dev": 100, "test": 100,
                                                                   "transfer": 100}
    assert splits["train"][0]["id"] == "demo-train-0001" and splits["test"][-1]["id"] == "demo-test-0100"
    assert splits["dev"][0]["id"] == "demo-dev-0001" and splits["transfer"][-1]["id"] == "demo-transfer-0100"
    assert len({r["id"] for r in _all(splits)}) == 700
    base = {"id", "problem", "steps", "answer", "domain", "num_ops"}
    for i, row in enumerate(_all(splits)):
        # Standard rows keep their old fields (so train.jsonl keeps its bytes); transfer rows say so.
        transfer = row["id"].startswith("demo-transfer-")
        assert set(row) == (base | {"phrasing"} if transfer else base)
        assert not transfer or row["phrasing"] == "transfer"
        assert row["domain"] == "math" and row["num_ops"] == len(row["steps"])
        validate_trajectory(row, "demo", i + 1)  # the public trajectory contract accepts every row


def test_make_demo_task_returns_the_train_and_test_splits() -> None:
    train, test = make_demo_task(40, 20, seed=3, n_dev=30, n_transfer=10)
    got = make_demo_splits(n_train=40, n_dev=30, n_test=20, n_transfer=10, seed=3)
    assert (train, test) == (got["train"], got["test"])
    assert make_demo_task(40, 20, seed=3) == (lambda s: (s["train"], s["test"]))(
        make_demo_splits(40, 100, 20, 100, seed=3))


# --- the protocol: disjoint, independent, dev is the old test -------------------------------------------
def test_deterministic_for_a_seed() -> None:
    assert make_demo_splits(50, 20, 20, 20, seed=3) == make_demo_splits(50, 20, 20, 20, seed=3)
    other = make_demo_splits(50, 20, 20, 20, seed=4)
    for name, rows in make_demo_splits(50, 20, 20, 20, seed=3).items():
        assert rows != other[name], name
    assert make_demo_task(50, 20, seed=3) == make_demo_task(50, 20, seed=3)


def test_styles_draw_the_same_problems() -> None:
    prose = make_demo_splits(30, 30, 30, 30, seed=2, **SMALL)
    terse = make_demo_splits(30, 30, 30, 30, seed=2, style="equations", **SMALL)
    for name in SPLITS:
        assert _texts(prose[name]) == _texts(terse[name]) and prose[name] != terse[name], name


@pytest.mark.parametrize("options", [{}, SMALL, {"min_ops": 1, "max_ops": 1, "numbers": "small"}],
                         ids=["standard", "small-1to3", "small-1op"])
def test_splits_share_no_problem_text(options: dict) -> None:
    # One-operation small problems collide often: the exclusions must still leave every pair disjoint.
    got = make_demo_splits(300, 300, 300, 300, seed=0, **options)
    for name, rows in got.items():
        assert len(set(_texts(rows))) == len(rows) == 300, name
    for a, b in itertools.combinations(SPLITS, 2):
        assert set(_texts(got[a])).isdisjoint(_texts(got[b])), (a, b)


def test_exclusions_are_exercised_where_collisions_happen() -> None:
    # In the one-operation small task the heldout stream does draw dev/train-stream problems, and the train
    # stream draws dev problems: the splits above are disjoint because these were skipped, not by luck.
    options = {"min_ops": 1, "max_ops": 1, "numbers": "small"}
    ops, scale = (1, 1), demo.NUMBER_SCALES["small"]
    raw_test = demo_splits._generate(random.Random("srl-rlvr-demo-heldout-0"), 300, "test", set(), "prose", ops, scale)
    got = make_demo_splits(300, 300, 300, 300, seed=0, **options)
    assert set(_texts(raw_test)) & set(_texts(_old_test_split(demo.RESERVE, 0, **options)))
    assert _texts(got["test"]) != _texts(raw_test)
    raw_train = demo_splits._generate(random.Random("srl-rlvr-demo-train-0"), 300, "train", set(), "prose", ops, scale)
    assert set(_texts(raw_train)) & set(_texts(got["dev"])) and _texts(got["train"]) != _texts(raw_train)


def test_test_split_depends_only_on_its_own_size() -> None:
    ref = make_demo_splits(10, 10, 30, 10, seed=1)["test"]
    for n_train, n_dev, n_transfer in [(300, 10, 10), (10, 250, 10), (10, 10, 250), (0, 0, 0), (500, 500, 500)]:
        assert make_demo_splits(n_train, n_dev, 30, n_transfer, seed=1)["test"] == ref
    assert make_demo_task(10, 30, seed=1)[1] == make_demo_task(300, 30, seed=1, n_dev=0, n_transfer=7)[1] == ref
    # A longer test split extends a shorter one.
    assert make_demo_splits(0, 0, 60, 0, seed=1)["test"][:30] == [
        {**r, "id": f"demo-test-{i + 1:04d}"} for i, r in enumerate(ref)]


def test_dev_and_transfer_do_not_depend_on_the_other_sizes() -> None:
    for options in ({}, SMALL):
        ref = make_demo_splits(10, 40, 10, 40, seed=5, **options)
        for n_train, n_test in [(400, 10), (10, 400), (0, 0)]:
            got = make_demo_splits(n_train, 40, n_test, 40, seed=5, **options)
            assert got["dev"] == ref["dev"] and got["transfer"] == ref["transfer"]


def test_dev_is_the_old_test_split() -> None:
    # Earlier sessions chose the recipe on the old test split, so it is dev now: same problems, steps, answers.
    for options, first in (({}, OLD_TEST_FIRST), (SMALL, OLD_TEST_FIRST_SMALL)):
        for style in demo.STYLES:
            dev = make_demo_splits(400, 100, 100, 100, seed=0, style=style, **options)["dev"]
            assert dev[0]["problem"] == first
            assert _core(dev) == _core(_old_test_split(100, 0, style, **options))
    dev = make_demo_splits(0, 200, 100, 0, seed=3, min_ops=1, max_ops=4)["dev"]
    assert _core(dev) == _core(_old_test_split(200, 3, min_ops=1, max_ops=4))
    assert [r["id"] for r in dev[:2]] == ["demo-dev-0001", "demo-dev-0002"]


def test_train_keeps_its_stream(splits: dict[str, list[dict]]) -> None:
    # Train is the train stream minus dev (the old test); the new test/transfer splits never displace a row.
    old_train = demo_splits._generate(random.Random("srl-rlvr-demo-train-0"), 400, "train", set(_texts(splits["dev"])),
                               "prose", (2, 4), demo.NUMBER_SCALES["standard"])
    assert splits["train"] == old_train


# --- arithmetic -----------------------------------------------------------------------------------------
def test_two_to_four_steps_with_all_operations(splits: dict[str, list[dict]]) -> None:
    for name in SPLITS:
        rows = splits[name]
        assert {len(r["steps"]) for r in rows} == {2, 3, 4}, name
        assert {STEP_MATH.search(s).group(2) for r in rows for s in r["steps"]} == {"+", "-", "*"}, name


def test_every_step_is_correct_and_chains_to_the_answer(any_splits: dict[str, list[dict]]) -> None:
    for row in _all(any_splits):
        transfer = row.get("phrasing") == "transfer"
        running = None
        for k, step in enumerate(row["steps"]):
            assert len(step) <= 100, step
            found = STEP_MATH.findall(step)
            assert len(found) == 1, f"{row['id']}: one operation per step: {step!r}"
            a, op, b, c = found[0]
            assert OPS[op](int(a), int(b)) == int(c), f"{row['id']}: wrong arithmetic in {step!r}"
            assert 0 < int(c) < 1000
            if running is not None:
                assert int(a) == running, f"{row['id']}: step {k + 1} does not continue from {running}"
            elif transfer:
                assert re.search(rf"\b{a}\b", row["problem"]), f"{row['id']}: {a} is not in the problem"
            elif op != "*" or "starts with" not in step:
                # A plain start: the first operation must begin from the number in the problem.
                assert f" has {a} " in row["problem"]
            running = int(c)
        assert row["answer"] == str(running)
        assert row["steps"][-1].endswith(f"{ANSWER_PHRASE} {row['answer']}.")
        assert all(ANSWER_PHRASE not in s for s in row["steps"][:-1])
        for step in row["steps"]:
            # Every operand the steps use was given in the problem, as a number (or, standard, as "doubles" etc.)
            b = STEP_MATH.search(step).group(3)
            assert re.search(rf"\b{b}\b", row["problem"]) or (
                not transfer and TIMES_WORDS.get(b, "-") in row["problem"]), step


def test_small_numbers_keep_operands_and_values_small(small_splits: dict[str, list[dict]]) -> None:
    for name in SPLITS:
        rows = small_splits[name]
        assert {len(r["steps"]) for r in rows} == {1, 2, 3}, name
        for row in rows:
            for step in row["steps"]:
                a, op, b, c = STEP_MATH.search(step).groups()
                assert int(b) <= 9 and 0 < int(c) <= 50, f"{row['id']}: {step!r}"
    # Same seed, other scale: other problems (the scale is part of the task's identity).
    assert small_splits["test"] != make_demo_task(0, 100, seed=0, min_ops=1, max_ops=3)[1]


def test_equation_steps_are_bare(equation_splits: dict[str, list[dict]]) -> None:
    for row in _all(equation_splits):
        for step in row["steps"][:-1]:
            assert re.fullmatch(r"\d+ [-+*] \d+ = \d+", step), step
        assert re.fullmatch(rf"\d+ [-+*] \d+ = \d+\. {ANSWER_PHRASE} \d+\.", row["steps"][-1])


# --- the transfer phrasing family ------------------------------------------------------------------------
def _standard_verb_phrases() -> set[str]:
    """Every verb phrase of the standard family's clauses ('buys', 'gives away', 'lends out', 'is handed', ...)."""
    phrases = {"ends up with", "times as many", *(v for pair in demo_problems._TIMES_VERB.values() for v in pair)}
    for scene in demo.SCENES:
        for clause, _ in scene.add + scene.sub:
            phrases.add(clause.split(" {k}")[0])
    return phrases


# Other forms of the same verbs, and the standard family's frame words, none of which a transfer problem uses.
STANDARD_WORDS = {"buy", "bought", "give", "gave", "giving", "find", "found", "trade", "traded", "bake", "baked",
                  "sell", "sold", "share", "shared", "pick", "picked", "use", "used", "drop", "dropped", "donate",
                  "donated", "lend", "lent", "lose", "lost", "order", "ordered", "handed", "has", "have", "first",
                  "then", "finally", "doubling", "tripling", "quadrupling", "she", "he", "her", "his"}


def _words(text: str) -> list[str]:
    return ["N" if w.isdigit() else w for w in re.findall(r"[a-z]+|\d+", text.lower())]


def _trigrams(rows: list[dict]) -> set[tuple[str, ...]]:
    return {tuple(w[i:i + 3]) for r in rows for w in [_words(r["problem"])] for i in range(len(w) - 2)}


@pytest.fixture(scope="module", params=[{}, SMALL], ids=["standard", "small"])
def families(request: pytest.FixtureRequest) -> tuple[list[dict], list[dict], str]:
    got = make_demo_splits(600, 100, 100, 600, seed=0, **request.param)
    return got["train"] + got["dev"] + got["test"], got["transfer"], request.param.get("numbers", "standard")


def test_transfer_shares_no_standard_verb_phrase(families: tuple[list[dict], list[dict], str]) -> None:
    standard, transfer, _ = families
    phrases = _standard_verb_phrases()
    assert {"buys", "gives away", "lends out", "is handed", "trades for", "doubles", "ends up with"} <= phrases
    assert all(r.get("phrasing") == "transfer" for r in transfer) and all("phrasing" not in r for r in standard)
    names = {n.lower() for names in demo_problems._NAMES.values() for n in names}
    nouns = {w for scene in demo.SCENES for w in scene.objects + scene.containers}
    for row in transfer:
        text = " ".join(_words(row["problem"]))
        for phrase in phrases:
            assert not re.search(rf"\b{phrase}\b", text), f"{row['id']}: {phrase!r} in {row['problem']!r}"
        shared = set(_words(row["problem"])) & (STANDARD_WORDS | names | nouns)
        assert not shared, f"{row['id']}: standard-family words {shared} in {row['problem']!r}"


def test_transfer_wording_barely_overlaps_the_standard_family(families: tuple[list[dict], list[dict], str]) -> None:
    standard, transfer, _ = families
    ours, theirs = _trigrams(transfer), _trigrams(standard)
    overlap = len(ours & theirs) / len(ours)
    assert overlap < 0.02, sorted(ours & theirs)
    # ... and the transfer family is varied itself: several frames, subjects, connectives and questions.
    assert len(ours) > 1000
    texts = _texts(transfer)
    for part in ("are left?", "remain?", "in all?", "What is the total number of", "hold in the end?",  # questions
                 "In the morning", "On Monday", "To begin with", "Early on", "; ",  # connectives, one-sentence form
                 "bakery", "classroom", "farm", "library", "apiece", "each holding"):  # subjects, frames
        assert any(part in t for t in texts), part
    assert any(t.startswith(demo_transfer._TRANSFER_NAMES) for t in texts)  # and named people
    assert not any(r["problem"].startswith(("First", "Then")) or " First " in r["problem"] for r in transfer)


def test_transfer_matches_the_standard_task_in_size(families: tuple[list[dict], list[dict], str]) -> None:
    # Same operations, step counts and number scale (operand ranges and value cap): only the wording differs.
    standard, transfer, numbers = families
    scale = demo.NUMBER_SCALES[numbers]
    limit = {"+": scale.add, "-": scale.sub, "*": scale.times}
    within = lambda x, lo_hi: lo_hi[0] <= x <= lo_hi[1]  # noqa: E731
    for rows in (standard, transfer):
        assert {STEP_MATH.search(s).group(2) for r in rows for s in r["steps"]} == {"+", "-", "*"}
        assert {r["num_ops"] for r in rows} == (set(range(1, 4)) if numbers == "small" else set(range(2, 5)))
        for row in rows:
            for k, step in enumerate(row["steps"]):
                a, op, b, c = STEP_MATH.search(step).groups()
                a, b, c = int(a), int(b), int(c)
                assert 0 < c <= scale.max_value, step
                box = k == 0 and op == "*" and within(a, scale.box_count) and within(b, scale.box_size)
                assert box or 2 <= b <= limit[op], f"{row['id']}: {step!r}"
                assert k > 0 or box or within(a, scale.start), f"{row['id']}: {step!r}"


# --- files and errors -----------------------------------------------------------------------------------
def test_write_demo_task(tmp_path: Path) -> None:
    info = write_demo_task(tmp_path / "demo", n_train=30, n_test=10, seed=2, n_dev=12, n_transfer=8)
    assert (info["n_train"], info["n_dev"], info["n_test"], info["n_transfer"]) == (30, 12, 10, 8)
    assert {k: info[k] for k in ("seed", "style", "min_ops", "max_ops", "numbers")} == {
        "seed": 2, "style": "prose", "min_ops": 2, "max_ops": 4, "numbers": "standard"}
    expected = make_demo_splits(n_train=30, n_dev=12, n_test=10, n_transfer=8, seed=2)
    for name in SPLITS:
        assert info[name] == str(tmp_path / "demo" / f"{name}.jsonl")
        assert [json.loads(x) for x in Path(info[name]).read_text(encoding="utf-8").splitlines()] == expected[name]
    assert sorted(p.name for p in (tmp_path / "demo").iterdir()) == [f"{n}.jsonl" for n in sorted(SPLITS)]
    # The defaults match make_demo_task's.
    info = write_demo_task(tmp_path / "defaults", n_train=30, n_test=10, seed=2)
    assert (info["n_dev"], info["n_transfer"]) == (100, 100)
    train, test = make_demo_task(30, 10, seed=2)
    assert [json.loads(x) for x in Path(info["train"]).read_text(encoding="utf-8").splitlines()] == train
    assert [json.loads(x) for x in Path(info["test"]).read_text(encoding="utf-8").splitlines()] == test


def test_rejects_unknown_number_scale() -> None:
    with pytest.raises(ValueError, match="numbers must be one of standard, small"):
        make_demo_task(1, 1, numbers="huge")


def test_rejects_negative_counts() -> None:
    with pytest.raises(ValueError):
        make_demo_task(-1, 10)
    with pytest.raises(ValueError, match="n_dev must be >= 0"):
        make_demo_splits(n_dev=-1)
    with pytest.raises(ValueError, match="n_transfer must be >= 0"):
        make_demo_task(1, 1, n_transfer=-2)


@pytest.mark.parametrize("style", ["equations", "prose"])
def test_answer_step_is_a_step_of_its_own(style: str) -> None:
    inline = make_demo_splits(n_train=30, n_dev=10, n_test=10, n_transfer=10, seed=2, style=style, min_ops=1,
                              max_ops=3, numbers="small")
    separate = make_demo_splits(n_train=30, n_dev=10, n_test=10, n_transfer=10, seed=2, style=style, min_ops=1,
                                max_ops=3, numbers="small", answer_step=True)
    for name in inline:
        for a, b in zip(inline[name], separate[name]):
            assert a["problem"] == b["problem"] and a["answer"] == b["answer"] and a["num_ops"] == b["num_ops"]
            assert b["steps"][-1] == f"{ANSWER_PHRASE} {b['answer']}." and len(b["steps"]) == len(a["steps"]) + 1
            assert not any(ANSWER_PHRASE in s for s in b["steps"][:-1])
            assert b["steps"][:-2] == a["steps"][:-1]  # the operation steps before the last are untouched
            last_op = b["steps"][-2]
            assert a["steps"][-1].startswith(last_op.rstrip("."))
            if style == "equations":
                assert re.fullmatch(r"\d+ [-+*] \d+ = \d+", last_op)
            else:
                assert last_op.endswith(".")
