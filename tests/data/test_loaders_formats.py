"""Loaders for the bundled formats: s1K-1.1 rows, CHAMP, and agent transcripts with tool calls."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from srl_rlvr.data.loaders.agent import (
    AgentTurn,
    agent_turns,
    load_agent_transcripts,
    problem_from_messages,
    render_action,
    transcript_system_prompt,
)
from srl_rlvr.data.loaders.champ import champ_sort_key, load_champ
from srl_rlvr.data.loaders.s1k import S1K_SOURCES, last_boxed, load_s1k
from srl_rlvr.data.schema import Trajectory
from srl_rlvr.data.steps import split_steps
from srl_rlvr.errors import InvalidRecord, UserInputError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
S1K = FIXTURES / "s1k_sample.jsonl"
AGENT = FIXTURES / "agent_transcripts.jsonl"

S1K_COLUMNS = [
    "solution", "question", "cot_type", "source_type", "metadata", "gemini_thinking_trajectory", "gemini_attempt",
    "deepseek_thinking_trajectory", "deepseek_attempt", "gemini_grade", "gemini_grade_reason", "deepseek_grade",
    "deepseek_grade_reason",
]
# Read off the fixture: a preamble line counts as a step; "Final Answer" text stays in the last step.
S1K_STEP_COUNTS = [5, 3, 4, 4, 4, 7, 4, 6]
S1K_ANSWERS = ["6", "18", "41", "4", r"\frac{1}{2}", "80", "2", None]


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------- s1K


def test_s1k_fixture_has_exactly_the_s1k_1_1_columns() -> None:
    rows = [json.loads(line) for line in S1K.read_text(encoding="utf-8").splitlines()]
    assert len(rows) >= 6
    for row in rows:
        assert list(row) == S1K_COLUMNS
        assert all(isinstance(v, str) for v in row.values())


def test_s1k_loads_deepseek_attempts_by_default() -> None:
    result = load_s1k(S1K)
    raw = [json.loads(line) for line in S1K.read_text(encoding="utf-8").splitlines()]
    assert result.skipped == []
    assert [t.id for t in result.rows] == [f"s1k-{i}" for i in range(1, len(raw) + 1)]
    for t, row in zip(result.rows, raw):
        assert isinstance(t, Trajectory)
        assert t.problem == row["question"]
        assert t.solution == row["deepseek_attempt"] and t.steps is None
        assert t.domain == "math"
        meta = t.metadata
        assert meta["reference_solution"] == row["solution"]
        assert meta["s1k_source"] == "deepseek_attempt"
        assert meta["metadata"] == row["metadata"] and meta["gemini_attempt"] == row["gemini_attempt"]
        assert "deepseek_attempt" not in meta and "question" not in meta
    assert [t.answer for t in result.rows] == S1K_ANSWERS


def test_s1k_attempts_split_into_the_expected_steps() -> None:
    rows = load_s1k(S1K).rows
    assert [len(split_steps(t.solution)) for t in rows] == S1K_STEP_COUNTS


def test_s1k_titles_stay_with_their_steps() -> None:
    for t in load_s1k(S1K).rows:
        steps = split_steps(t.solution)
        titles = re.findall(r"^\d+\. (\*\*[^*]+\*\*:?)", t.solution, flags=re.M)
        assert titles, t.id
        for title in titles:
            holders = [s for s in steps if title in s]
            assert len(holders) == 1 and holders[0].startswith(title), (t.id, title)
        for step in steps:  # no step ends on a title that belongs to the next one
            assert not any(step.endswith(title) for title in titles), (t.id, step)


def test_s1k_final_answer_text_stays_in_the_last_step() -> None:
    rows = load_s1k(S1K).rows
    assert split_steps(rows[0].solution)[-1].endswith(r"Final Answer: \(\boxed{6}\)")
    assert (split_steps(rows[5].solution)[-1].startswith("**Add**")
            and "### Final Answer" in split_steps(rows[5].solution)[-1])


def test_s1k_nested_and_unindented_lists_stay_inside_a_step() -> None:
    rows = load_s1k(S1K).rows
    assert "   3. Multiples of 15" in split_steps(rows[2].solution)[1]
    assert split_steps(rows[3].solution)[2].endswith(r"4. \(3^4 \equiv 4\)")


@pytest.mark.parametrize("source", ["solution", "gemini_attempt"])
def test_s1k_other_source_columns(source: str) -> None:
    rows = load_s1k(S1K, source=source).rows
    raw = [json.loads(line) for line in S1K.read_text(encoding="utf-8").splitlines()]
    assert [t.solution for t in rows] == [r[source] for r in raw]
    assert all(t.metadata["s1k_source"] == source for t in rows)
    if source == "solution":
        assert all("reference_solution" not in t.metadata for t in rows)
        assert [t.answer for t in rows] == ["6", None, "41", "4", r"\frac{1}{2}", "80", "2", None]
    else:
        assert all("deepseek_attempt" in t.metadata for t in rows)
        assert [t.answer for t in rows] == ["6", "18", "41", "4", r"\frac{1}{2}", "80", "2", "30"]


def test_s1k_unknown_source_is_a_user_error() -> None:
    with pytest.raises(UserInputError, match="deepseek_attempt"):
        load_s1k(S1K, source="claude_attempt")
    assert S1K_SOURCES[0] == "deepseek_attempt"


def test_s1k_uses_an_id_column_when_present(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "s.jsonl", [{"id": "row-a", "question": "q?", "deepseek_attempt": "1. a\n2. b"},
                                              {"id": 7, "question": "q?", "deepseek_attempt": "x"}])
    assert [t.id for t in load_s1k(path).rows] == ["row-a", "7"]


@pytest.mark.parametrize(
    ("row", "field", "reason"),
    [
        ({"deepseek_attempt": "1. a"}, "question", "is required"),
        ({"question": 3, "deepseek_attempt": "1. a"}, "question", "expected a string, got int"),
        ({"question": "q?"}, "deepseek_attempt", "is required"),
        ({"question": "q?", "deepseek_attempt": None}, "deepseek_attempt", "is required"),
        ({"question": "q?", "deepseek_attempt": ["1. a"]}, "deepseek_attempt", "expected a string, got list"),
        ({"question": "q?", "deepseek_attempt": "  \n"}, "deepseek_attempt", "must not be empty"),
        ({"id": [1], "question": "q?", "deepseek_attempt": "a"}, "id", "expected a string, got list"),
        ([1, 2], "<row>", "expected a JSON object, got list"),
    ],
)
def test_s1k_bad_rows_name_file_line_and_field(tmp_path: Path, row, field: str, reason: str) -> None:
    good = {"question": "q?", "deepseek_attempt": "1. a\n2. b"}
    path = write_jsonl(tmp_path / "bad.jsonl", [good, row])
    with pytest.raises(InvalidRecord) as err:
        load_s1k(path)
    assert (err.value.line, err.value.field) == (2, field)
    assert str(err.value) == f"{path}:2: field '{field}': {reason}"


def test_s1k_skip_invalid_keeps_going(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "mixed.jsonl", [{"question": "q?", "deepseek_attempt": "a"}, "{not json",
                                                  {"question": "q?"}, {"question": "r?", "deepseek_attempt": "b"}])
    result = load_s1k(path, skip_invalid=True)
    assert [t.id for t in result.rows] == ["s1k-1", "s1k-4"]
    assert [(bad.line, bad.field) for bad in result.skipped] == [(2, "<json>"), (3, "deepseek_attempt")]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (r"so \boxed{12}", "12"),
        (r"\boxed{1} then \boxed{2}", "2"),
        (r"\boxed{\frac{1}{\sqrt{2}}}", r"\frac{1}{\sqrt{2}}"),
        (r"\boxed{\{1, 2\}}", r"\{1, 2\}"),
        (r"\boxed {x = 3}", "x = 3"),
        (r"\boxed{7} and an empty \boxed{ }", "7"),
        (r"\boxed{5} and an unclosed \boxed{6", "5"),
        (r"\boxed{\text{(B)}}", r"\text{(B)}"),
        ("no box", None),
        (r"\boxed{", None),
    ],
)
def test_last_boxed(text: str, expected: str | None) -> None:
    assert last_boxed(text) == expected


# ---------------------------------------------------------------------------------------------- CHAMP


@pytest.fixture(scope="module")
def champ() -> list[Trajectory]:
    return load_champ()


def test_champ_has_270_problems_with_steps_and_answers(champ: list[Trajectory]) -> None:
    assert len(champ) == 270
    assert len({t.id for t in champ}) == 270
    for t in champ:
        assert t.steps and all(s.strip() for s in t.steps)
        assert t.answer and t.answer.strip()
        assert t.problem.strip() and t.domain == "math" and t.solution is None
        assert t.metadata["category"] in {"Combinatorics", "Number-Theory", "Polynomial", "Sequence", "Inequality"}
        assert not any("@@" in s for s in t.steps)


def test_champ_is_sorted_naturally_and_limit_takes_a_prefix(champ: list[Trajectory]) -> None:
    ids = [t.id for t in champ]
    assert ids == sorted(ids, key=champ_sort_key)
    assert ids[:3] == ["P_Combinatorics_1", "P_Combinatorics_2", "P_Combinatorics_3"]
    assert [t.id for t in load_champ(limit=5)] == ids[:5]
    assert load_champ(limit=0) == []
    with pytest.raises(UserInputError):
        load_champ(limit=-1)


def test_champ_first_problem_matches_the_source(champ: list[Trajectory]) -> None:
    first = champ[0]
    assert first.problem.startswith("Let a string consist of digit 1, 2, 3.")
    assert first.answer == "239"
    assert first.steps[0] == ("Let x_n, y_n, z_n be the number of length-n strings "
                              "that end with digit 1, 2, 3 respectively.")
    assert len(first.steps) == 6


# ---------------------------------------------------------------------------------------------- agent


@pytest.fixture(scope="module")
def transcripts() -> list[Trajectory]:
    return load_agent_transcripts(AGENT).rows


def test_agent_fixture_rows_load(transcripts: list[Trajectory]) -> None:
    assert [t.id for t in transcripts] == ["swe-stats-mean", "agent-2", "fib-python"]
    assert all(t.domain == "agent" and t.messages for t in transcripts)
    assert transcripts[0].problem.startswith("In this repository, `mean` in stats.py")
    assert transcripts[1].problem.startswith("How many rows of logs/jobs.csv")  # from a list of content parts
    assert [t.answer for t in transcripts] == [None, "17", "6765"]
    assert transcripts[0].tests.startswith("from stats import mean")
    assert transcripts[2].metadata == {"source": "handwritten"}


def test_one_turn_per_assistant_message(transcripts: list[Trajectory]) -> None:
    for t in transcripts:
        turns = agent_turns(t.messages)
        assert all(isinstance(turn, AgentTurn) for turn in turns)
        assistant = [m for m in t.messages if m["role"] == "assistant"]
        assert len(turns) == len(assistant)
        assert [turn.action for turn in turns] == [render_action(m) for m in assistant]


def test_no_context_holds_its_own_action_or_the_task(transcripts: list[Trajectory]) -> None:
    for t in transcripts:
        task = problem_from_messages(t.messages)
        system = transcript_system_prompt(t.messages)
        turns = agent_turns(t.messages)
        for k, turn in enumerate(turns):
            contents = [c["content"] for c in turn.context]
            assert turn.action not in contents
            assert all(task not in c and (system is None or system not in c) for c in contents)
            assert [c["content"] for c in turn.context if c["role"] == "assistant"] == [x.action for x in turns[:k]]
            assert all(c["role"] in ("user", "assistant") for c in turn.context)
            # roles alternate, which strict chat templates require
            assert all(a["role"] != b["role"] for a, b in zip(turn.context, turn.context[1:]))
        assert turns[0].context == []  # every fixture transcript acts right after the task


def test_observations_follow_their_actions(transcripts: list[Trajectory]) -> None:
    for t in transcripts:
        context = agent_turns(t.messages + [{"role": "assistant", "content": "done"}])[-1].context
        for m in t.messages:
            if m["role"] != "tool":
                continue
            issuer = next(a for a in t.messages if a["role"] == "assistant"
                          and any(c["id"] == m["tool_call_id"] for c in a.get("tool_calls") or []))
            at = [c["content"] for c in context].index(render_action(issuer))
            name = next(c["function"]["name"] for c in issuer["tool_calls"] if c["id"] == m["tool_call_id"])
            assert context[at + 1]["role"] == "user"
            assert f"Observation ({name}):\n{m['content']}" in context[at + 1]["content"]


def test_parallel_tool_results_share_one_user_message(transcripts: list[Trajectory]) -> None:
    turns = agent_turns(transcripts[1].messages)
    assert turns[1].context[1] == {
        "role": "user",
        "content": "Observation (bash):\njob_id,started,status\n1041,2024-05-01T10:00:00,ok\n"
        "1042,2024-05-01T10:05:00,failed"
        "\n\nObservation (bash):\n213 logs/jobs.csv",
    }


def test_later_user_messages_stay_user_messages(transcripts: list[Trajectory]) -> None:
    last = agent_turns(transcripts[2].messages)[-1]
    assert {"role": "user", "content": "Observation (python):\n55"} in last.context
    assert last.context[2:4] == [{"role": "assistant", "content": "F(10) = 55."},
                                 {"role": "user", "content": "Now the 20th as well, please."}]


def test_system_prompt_is_returned_separately(transcripts: list[Trajectory]) -> None:
    assert transcript_system_prompt(transcripts[0].messages).startswith("You are a software engineering agent.")
    assert transcript_system_prompt(transcripts[1].messages) is None
    messages = [{"role": "system", "content": "A"}, {"role": "developer", "content": [{"type": "text", "text": "B"}]},
                {"role": "user", "content": "task"}, {"role": "system", "content": "late note"},
                {"role": "assistant", "content": "ok"}]
    assert transcript_system_prompt(messages) == "A\n\nB"
    assert agent_turns(messages)[0].context == [{"role": "user", "content": "System: late note"}]


def test_render_action_is_deterministic_and_compact() -> None:
    message = {
        "role": "assistant",
        "content": "Editing now.",
        "tool_calls": [
            {"id": "c1", "type": "function",
             "function": {"name": "edit", "arguments": '{"path": "a.py", "b": [1, 2], "a": {"z": 1, "y": "é"}}'}},
            {"id": "c2", "type": "function", "function": {"name": "python", "arguments": "print(1)"}},
        ],
    }
    assert render_action(message) == (
        "Editing now.\n"
        '<tool_call>{"name":"edit","arguments":{"a":{"y":"é","z":1},"b":[1,2],"path":"a.py"}}</tool_call>\n'
        '<tool_call>{"name":"python","arguments":"print(1)"}</tool_call>'
    )
    assert render_action({"role": "assistant", "content": None,
                          "function_call": {"name": "f", "arguments": "{}"}}) == (
        '<tool_call>{"name":"f","arguments":{}}</tool_call>'
    )
    assert render_action({"role": "assistant", "content": "  plain answer \n"}) == "plain answer"


def test_problem_from_messages() -> None:
    assert problem_from_messages([{"role": "system", "content": "s"}, {"role": "user", "content": "do it"}]) == "do it"
    parts = [{"type": "text", "text": "part one"}, {"type": "image_url", "image_url": {"url": "x"}},
             {"type": "text", "text": "part two"}]
    assert problem_from_messages([{"role": "user", "content": parts}]) == "part one\npart two"
    with pytest.raises(ValueError):
        problem_from_messages([{"role": "assistant", "content": "hi"}])


def test_explicit_problem_wins_and_id_defaults_to_the_line(tmp_path: Path) -> None:
    messages = [{"role": "user", "content": "task text"}, {"role": "assistant", "content": "answer"}]
    path = write_jsonl(tmp_path / "a.jsonl", ["", {"messages": messages, "problem": "Stated problem"},
                                              {"messages": messages}])
    rows = load_agent_transcripts(path).rows
    assert [(t.id, t.problem) for t in rows] == [("agent-2", "Stated problem"), ("agent-3", "task text")]


@pytest.mark.parametrize(
    ("row", "field", "reason"),
    [
        ({"messages": {"role": "user"}}, "messages", "expected a list of chat messages, got dict"),
        ({"id": "x"}, "messages", "is required"),
        ({"messages": [{"role": "user", "content": "t"}, {"content": "no role"}]}, "messages.1.role", "is required"),
        ({"messages": [{"role": "user", "content": "t"}, "hi"]}, "messages.1", "expected a message object, got str"),
        ({"messages": [{"role": "user", "content": "t"}, {"role": "robot", "content": "x"}]}, "messages.1.role",
         "unknown role 'robot' (expected one of user, assistant, system, developer, tool, function, ipython)"),
        ({"messages": [{"role": "user", "content": "t"}, {"role": "tool", "content": "x"}]}, "messages",
         "holds no assistant message, so there is no expert action"),
        ({"messages": [{"role": "user", "content": "t"}, {"role": "assistant", "content": 5}]}, "messages.1.content",
         "expected a string or a list of parts, got int"),
        ({"messages": [{"role": "user", "content": "t"}, {"role": "assistant", "content": None}]},
         "messages.1.content",
         "assistant message has neither content nor tool_calls"),
        ({"messages": [{"role": "user", "content": "t"},
                       {"role": "assistant", "content": None,
                        "tool_calls": [{"id": "c", "function": {"arguments": "{}"}}]}]},
         "messages.1.tool_calls.0.function.name", "is required (a string)"),
        ({"messages": [{"role": "system", "content": "s"}, {"role": "assistant", "content": "a"}]}, "messages",
         "the transcript has no user message to take the problem from"),
        ({"messages": [{"role": "user", "content": "t"}, {"role": "assistant", "content": "a"}], "answer": 17},
         "answer", "Input should be a valid string"),
    ],
)
def test_agent_bad_rows_name_file_line_and_field(tmp_path: Path, row: dict, field: str, reason: str) -> None:
    good = {"messages": [{"role": "user", "content": "t"}, {"role": "assistant", "content": "a"}]}
    path = write_jsonl(tmp_path / "bad.jsonl", [good, good, row])
    with pytest.raises(InvalidRecord) as err:
        load_agent_transcripts(path)
    assert str(err.value) == f"{path}:3: field '{field}': {reason}"
    result = load_agent_transcripts(path, skip_invalid=True)
    assert len(result.rows) == 2 and [(b.line, b.field) for b in result.skipped] == [(3, field)]
