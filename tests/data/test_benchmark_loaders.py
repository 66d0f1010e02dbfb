"""AMC23 / AIME24 / AIME25 loaders on fixtures in their public datasets' exact column shape."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from srl_rlvr.data.loaders.benchmarks import BENCHMARKS, load_benchmark
from srl_rlvr.data.loaders.registry import detect_format, load_source
from srl_rlvr.errors import InvalidRecord
from srl_rlvr.eval.datasets import load_eval_items
from srl_rlvr.rewards.math import math_answer_reward

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
FILES = {"amc23": FIXTURES / "amc23_sample.jsonl", "aime24": FIXTURES / "aime24_sample.jsonl",
         "aime25": FIXTURES / "aime25_sample.jsonl"}
# The column order and JSON types `Dataset.to_json` writes for each public dataset.
SHAPES = {
    "amc23": [("id", int), ("question", str), ("answer", float), ("url", str)],
    "aime24": [("id", int), ("problem", str), ("solution", str), ("answer", str), ("url", str), ("year", str)],
    "aime25": [("problem", str), ("answer", str), ("id", str)],
}
ANSWERS = {"amc23": ["27", "4", "8"], "aime24": ["204", "025", "809"], "aime25": ["70", "588", "16"]}


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize("name", sorted(FILES))
def test_fixture_has_the_public_column_shape(name):
    rows = _rows(FILES[name])
    assert len(rows) == 3
    for row in rows:
        assert [(k, type(v)) for k, v in row.items()] == SHAPES[name]
    assert [c for c, _ in SHAPES[name]] == list(BENCHMARKS[name].columns)


@pytest.mark.parametrize("name", sorted(FILES))
def test_loads_as_trajectories_with_answers(name):
    result = load_benchmark(name, FILES[name])
    raw = _rows(FILES[name])
    assert result.skipped == []
    assert [t.answer for t in result.rows] == ANSWERS[name]
    for t, row in zip(result.rows, raw):
        assert t.id == f"{name}-{row['id']}"
        assert t.problem == row[BENCHMARKS[name].problem_column]
        assert t.metadata["benchmark"] == name
    first = result.rows[0]
    if name == "aime24":
        assert first.solution == raw[0]["solution"] and first.metadata["solution_is_placeholder"] is False
        assert first.metadata["url"].endswith("2024_AIME_I_Problems/Problem_1") and first.metadata["year"] == "2024"
    else:
        assert first.solution == f"The answer is {first.answer}." and first.metadata["solution_is_placeholder"] is True


@pytest.mark.parametrize("name", sorted(FILES))
def test_auto_detection_and_the_eval_loader(name):
    assert detect_format(str(FILES[name])) == name
    assert [t.answer for t in load_source(str(FILES[name])).rows] == ANSWERS[name]
    items = load_eval_items(str(FILES[name]))
    assert items.skipped == [] and len(items.rows) == 3  # every benchmark answer is scorable


def test_answers_score_with_the_rlvr_reward():
    aime24 = load_benchmark("aime24", FILES["aime24"]).rows
    assert math_answer_reward("So xy = \\boxed{25}.", aime24[1].answer) == 1.0  # "025" is 25
    amc = load_benchmark("amc23", FILES["amc23"]).rows
    assert math_answer_reward("They meet after 27 miles. The answer is 27.", amc[0].answer) == 1.0
    assert math_answer_reward("The answer is 28.", amc[0].answer) == 0.0


def _bad(tmp_path: Path, name: str, mutate) -> Path:
    rows = _rows(FILES[name])
    mutate(rows[1])
    path = tmp_path / f"{name}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.mark.parametrize("name, mutate, field, reason", [
    ("amc23", lambda r: r.pop("question"), "question", "is required"),
    ("amc23", lambda r: r.update(answer=[27]), "answer", "expected a number or a string, got list"),
    ("amc23", lambda r: r.update(answer=True), "answer", "expected a number or a string, got bool"),
    ("amc23", lambda r: r.update(id=1.5), "id", "expected an integer or a string, got float"),
    ("aime24", lambda r: r.update(problem="  "), "problem", "must not be empty"),
    ("aime24", lambda r: r.update(solution=None), "solution", "is required"),
    ("aime25", lambda r: r.pop("answer"), "answer", "is required"),
    ("aime25", lambda r: r.update(answer=""), "answer", "must not be empty"),
])
def test_bad_rows_name_file_line_and_column(tmp_path, name, mutate, field, reason):
    path = _bad(tmp_path, name, mutate)
    with pytest.raises(InvalidRecord) as info:
        load_source(str(path), fmt=name)
    assert (info.value.path, info.value.line, info.value.field) == (str(path), 2, field)
    assert reason in info.value.reason
    assert str(info.value).startswith(f"{path}:2: field '{field}'")
    skipped = load_source(str(path), fmt=name, skip_invalid=True)
    assert len(skipped.rows) == 2 and len(skipped.skipped) == 1


def test_malformed_json_line_is_located(tmp_path):
    path = tmp_path / "aime25.jsonl"
    path.write_text(FILES["aime25"].read_text(encoding="utf-8") + '{"problem": "x", "answer": \n', encoding="utf-8")
    with pytest.raises(InvalidRecord, match=rf"{path}:4: field '<json>'"):
        load_source(str(path), fmt="aime25")
