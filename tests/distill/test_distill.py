"""``srl-rlvr distill`` against a real HTTP teacher: a FastAPI app in the OpenAI chat format, on loopback.

The teacher answers demo problems with the exact demo solver's steps (after a think block), except where
a test tells it to be wrong, to stop at max_tokens, to fail with 503 or to go down; it counts every
request per (problem, sample index), the sample index read from the client's X-Distill-Sample header.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from click.testing import CliRunner
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from srl_rlvr.data.demo import make_demo_task
from srl_rlvr.data.demo.solver import solve_demo_problem
from srl_rlvr.errors import InvalidRecord, UserInputError
from srl_rlvr.ops.failures import FailurePolicy
from srl_rlvr.pipelines.distill import distill
from srl_rlvr.pipelines.distill.cache import ResponseCache
from srl_rlvr.pipelines.distill.decontaminate import EvalIndex, words
from srl_rlvr.pipelines.distill.teacher import TeacherReply
from srl_rlvr.serving.live import LiveServer

MODEL = "fake-teacher"
THINK = "Apply each operation in order."
FAST = FailurePolicy(transient_retries=3, backoff_s=0.01, backoff_max_s=0.05)


def demo_rows(n: int) -> list[dict]:
    train, _ = make_demo_task(n_train=n, n_test=4, n_dev=0, n_transfer=0, numbers="small", min_ops=1, max_ops=3)
    return train


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def problem_of(messages: list[dict]) -> str:
    user = next(m["content"] for m in messages if m["role"] == "user")
    return user.split("Problem:\n", 1)[1].split("\n\nSteps so far:", 1)[0]


@dataclass
class FakeTeacher:
    """The teacher's behaviour (tests may change it between runs) and what it saw."""

    wrong: set[str] = field(default_factory=set)  # problem texts answered wrong on every sample
    wrong_first: set[str] = field(default_factory=set)  # ... wrong on sample 0 only
    truncated: set[str] = field(default_factory=set)  # ... cut off, finish_reason "length"
    canned: dict[str, str] = field(default_factory=dict)  # problem text -> the completion to send
    fail_first: int = 0  # the first N requests of each (problem, sample) get 503 + Retry-After: 0
    down_after: int | None = None  # after N answers, every request gets 503 + Retry-After: 0
    delay_s: float = 0.0
    api_key: str | None = None
    requests: Counter = field(default_factory=Counter)  # (problem, sample) -> requests, failed ones too
    bodies: list[dict] = field(default_factory=list)
    answered: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def completion(self, problem: str, sample: int) -> tuple[str, str]:
        if problem in self.canned:
            return self.canned[problem], "stop"
        solved = solve_demo_problem(problem)
        assert solved is not None, problem
        answer, steps = solved
        if problem in self.wrong or (problem in self.wrong_first and sample == 0):
            steps = [*steps[:-1], steps[-1].replace(f"The answer is {answer}.", f"The answer is {answer + 1}.")]
        text = f"<think>{THINK}</think>" + "\n".join(f"Step {i}: {s}" for i, s in enumerate(steps, 1))
        if problem in self.truncated:
            return text[: len(text) // 2], "length"
        return text, "stop"

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/v1/chat/completions")
        async def chat(request: Request):
            body = await request.json()
            problem = problem_of(body["messages"])
            sample = int(request.headers.get("x-distill-sample", "-1"))
            with self.lock:
                self.requests[(problem, sample)] += 1
                self.bodies.append(body)
                seen = self.requests[(problem, sample)]
                down = self.down_after is not None and self.answered >= self.down_after
            if self.api_key and request.headers.get("authorization") != f"Bearer {self.api_key}":
                return JSONResponse({"error": {"message": "bad key"}}, status_code=401)
            if seen <= self.fail_first or down:
                return JSONResponse({"error": {"message": "overloaded"}}, status_code=503,
                                    headers={"Retry-After": "0"})
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            text, finish = self.completion(problem, sample)
            with self.lock:
                self.answered += 1
            return {"id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "object": "chat.completion", "created": 0,
                    "model": body["model"],
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                 "finish_reason": finish}],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20}}

        return app


@pytest.fixture
def teacher():
    fake = FakeTeacher()
    with LiveServer(fake.app()) as server:
        fake.url = server.base_url + "/v1"
        yield fake


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "srl_rlvr.cli.main", *args], capture_output=True, text=True,
                          env=env, timeout=120)


def cli_args(teacher: FakeTeacher, prompts: Path, out: Path, *extra: str) -> list[str]:
    return ["distill", "--teacher-url", teacher.url, "--teacher-model", MODEL, "--prompts", str(prompts),
            "--out", str(out), *extra]


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


# --- (a) kept and rejected rows, (d) data build reads the output, and a rerun asks nothing -----------------
def test_kept_and_rejected_rows_by_reason_then_data_build_and_a_cached_rerun(teacher, tmp_path, monkeypatch):
    rows = demo_rows(10)
    del rows[0]["id"]  # an id is derived from the problem's sha256
    wrong, truncated = {rows[1]["problem"], rows[4]["problem"]}, {rows[7]["problem"]}
    teacher.wrong, teacher.truncated, teacher.api_key = wrong, truncated, "s3cret"
    monkeypatch.setenv("TEACHER_KEY_FOR_TEST", "s3cret")
    prompts = write_jsonl(tmp_path / "problems.jsonl", rows)
    out = tmp_path / "out"

    manifest = distill(prompts, out, teacher.url, MODEL, samples=2, api_key_env="TEACHER_KEY_FOR_TEST",
                       temperature=0.5, max_tokens=256)

    counts = manifest["counts"]
    assert counts["problems"] == 10 and counts["kept"] == 14 and counts["requests_sent"] == 20
    assert counts["rejected"] == {"wrong_answer": 4, "truncated": 2, "unparsable_steps": 0, "contaminated": 0,
                                  "teacher_error": 0}
    assert counts["kept_per_problem"] == {"0": 3, "2": 7}
    assert manifest["complete"] is True and manifest["teacher"] == {"url": teacher.url, "model": MODEL}
    assert manifest["generation"]["temperature"] == 0.5 and manifest["generation"]["max_tokens"] == 256
    assert set(manifest["outputs"]) == {"trajectories.jsonl", "rejected.jsonl", "teacher_cache.jsonl"}
    assert len(manifest["inputs"]["prompts"]["sha256"]) == 64
    # every (problem, sample) asked once, in the OpenAI format
    assert set(teacher.requests.values()) == {1} and len(teacher.requests) == 20
    assert {s for _, s in teacher.requests} == {0, 1}
    body = teacher.bodies[0]
    assert (body["model"], body["temperature"], body["max_tokens"], body["n"]) == (MODEL, 0.5, 256, 1)

    kept, rejected = read_jsonl(out / "trajectories.jsonl"), read_jsonl(out / "rejected.jsonl")
    assert len(kept) == 14 and len({r["id"] for r in kept}) == 14
    by_problem = {r["problem"]: r for r in rows}
    derived = [r for r in kept if r["problem"] == rows[0]["problem"]]
    assert [r["id"] for r in derived] == [derived[0]["metadata"]["problem_id"] + f"-s{s}" for s in (0, 1)]
    assert derived[0]["metadata"]["problem_id"].startswith("p-")
    for row in kept:
        source = by_problem[row["problem"]]
        assert row["answer"] == source["answer"] and row["domain"] == "math"
        assert row["steps"] == solve_demo_problem(row["problem"])[1]  # the "Step k:" markers are off
        meta = row["metadata"]
        assert meta["teacher"] == MODEL and meta["think"] == THINK and meta["request_id"].startswith("chatcmpl-")
        assert row["id"] == f"{meta['problem_id']}-s{meta['sample']}"
    assert Counter(r["reason"] for r in rejected) == {"wrong_answer": 4, "truncated": 2}
    assert {r["problem"] for r in rejected if r["reason"] == "wrong_answer"} == wrong
    assert {r["problem"] for r in rejected if r["reason"] == "truncated"} == truncated

    # (d) the output is a trajectory file as it is
    from srl_rlvr.cli.main import cli

    result = CliRunner().invoke(cli, ["data", "build", "--input", str(out / "trajectories.jsonl"),
                                      "--output", str(tmp_path / "srl.jsonl")])
    assert result.exit_code == 0, result.output
    assert len(read_jsonl(tmp_path / "srl.jsonl")) == sum(len(r["steps"]) for r in kept)

    # a rerun with the same arguments is served from the cache and rewrites identical outputs
    before = {name: (out / name).read_bytes() for name in ("trajectories.jsonl", "rejected.jsonl")}
    again = distill(prompts, out, teacher.url, MODEL, samples=2, api_key_env="TEACHER_KEY_FOR_TEST",
                    temperature=0.5, max_tokens=256)
    assert again["counts"]["requests_sent"] == 0 and again["counts"]["cached_hits"] == 20
    assert {name: (out / name).read_bytes() for name in before} == before
    assert sum(teacher.requests.values()) == 20


def test_code_problems_are_checked_in_the_sandbox(teacher, tmp_path):
    good, bad = "Write add(a, b) returning a + b.", "Write sub(a, b) returning a - b."
    teacher.canned = {
        good: "<think>easy</think>Step 1: Define add.\nStep 2: Return the sum.\n```python\ndef add(a, b):\n"
              "    return a + b\n```",
        bad: "<think>easy</think>Step 1: Define sub.\nStep 2: Return it.\n```python\ndef sub(a, b):\n"
             "    return a + b\n```",
    }
    prompts = write_jsonl(tmp_path / "code.jsonl", [
        {"id": "add", "problem": good, "tests": ["assert add(1, 2) == 3", "assert add(0, 0) == 0"]},
        {"id": "sub", "problem": bad, "tests": ["assert sub(3, 1) == 2"]},
    ])
    manifest = distill(prompts, tmp_path / "out", teacher.url, MODEL)
    assert manifest["counts"]["kept"] == 1 and manifest["counts"]["rejected"]["wrong_answer"] == 1
    (kept,) = read_jsonl(tmp_path / "out" / "trajectories.jsonl")
    assert kept["id"] == "add-s0" and kept["domain"] == "code" and kept["tests"][0] == "assert add(1, 2) == 3"
    assert kept["steps"][0] == "Define add." and kept["metadata"]["think"] == "easy"


# --- (b) resampling hard problems ------------------------------------------------------------------------
def test_max_attempts_resamples_a_problem_whose_first_sample_is_wrong(teacher, tmp_path):
    rows = demo_rows(4)
    hard, hopeless = rows[1]["problem"], rows[2]["problem"]
    teacher.wrong_first, teacher.wrong = {hard}, {hopeless}
    prompts = write_jsonl(tmp_path / "problems.jsonl", rows)

    once = distill(prompts, tmp_path / "once", teacher.url, MODEL, samples=1, max_attempts=1)
    assert once["counts"]["kept"] == 2  # without resampling the hard problem is lost

    manifest = distill(prompts, tmp_path / "out", teacher.url, MODEL, samples=1, max_attempts=3)
    counts = manifest["counts"]
    assert counts["kept"] == 3 and counts["rounds"] == 3
    assert counts["rejected"]["wrong_answer"] == 1 + 3  # hard: sample 0; hopeless: samples 0, 1, 2
    assert counts["kept_per_problem"] == {"0": 1, "1": 3}
    kept = {r["id"]: r for r in read_jsonl(tmp_path / "out" / "trajectories.jsonl")}
    assert f"{rows[1]['id']}-s1" in kept and kept[f"{rows[1]['id']}-s1"]["metadata"]["sample"] == 1
    assert sorted(s for (p, s) in teacher.requests if p == hopeless) == [0, 1, 2]
    assert sorted(s for (p, s) in teacher.requests if p == rows[0]["problem"]) == [0]  # solved: not resampled


# --- (c) kill -9 in the middle of a run, then the same command again --------------------------------------
def complete_cache_lines(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    out = []
    for line in path.read_bytes().split(b"\n")[:-1]:  # the part after the last newline may be cut short
        if line.strip():
            out.append(json.loads(line))
    return out


def test_kill_9_mid_run_then_rerun_repeats_no_finished_request(teacher, tmp_path):
    rows = demo_rows(16)
    teacher.delay_s = 0.2
    prompts = write_jsonl(tmp_path / "problems.jsonl", rows)
    out = tmp_path / "out"
    args = cli_args(teacher, prompts, out, "--concurrency", "2")
    cache = out / "teacher_cache.jsonl"

    proc = subprocess.Popen([sys.executable, "-m", "srl_rlvr.cli.main", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 60
        while len(complete_cache_lines(cache)) < 4:
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "no responses were cached"
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    finished = complete_cache_lines(cache)
    assert 4 <= len(finished) < 16
    problem_by_id = {r["id"]: r["problem"] for r in rows}
    finished_samples = {(problem_by_id[e["problem_id"]], e["sample"]) for e in finished}

    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    assert "kept: 16" in result.stdout
    for sample in finished_samples:
        assert teacher.requests[sample] == 1, f"{sample} was asked again after it was cached"
    kept = read_jsonl(out / "trajectories.jsonl")
    assert len(kept) == 16 and len({r["id"] for r in kept}) == 16
    entries = complete_cache_lines(cache)
    assert len({e["key"] for e in entries}) == len(entries) == 16
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["cached_hits"] >= len(finished) and manifest["complete"] is True


def test_a_cache_line_cut_short_is_dropped_and_cut_off(tmp_path):
    path = tmp_path / "cache.jsonl"
    with ResponseCache(path) as cache:
        cache.put("k1", TeacherReply(request_id="r1", content="a", finish_reason="stop"), "p", 0)
        cache.put("k2", TeacherReply(request_id="r2", content="b", finish_reason="stop"), "p", 1)
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) - 10])  # kill -9 in the middle of the second append
    with ResponseCache(path) as cache:
        assert "k1" in cache and "k2" not in cache and cache.dropped_partial_line
        cache.put("k2", TeacherReply(request_id="r3", content="c"), "p", 1)
    with ResponseCache(path) as cache:
        assert cache.get("k2").request_id == "r3" and not cache.dropped_partial_line
    path.write_bytes(b"not json\n" + path.read_bytes())
    with pytest.raises(UserInputError, match=r"cache\.jsonl:1: unreadable"):
        ResponseCache(path).__enter__()


# --- (e) decontamination -------------------------------------------------------------------------------------
def naive_shares_8gram(a: str, b: str) -> bool:
    wa, wb = words(a), words(b)
    grams = {" ".join(wb[i:i + 8]) for i in range(len(wb) - 7)}
    return any(" ".join(wa[i:i + 8]) in grams for i in range(len(wa) - 7))


def test_decontamination_drops_a_planted_eval_problem_and_counts_it(teacher, tmp_path):
    train, test = make_demo_task(n_train=8, n_test=3, n_dev=0, n_transfer=0, numbers="small", min_ops=1,
                                 max_ops=3)
    planted = {**test[0], "id": "planted"}
    prompts = write_jsonl(tmp_path / "problems.jsonl", [*train, planted])
    # the eval copy differs in case and punctuation only
    eval_rows = [{**t, "problem": t["problem"].upper().replace(".", " ;")} for t in test]
    eval_file = write_jsonl(tmp_path / "eval.jsonl", eval_rows)
    expected = {"planted"} | {r["id"] for r in train if any(naive_shares_8gram(r["problem"], t["problem"])
                                                              for t in test)}

    manifest = distill(prompts, tmp_path / "out", teacher.url, MODEL, decontaminate=[eval_file])

    counts = manifest["counts"]
    assert counts["contaminated"] == len(expected) == counts["rejected"]["contaminated"]
    assert counts["kept"] == 9 - len(expected)
    dropped = [r for r in read_jsonl(tmp_path / "out" / "rejected.jsonl") if r["reason"] == "contaminated"]
    assert {r["id"] for r in dropped} == expected
    planted_row = next(r for r in dropped if r["id"] == "planted")
    assert planted_row["metadata"]["eval_file"] == str(eval_file) and planted_row["metadata"]["eval_line"] == 1
    assert not any(p == planted["problem"] for p, _ in teacher.requests)  # never sent to the teacher
    assert manifest["inputs"]["decontaminate"][0]["problems"] == 3


def test_an_8gram_overlap_counts_and_a_7gram_does_not(tmp_path):
    eval_file = write_jsonl(tmp_path / "eval.jsonl", [{"question": "one two three four five six seven eight nine"}])
    index = EvalIndex([eval_file])
    assert index.match("Zero ONE two, three four five six seven eight!") is not None
    assert index.match("zero one two three four five six seven zzz eight nine") is None
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"question": "ok"}, {"answer": "1"}])
    with pytest.raises(InvalidRecord, match=r"bad\.jsonl:2: field 'problem'"):
        EvalIndex([bad])


# --- (f) transient failures and a teacher that stays down ----------------------------------------------------
def test_503_twice_then_success_is_retried(teacher, tmp_path):
    rows = demo_rows(3)
    teacher.fail_first = 2
    prompts = write_jsonl(tmp_path / "problems.jsonl", rows)
    from srl_rlvr.rewards.math import math_answer_reward

    math_answer_reward("The answer is 1.", "1")  # math-verify's first import is not what is timed
    t0 = time.monotonic()
    manifest = distill(prompts, tmp_path / "out", teacher.url, MODEL, concurrency=1)  # default backoff: 1 s, 2 s
    assert time.monotonic() - t0 < 2.0  # Retry-After: 0 replaced the backoff waits (3 s per sample)
    counts = manifest["counts"]
    assert manifest["complete"] and counts["kept"] == 3 and counts["retries"] == 6
    assert counts["requests_sent"] == 3 and counts["http_requests"] == 9
    assert [teacher.requests[(row["problem"], 0)] for row in rows] == [3, 3, 3]


def test_a_teacher_that_stays_down_gives_one_line_and_keeps_what_was_done(teacher, tmp_path):
    rows = demo_rows(6)
    teacher.down_after = 3
    prompts = write_jsonl(tmp_path / "problems.jsonl", rows)
    out = tmp_path / "out"
    args = cli_args(teacher, prompts, out, "--concurrency", "1")

    result = run_cli(*args)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    (line,) = error_lines(result.stderr)
    assert teacher.url in line and "still failing after 3 retries" in line
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] is False and teacher.url in manifest["error"]
    assert manifest["counts"]["kept"] == 3 and manifest["counts"]["samples_answered"] == 3
    assert len(read_jsonl(out / "trajectories.jsonl")) == 3

    teacher.down_after = None  # back up: the rerun asks only what is missing
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    assert len(read_jsonl(out / "trajectories.jsonl")) == 6
    for row in rows[:3]:
        assert teacher.requests[(row["problem"], 0)] == 1


def test_an_unreachable_teacher_is_one_line(tmp_path):
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    prompts = write_jsonl(tmp_path / "problems.jsonl", demo_rows(2))
    result = run_cli("distill", "--teacher-url", url, "--teacher-model", MODEL, "--prompts", str(prompts),
                     "--out", str(tmp_path / "out"), "--retries", "0")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    (line,) = error_lines(result.stderr)
    assert url in line and "ConnectError" in line
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["complete"] is False


def test_a_wrong_api_key_or_a_missing_key_variable_is_one_line(teacher, tmp_path, monkeypatch):
    teacher.api_key = "right"
    monkeypatch.setenv("TEACHER_KEY_FOR_TEST", "wrong")
    prompts = write_jsonl(tmp_path / "problems.jsonl", demo_rows(2))
    with pytest.raises(UserInputError, match=r"refused the request: HTTP 401: bad key") as caught:
        distill(prompts, tmp_path / "out", teacher.url, MODEL, api_key_env="TEACHER_KEY_FOR_TEST")
    assert "\n" not in str(caught.value) and teacher.url in str(caught.value)
    assert set(teacher.requests.values()) == {1}  # a refusal is not retried
    monkeypatch.delenv("TEACHER_KEY_FOR_TEST")
    with pytest.raises(UserInputError, match="TEACHER_KEY_FOR_TEST is not set"):
        distill(prompts, tmp_path / "out2", teacher.url, MODEL, api_key_env="TEACHER_KEY_FOR_TEST")


# --- (g) bad input rows ----------------------------------------------------------------------------------------
GOOD = {"id": "a", "problem": "What is 2 + 3?", "answer": "5"}


@pytest.mark.parametrize(("bad", "field_"), [
    ('{"id": "b", "problem": "x", ', "<json>"),
    ({"id": "b", "answer": "5"}, "problem"),
    ({"id": "b", "problem": "x", "answer": 5}, "answer"),
    ({"id": "b", "problem": "x"}, "answer"),
    ({"id": "a", "problem": "y", "answer": "1"}, "id"),
    ({"id": "b", "problem": "x", "tests": []}, "tests"),
    ({"id": "b", "problem": "x", "answer": "1", "domain": "agent"}, "domain"),
    (["not", "an", "object"], "<row>"),
])
def test_bad_input_rows_name_file_and_line(tmp_path, bad, field_):
    prompts = write_jsonl(tmp_path / "problems.jsonl", [GOOD, bad])
    with pytest.raises(InvalidRecord) as caught:
        distill(prompts, tmp_path / "out", "http://127.0.0.1:9/v1", MODEL, policy=FAST)
    assert str(caught.value).startswith(f"{prompts}:2: field '{field_}'")
    assert not (tmp_path / "out").exists()  # stopped before anything was asked or written


def test_a_bad_row_through_the_cli_is_one_line(tmp_path):
    prompts = write_jsonl(tmp_path / "problems.jsonl", [GOOD, {"id": "b", "problem": ""}])
    result = run_cli("distill", "--teacher-url", "http://127.0.0.1:9/v1", "--teacher-model", MODEL,
                     "--prompts", str(prompts), "--out", str(tmp_path / "out"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert error_lines(result.stderr) == [f"error: {prompts}:2: field 'problem': must not be empty"]
