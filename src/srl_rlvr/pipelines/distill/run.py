"""``distill``: ask a teacher for step-by-step solutions, keep the verified ones as trajectory JSONL.

    distill(Path("problems.jsonl"), Path("out/distill"), "http://localhost:8000/v1", "big-model", samples=4)

1. Read the prompts (trajectory JSONL rows with ``problem`` and ``answer`` (math) or ``tests`` (code); ``id``
   optional: ``p-`` + the first 12 hex digits of the problem's sha256 when missing; ``domain`` and
   ``entry_point`` optional). A bad row stops the run before any request, naming ``file:line``.
2. Drop the prompts that share an 8-gram with a ``decontaminate`` eval file (``decontaminate.py``).
3. Round 1 asks ``samples`` completions per problem (sample indexes 0..K-1) with the full-problem prompt
   (:func:`srl_rlvr.prompts.full_problem_messages`); each sample is verified (``verify.py``). With
   ``max_attempts`` > 1, a problem with no kept sample gets another round with new sample indexes
   (round r asks r*K..r*K+K-1), up to ``max_attempts`` rounds, so hard problems are not silently dropped.
   Every request goes through the response cache (``cache.py``): one answered before, in this run or an
   earlier one, is never asked again. A request the teacher refused as such (HTTP 400/413/422) is cached
   too, as a ``teacher_error``: the same request would be refused again; a transient failure is not.
4. Write ``out/trajectories.jsonl`` (kept samples), ``out/rejected.jsonl`` (the rest, plus ``reason``) and
   ``out/manifest.json``, all rebuilt from the cache, so a rerun with the same arguments never
   duplicates a row. A teacher that stays down (or refuses every request) still gets the outputs
   written for what was finished, ``"complete": false`` in the manifest, and then a one-line error.

A kept row is in the trajectory contract (``srl-rlvr data build`` reads it as is)::

    {"id": "<problem id>-s<sample>", "problem": ..., "steps": [...], "answer": "48", "domain": "math",
     "metadata": {"teacher": MODEL, "sample": 0, "request_id": "chatcmpl-...", "think": "...",
                  "problem_id": ..., "finish_reason": "stop"}}
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from srl_rlvr.core.io import sha256_file
from srl_rlvr.data.loaders.jsonl import iter_json_objects, required_text
from srl_rlvr.data.schema import Trajectory
from srl_rlvr.errors import InvalidRecord, UserInputError
from srl_rlvr.ops.failures import FailurePolicy
from srl_rlvr.pipelines.distill.cache import ResponseCache, request_key
from srl_rlvr.pipelines.distill.decontaminate import EvalIndex, Match
from srl_rlvr.pipelines.distill.teacher import Teacher, TeacherDown, TeacherRefused, TeacherReply
from srl_rlvr.pipelines.distill.verify import REASONS, Verdict, verify_reply
from srl_rlvr.prompts import full_problem_messages

TRAJECTORIES = "trajectories.jsonl"
REJECTED = "rejected.jsonl"
MANIFEST = "manifest.json"
CACHE = "teacher_cache.jsonl"
SAMPLE_HEADER = "X-Distill-Sample"  # lets a teacher (or a proxy's log) tell samples of one prompt apart
KEY_HEADER = "X-Distill-Key"


@dataclass(frozen=True)
class Problem:
    id: str
    problem: str
    domain: str
    answer: str | None = None
    tests: str | list[str] | None = None
    entry_point: str | None = None
    index: int = 0  # position in the prompts file (output order)

    def gold(self) -> dict[str, Any]:
        out: dict[str, Any] = {"answer": self.answer} if self.domain == "math" else {"tests": self.tests}
        if self.entry_point is not None:
            out["entry_point"] = self.entry_point
        return out


@dataclass(frozen=True)
class Job:
    problem: Problem
    sample: int
    key: str

    @property
    def row_id(self) -> str:
        return f"{self.problem.id}-s{self.sample}"


@dataclass
class RunState:
    jobs: list[Job] = field(default_factory=list)  # every job planned so far, all rounds
    verdicts: dict[str, Verdict] = field(default_factory=dict)  # job key -> verdict (jobs with a reply)
    contaminated: list[tuple[Problem, Match]] = field(default_factory=list)
    cached_hits: int = 0
    requested: int = 0  # completions asked of the teacher in this run (not counting retries)
    rounds: int = 0


# --- inputs ------------------------------------------------------------------------------------------------
def _optional_text(row: dict[str, Any], column: str, path: str, line: int) -> str | None:
    if row.get(column) is None:
        return None
    return required_text(row, column, path, line)


def _problem(obj: Any, path: str, line: int, index: int) -> Problem:
    if not isinstance(obj, dict):
        raise InvalidRecord(path, line, "<row>", f"expected a JSON object, got {type(obj).__name__}")
    text = required_text(obj, "problem", path, line)
    pid = _optional_text(obj, "id", path, line) or "p-" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]
    answer = _optional_text(obj, "answer", path, line)
    tests = obj.get("tests")
    if tests is not None and not (
        (isinstance(tests, str) and tests.strip())
        or (isinstance(tests, list) and tests and all(isinstance(t, str) and t.strip() for t in tests))
    ):
        raise InvalidRecord(path, line, "tests", "expected a non-empty string or a non-empty list of strings")
    domain = obj.get("domain")
    if domain is None:
        domain = "code" if tests is not None and answer is None else "math"
    if domain not in ("math", "code"):
        raise InvalidRecord(path, line, "domain", f"distill handles 'math' or 'code', got {domain!r}")
    if domain == "math" and answer is None:
        raise InvalidRecord(path, line, "answer", "is required for a math problem (the teacher's answer is "
                                                  "checked against it)")
    if domain == "code" and tests is None:
        raise InvalidRecord(path, line, "tests", "is required for a code problem")
    entry_point = _optional_text(obj, "entry_point", path, line)
    return Problem(pid, text, domain, answer, tests if domain == "code" else None, entry_point, index)


def read_problems(path: Path) -> list[Problem]:
    """The prompts file's problems; the first bad row raises InvalidRecord (``file:line``, field)."""
    problems: list[Problem] = []
    first_seen: dict[str, int] = {}
    for line, obj in iter_json_objects(path):
        if isinstance(obj, InvalidRecord):
            raise obj
        problem = _problem(obj, str(path), line, len(problems))
        if problem.id in first_seen:
            raise InvalidRecord(str(path), line, "id", f"duplicate id {problem.id!r} (first seen at line "
                                                       f"{first_seen[problem.id]})")
        first_seen[problem.id] = line
        problems.append(problem)
    if not problems:
        raise UserInputError(f"{path}: holds no problems")
    return problems


# --- outputs -----------------------------------------------------------------------------------------------
def _write_jsonl_atomic(path: Path, rows: list[dict[str, Any]]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)  # a reader never sees a half-written file


def _row(job: Job, reply: TeacherReply, verdict: Verdict, teacher_model: str) -> dict[str, Any]:
    p = job.problem
    row: dict[str, Any] = {"id": job.row_id, "problem": p.problem, "steps": verdict.steps, **p.gold(),
                           "domain": p.domain}
    row["metadata"] = {"teacher": teacher_model, "sample": job.sample, "request_id": reply.request_id,
                       "think": verdict.think, "problem_id": p.id, "finish_reason": reply.finish_reason}
    return row


def _outputs(state: RunState, cache: ResponseCache, teacher_model: str) -> tuple[list[dict], list[dict], Counter]:
    kept, rejected = [], []
    kept_per_problem: Counter = Counter()
    for problem, match in state.contaminated:
        rejected.append({"id": problem.id, "problem": problem.problem, "steps": [], **problem.gold(),
                         "domain": problem.domain, "reason": "contaminated",
                         "metadata": {"problem_id": problem.id, "eval_file": match.path, "eval_line": match.line,
                                      "ngram": match.ngram}})
    seen_problems: dict[str, Problem] = {}
    for job in sorted(state.jobs, key=lambda j: (j.problem.index, j.sample)):
        verdict, reply = state.verdicts.get(job.key), cache.get(job.key)
        if verdict is None or reply is None:
            continue  # asked but not answered before the run stopped
        seen_problems[job.problem.id] = job.problem
        row = _row(job, reply, verdict, teacher_model)
        if verdict.kept:
            kept.append(row)
            kept_per_problem[job.problem.id] += 1
        else:
            row["reason"] = verdict.reason
            row["completion"] = reply.content
            row["metadata"]["detail"] = verdict.detail
            rejected.append(row)
    histogram = Counter(kept_per_problem[pid] for pid in seen_problems)
    return kept, rejected, histogram


def _write_outputs(out: Path, state: RunState, cache: ResponseCache, teacher: Teacher, params: dict[str, Any],
                   inputs: dict[str, Any], error: str | None) -> dict[str, Any]:
    kept, rejected, histogram = _outputs(state, cache, teacher.model)
    _write_jsonl_atomic(out / TRAJECTORIES, kept)
    _write_jsonl_atomic(out / REJECTED, rejected)
    reasons = Counter(row["reason"] for row in rejected)
    answered = sum(1 for job in state.jobs if job.key in state.verdicts)
    manifest = {
        "complete": error is None,
        "error": error,
        "teacher": {"url": teacher.base_url, "model": teacher.model},
        "generation": params,
        "counts": {
            "problems": inputs["problems"],
            "contaminated": len(state.contaminated),
            "samples_planned": len(state.jobs),
            "samples_answered": answered,
            "requests_sent": state.requested,
            "http_requests": teacher.sent,
            "retries": teacher.retries,
            "cached_hits": state.cached_hits,
            "kept": len(kept),
            "rejected": {reason: reasons.get(reason, 0) for reason in REASONS},
            "kept_per_problem": {str(n): histogram[n] for n in sorted(histogram)},
            "rounds": state.rounds,
        },
        "inputs": inputs["files"],
        "outputs": {name: sha256_file(out / name) for name in (TRAJECTORIES, REJECTED, CACHE)},
        "written_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    tmp = out / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(out / MANIFEST)
    return manifest


# --- the run -----------------------------------------------------------------------------------------------
def _verify(job: Job, reply: TeacherReply) -> Verdict:
    p = job.problem
    verdict = verify_reply(reply, p.domain, answer=p.answer, tests=p.tests, entry_point=p.entry_point)
    if verdict.kept:  # the kept row must be a valid trajectory, or it is no use downstream
        try:
            Trajectory.model_validate({"id": job.row_id, "problem": p.problem, "steps": verdict.steps,
                                       **p.gold(), "domain": p.domain})
        except ValueError as exc:
            return Verdict("unparsable_steps", verdict.think, verdict.steps, detail=" ".join(str(exc).split()))
    return verdict


async def _ask_round(jobs: list[Job], teacher: Teacher, cache: ResponseCache, state: RunState,
                     params: dict[str, Any], round_no: int, rounds: int) -> None:
    from tqdm import tqdm

    todo = [job for job in jobs if job.key not in cache]
    state.cached_hits += len(jobs) - len(todo)
    desc = f"distill round {round_no}/{rounds}" if rounds > 1 else "distill"
    with tqdm(total=len(jobs), initial=len(jobs) - len(todo), desc=desc, unit="sample",
              disable=not jobs) as bar:

        async def ask(job: Job) -> None:
            messages = full_problem_messages(job.problem.problem)
            headers = {SAMPLE_HEADER: str(job.sample), KEY_HEADER: job.key}
            reply = await teacher.complete(messages, params["temperature"], params["max_tokens"], headers=headers)
            cache.put(job.key, reply, job.problem.id, job.sample)  # durable before anything uses it
            state.requested += 1
            bar.update(1)
            bar.set_postfix(sent=state.requested, cached=state.cached_hits, retries=teacher.retries, refresh=False)

        tasks = [asyncio.create_task(ask(job)) for job in todo]
        try:
            for finished in asyncio.as_completed(tasks):
                await finished
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


async def _run(problems: list[Problem], teacher: Teacher, cache: ResponseCache, state: RunState,
               params: dict[str, Any], samples: int, max_attempts: int) -> None:
    active = list(problems)
    async with teacher:
        for round_index in range(max_attempts):
            if not active:
                return
            jobs = [Job(p, s, request_key(full_problem_messages(p.problem), teacher.model, params, s))
                    for p in active for s in range(round_index * samples, (round_index + 1) * samples)]
            state.jobs += jobs
            state.rounds = round_index + 1
            try:
                await _ask_round(jobs, teacher, cache, state, params, round_index + 1, max_attempts)
            finally:
                for job in jobs:  # verify what came back, also when the round stopped early
                    if job.key not in state.verdicts and (reply := cache.get(job.key)) is not None:
                        state.verdicts[job.key] = _verify(job, reply)
            kept = {job.problem.id for job in jobs if state.verdicts[job.key].kept}
            active = [p for p in active if p.id not in kept]


def distill(prompts: Path, out: Path, teacher_url: str, teacher_model: str, samples: int = 1, max_attempts: int = 1,
            api_key_env: str | None = None, concurrency: int = 4, temperature: float = 0.7, max_tokens: int = 1024,
            decontaminate: list[Path] | tuple[Path, ...] = (), *, policy: FailurePolicy | None = None,
            timeout_s: float = 600.0) -> dict[str, Any]:
    """Distill verified step-by-step trajectories from a teacher; return the manifest (see the module docstring).

    ``policy`` sets the teacher's transient retries and backoff (default: ``FailurePolicy()``: 3 retries after
    1, 2 and 4 s); ``timeout_s`` bounds one request.
    """
    prompts, out = Path(prompts), Path(out)
    for name, value, low in (("samples", samples, 1), ("max_attempts", max_attempts, 1),
                             ("concurrency", concurrency, 1), ("max_tokens", max_tokens, 1)):
        if value < low:
            raise UserInputError(f"{name} must be >= {low}, got {value}")
    if temperature < 0:
        raise UserInputError(f"temperature must be >= 0, got {temperature}")
    if not teacher_url.startswith(("http://", "https://")):
        raise UserInputError(f"teacher url {teacher_url!r}: expected http(s)://host[:port]/v1")
    api_key = None
    if api_key_env:
        api_key = os.environ.get(api_key_env)
        if not api_key:
            raise UserInputError(f"the API key variable {api_key_env} is not set (or empty)")

    problems = read_problems(prompts)
    index = EvalIndex(list(decontaminate))
    state = RunState()
    clean = []
    for p in problems:
        match = index.match(p.problem) if index.grams else None
        if match is not None:
            state.contaminated.append((p, match))
        else:
            clean.append(p)

    params = {"temperature": temperature, "max_tokens": max_tokens, "n": 1}
    inputs = {"problems": len(problems), "files": {
        "prompts": {"path": str(prompts), "sha256": sha256_file(prompts)},
        "decontaminate": [{"path": str(p), "sha256": sha256_file(p), "problems": index.problems[str(p)]}
                          for p in index.paths],
    }}
    generation = {**params, "samples": samples, "max_attempts": max_attempts, "concurrency": concurrency}
    teacher = Teacher(teacher_url, teacher_model, api_key, concurrency, policy, timeout_s)
    out.mkdir(parents=True, exist_ok=True)
    with ResponseCache(out / CACHE) as cache:
        try:
            asyncio.run(_run(clean, teacher, cache, state, params, samples, max_attempts))
        except (TeacherDown, TeacherRefused) as exc:
            _write_outputs(out, state, cache, teacher, generation, inputs, str(exc))
            raise
        except KeyboardInterrupt:
            _write_outputs(out, state, cache, teacher, generation, inputs, "interrupted")
            raise
        return _write_outputs(out, state, cache, teacher, generation, inputs, None)
