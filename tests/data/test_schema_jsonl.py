"""Bad input never crashes: every bad row is named by file:line and field, and skip mode loses no good row."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from srl_rlvr.data.loaders.trajectories import load_trajectories
from srl_rlvr.errors import InvalidRecord, UserInputError

GOOD = {"id": "g", "problem": "What is 2+3?", "steps": ["2+3=5.", "The answer is 5."], "answer": "5"}


def good_row(i: int) -> bytes:
    return json.dumps({**GOOD, "id": f"good-{i}"}).encode() + b"\n"


def test_good_file_loads_and_keeps_extra_fields(tmp_path):
    p = tmp_path / "t.jsonl"
    p.write_bytes(good_row(0) + b"\n" + json.dumps({**GOOD, "id": "x", "source": "me"}).encode() + b"\n")
    rows = load_trajectories(p).rows
    assert [r.id for r in rows] == ["good-0", "x"]
    assert rows[1].metadata == {"source": "me"}
    assert rows[0].domain == "math"


@pytest.mark.parametrize(
    "line, field, words",
    [
        (b"{not json", "<json>", "malformed JSON"),
        (b"[1, 2]", "<row>", "JSON object"),
        (json.dumps({"problem": "p", "steps": ["a"]}).encode(), "id", "required"),
        (json.dumps({"id": 7, "problem": "p", "steps": ["a"]}).encode(), "id", "string"),
        (json.dumps({"id": "a", "problem": "p", "steps": []}).encode(), "steps", "at least one"),
        (json.dumps({"id": "a", "problem": "p", "steps": ["ok", "  "]}).encode(), "steps", "step 2 is empty"),
        (json.dumps({"id": "a", "problem": "p", "steps": ["ok", 3]}).encode(), "steps.1", "string"),
        (json.dumps({"id": "a", "problem": "p"}).encode(), "steps|solution|messages", "exactly one"),
        (json.dumps({"id": "a", "problem": "p", "steps": ["a"], "solution": "b"}).encode(), "steps|solution|messages",
         "exactly one"),
        (json.dumps({"id": "a", "problem": "p", "steps": ["a"], "domain": "chem"}).encode(), "domain", "'math'"),
        (json.dumps({"id": "a", "problem": "", "steps": ["a"]}).encode(), "problem", "empty"),
        (json.dumps({"id": "a", "problem": "p", "messages": [{"role": "user", "content": "x"}]}).encode(), "messages",
         "assistant"),
        (b'{"id": "a", "problem": "caf\xe9", "steps": ["a"]}', "<line>", "UTF-8"),
        (json.dumps({"id": "good-0", "problem": "p", "steps": ["a"]}).encode(), "id", "duplicate"),
    ],
)
def test_each_bad_row_is_located(tmp_path, line, field, words):
    p = tmp_path / "bad.jsonl"
    p.write_bytes(good_row(0) + line + b"\n" + good_row(1))
    with pytest.raises(InvalidRecord) as exc:
        load_trajectories(p)
    bad = exc.value
    assert (bad.path, bad.line, bad.field) == (str(p), 2, field)
    assert words in bad.reason
    assert str(bad).startswith(f"{p}:2: field '{field}'")
    skipped = load_trajectories(p, skip_invalid=True)
    assert [r.id for r in skipped.rows] == ["good-0", "good-1"]
    assert len(skipped.skipped) == 1


def test_huge_line_is_reported_without_reading_it_whole(tmp_path):
    p = tmp_path / "huge.jsonl"
    p.write_bytes(good_row(0) + b'{"id": "' + b"x" * 5000 + b'"}\n' + good_row(1))
    from srl_rlvr.data.loaders.jsonl import load_jsonl
    from srl_rlvr.data.schema import validate_trajectory

    with pytest.raises(InvalidRecord, match=r":2: field '<line>': line is longer than 1000 bytes"):
        load_jsonl(p, validate_trajectory, max_line_bytes=1000)
    res = load_jsonl(p, validate_trajectory, skip_invalid=True, max_line_bytes=1000)
    assert [r.id for r in res.rows] == ["good-0", "good-1"]


def test_missing_file_is_a_user_error(tmp_path):
    with pytest.raises(UserInputError, match="no such file"):
        load_trajectories(tmp_path / "nope.jsonl")


# --- fuzz: many generated bad files -------------------------------------------------------------
json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=5))


def _mutations() -> st.SearchStrategy[bytes]:
    """A single line that must be rejected, drawn from every way we know rows go wrong."""
    field = st.sampled_from(["id", "problem", "steps", "domain", "answer"])
    wrong_type = st.builds(
        lambda f, v: json.dumps({**GOOD, f: v}).encode(),
        field,
        st.one_of(st.integers(), st.floats(allow_nan=False), st.booleans(),
                  st.dictionaries(st.text(max_size=3), json_scalars, max_size=2)),
    )
    missing = st.builds(lambda f: json.dumps({k: v for k, v in GOOD.items() if k != f}).encode(),
                        st.sampled_from(["id", "problem", "steps"]))
    truncated = st.builds(lambda n: json.dumps(GOOD).encode()[:n], st.integers(1, len(json.dumps(GOOD)) - 1))
    not_object = st.builds(lambda v: json.dumps(v).encode(),
                           st.one_of(json_scalars.filter(lambda v: v is not None and v != ""),
                                     st.lists(json_scalars, max_size=3)))
    non_utf8 = st.builds(lambda b: b'{"id": "a' + b + b'"}',
                         st.sampled_from([b"\xff", b"\xc3\x28", b"\xe9", b"\x80\x80", b"\xed\xa0\x80"]))
    empty_steps = st.builds(lambda ws: json.dumps({**GOOD, "steps": ["fine", ws]}).encode(),
                            st.sampled_from(["", " ", "\t\n"]))
    return st.one_of(wrong_type, missing, truncated, not_object, non_utf8, empty_steps)


@settings(max_examples=1200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(bad=_mutations(), before=st.integers(0, 3), after=st.integers(0, 3))
def test_fuzz_bad_files(tmp_path, bad, before, after):
    """≥1000 generated bad files: the error names the right line, and skipping keeps every good row."""
    p = tmp_path / "fuzz.jsonl"
    lines = ([good_row(i) for i in range(before)] + [bad.replace(b"\n", b" ") + b"\n"]
             + [good_row(before + i) for i in range(after)])
    p.write_bytes(b"".join(lines))
    with pytest.raises(InvalidRecord) as exc:
        load_trajectories(p)
    assert exc.value.line == before + 1
    assert exc.value.field
    res = load_trajectories(p, skip_invalid=True)
    assert [r.id for r in res.rows] == [f"good-{i}" for i in range(before + after)]
    assert [s.line for s in res.skipped] == [before + 1]
