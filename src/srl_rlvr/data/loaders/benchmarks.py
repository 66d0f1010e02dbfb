"""The paper's math benchmarks, read from their Hugging Face datasets exported to JSONL (eval only).

    python -c "from datasets import load_dataset; load_dataset('math-ai/amc23', split='test').to_json('amc23.jsonl')"
    srl-rlvr eval --model M --data amc23.jsonl --out out/amc23 --k 32      # --format amc23 if auto misses it

=======  =====================================  =====  ====  ==================================================
format   Hugging Face dataset                   split  rows  columns (as exported by ``Dataset.to_json``)
=======  =====================================  =====  ====  ==================================================
amc23    ``math-ai/amc23``                      test   40    ``id`` int, ``question`` str, ``answer`` float
                                                             (e.g. ``27.0``), ``url`` str
aime24   ``HuggingFaceH4/aime_2024``            train  30    ``id`` int, ``problem``, ``solution``, ``answer``,
                                                             ``url``, ``year`` (all str)
aime25   ``math-ai/aime25``                     test   30    ``problem``, ``answer``, ``id`` (all str)
=======  =====================================  =====  ====  ==================================================

These are the copies the common open eval suites load (the math-ai sets by Qwen2.5-Math-style
harnesses, the H4 set by lighteval/open-r1). Each row becomes a Trajectory with ``id``
``<format>-<id>``, ``problem``, ``answer`` (a float such as ``27.0`` is written ``27``) and, as
metadata, ``benchmark`` and the remaining columns. The schema needs an expert path: AIME24 carries its
worked ``solution``; AMC23 and AIME25 have none, so ``solution`` is the one line ``The answer is A.``
and ``solution_is_placeholder`` is true. They are test sets: never train on them.

A bad row raises :class:`~srl_rlvr.errors.InvalidRecord` naming ``file:line`` and the column.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from srl_rlvr.data.loaders.jsonl import LoadResult, load_jsonl, required_text
from srl_rlvr.data.schema import Trajectory, validate_trajectory
from srl_rlvr.errors import InvalidRecord


@dataclass(frozen=True)
class Benchmark:
    name: str
    hf_dataset: str
    split: str
    columns: tuple[str, ...]  # the exact column set of the public dataset
    problem_column: str
    solution_column: str | None = None  # a worked solution, when the dataset has one


BENCHMARKS: dict[str, Benchmark] = {
    "amc23": Benchmark("amc23", "math-ai/amc23", "test", ("id", "question", "answer", "url"), "question"),
    "aime24": Benchmark("aime24", "HuggingFaceH4/aime_2024", "train",
                        ("id", "problem", "solution", "answer", "url", "year"), "problem", "solution"),
    "aime25": Benchmark("aime25", "math-ai/aime25", "test", ("problem", "answer", "id"), "problem"),
}


def detect_benchmark(row: Any) -> str | None:
    """The benchmark whose exact column set ``row`` has, else None (used by ``--format auto``).

    >>> detect_benchmark({"id": 0, "question": "q", "answer": 27.0, "url": "u"})
    'amc23'
    >>> detect_benchmark({"problem": "p", "answer": "70", "id": "0"}), detect_benchmark({"problem": "p"})
    ('aime25', None)
    """
    if not isinstance(row, dict):
        return None
    keys = set(row)
    return next((b.name for b in BENCHMARKS.values() if keys == set(b.columns)), None)


def answer_text(value: Any, path: str, line: int) -> str:
    """A benchmark answer as text: strings as given (stripped), integral floats without ``.0``.

    >>> answer_text(27.0, "f", 1), answer_text(" 204 ", "f", 1), answer_text(0.5, "f", 1)
    ('27', '204', '0.5')
    """
    if isinstance(value, bool) or value is None or not isinstance(value, (str, int, float)):
        got = "nothing" if value is None else type(value).__name__
        raise InvalidRecord(path, line, "answer", f"expected a number or a string, got {got}")
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise InvalidRecord(path, line, "answer", f"expected a finite number, got {value}")
        return str(int(value)) if value.is_integer() else repr(value)
    text = str(value).strip()
    if not text:
        raise InvalidRecord(path, line, "answer", "must not be empty")
    return text


def _row_id(row: dict[str, Any], path: str, line: int) -> str:
    value = row.get("id")
    if value is None:
        raise InvalidRecord(path, line, "id", "is required")
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InvalidRecord(path, line, "id", f"expected an integer or a string, got {type(value).__name__}")
    if isinstance(value, str) and not value.strip():
        raise InvalidRecord(path, line, "id", "must not be empty")
    return str(value).strip()


def benchmark_row_to_trajectory(bench: Benchmark, row: Any, path: str, line: int) -> Trajectory:
    if not isinstance(row, dict):
        raise InvalidRecord(path, line, "<row>", f"expected a JSON object, got {type(row).__name__}")
    problem = required_text(row, bench.problem_column, path, line)
    if "answer" not in row:
        raise InvalidRecord(path, line, "answer", "is required")
    answer = answer_text(row["answer"], path, line)
    row_id = _row_id(row, path, line)
    if bench.solution_column is not None:
        solution, placeholder = required_text(row, bench.solution_column, path, line), False
    else:
        solution, placeholder = f"The answer is {answer}.", True
    used = {"id", "answer", bench.problem_column, bench.solution_column}
    record = {k: v for k, v in row.items() if k not in used}
    record.update(id=f"{bench.name}-{row_id}", problem=problem, solution=solution, answer=answer, domain="math",
                  benchmark=bench.name, solution_is_placeholder=placeholder)
    return validate_trajectory(record, path, line)


def load_benchmark(name: str, path: str | Path, skip_invalid: bool = False) -> LoadResult[Trajectory]:
    """Load a benchmark JSONL export (``name``: amc23, aime24 or aime25) as Trajectories with answers."""
    bench = BENCHMARKS[name]
    return load_jsonl(path, lambda row, p, line: benchmark_row_to_trajectory(bench, row, p, line),
                      skip_invalid=skip_invalid)
