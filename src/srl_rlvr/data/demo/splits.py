"""The demo task's four splits: seeded streams, disjoint texts, and the JSONL files they are written to.

    >>> splits = make_demo_splits(n_train=3, n_dev=2, n_test=2, n_transfer=2, numbers="small")
    >>> {name: len(rows) for name, rows in splits.items()}
    {'train': 3, 'dev': 2, 'test': 2, 'transfer': 2}

The draw order and what each split depends on are in the package docstring (:mod:`srl_rlvr.data.demo`).
"""

from __future__ import annotations

import json
import random
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from srl_rlvr.data.demo.problems import (
    ANSWER_PHRASE,
    MAX_OPS,
    MIN_OPS,
    NUMBER_SCALES,
    STYLES,
    NumberScale,
    make_problem,
)
from srl_rlvr.data.demo.transfer import make_transfer_problem

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

_MAKERS = {"standard": make_problem, "transfer": make_transfer_problem}


def _generate(rng: random.Random, n: int, split: str, exclude: set[str], style: str,
              ops: tuple[int, int], scale: NumberScale, phrasing: str = "standard") -> list[dict[str, Any]]:
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
            drawn.add(make_problem(rng, "equations", ops, NUMBER_SCALES[numbers])[0])  # text is style-free
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
                   n_dev: int = 100, n_transfer: int = 100,
                   answer_step: bool = False) -> tuple[list[dict], list[dict]]:
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

