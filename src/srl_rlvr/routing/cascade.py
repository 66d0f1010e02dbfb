"""The collaboration orchestrator: the cheapest tier answers first, a verifier decides whether to trust it,
and an unsure answer escalates to the next tier (FrugalGPT-style). Every escalation is logged as a
trajectory row, so the escalated answers can be verified and distilled back into the small model.

The verifier never sees a gold answer (there is none at serving time). For math it checks, on the ``k``
completions of a tier:

* format: a completion must state an answer ("The answer is ..." or ``\\boxed``, after any think block)
  that :func:`srl_rlvr.rewards.math.extract_answer` can read, and that answer must be a value, not an
  unevaluated expression such as ``33 - 12``;
* agreement: the most common answer must hold at least ``min_agreement`` of the ``k`` completions
  (invalid completions count against it);
* a task's own verifiable check where it has one (``extra_check(prompt, completion)``, e.g. running a
  code problem's tests).

The last tier's answer is returned whatever the verdict (there is nobody left to ask); ``verified``
says whether it passed.

Escalation log (JSONL, appended; one row per escalation, in the trajectory format of docs/data.md)::

    {"id": "cascade-<prompt hash>-<n>", "problem": PROMPT, "solution": ESCALATED COMPLETION,
     "answer": ESCALATED ANSWER, "domain": "math", "source": "cascade", "reason": "...",
     "small_tier": "...", "small_answer": "...", "small_completion": "...", "escalated_tier": "...",
     "verified": true, "created": 1700000000.0}

``answer`` is omitted when the escalated completion states none. Rows load with
``srl_rlvr.data.loaders.registry.load_source``.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from srl_rlvr.routing.calls import AllTiersFailed, TierCaller, call_cost, output_text
from srl_rlvr.routing.targets import Tier

_UNEVALUATED = re.compile(r"\d\s*[-+*/×÷^]\s*\(?\s*\d")
THINK_CLOSE = "</think>"


@dataclass(frozen=True)
class Verdict:
    accept: bool
    answer: str | None  # the majority answer (None: no completion stated a readable answer)
    completion: str  # a completion that gives that answer (the first one)
    agreement: float  # share of the k completions giving that answer
    reason: str


def _normalize(answer: str) -> str:
    """'1,000.' -> '1000'; '12.0' -> '12' (so equal numbers agree); other text: lowercased, no spaces."""
    text = answer.strip().rstrip(".").replace(",", "").replace(" ", "").lower()
    try:
        number = float(text)
    except ValueError:
        return text
    return str(int(number)) if number.is_integer() else repr(number)


class MathVerifier:
    """Format + agreement (+ an optional task check) over k completions; see the module docstring."""

    def __init__(self, min_agreement: float = 0.6, require_answer_statement: bool = True,
                 extra_check: Callable[[str, str], bool] | None = None):
        self.min_agreement = min_agreement
        self.require_answer_statement = require_answer_statement
        self.extra_check = extra_check

    def answer_of(self, completion: str) -> tuple[str | None, str | None]:
        """(answer, None) when the completion passes the format checks, else (None, why not)."""
        from srl_rlvr.eval.scoring import states_answer  # the rule that ends a stepwise eval rollout
        from srl_rlvr.rewards.math import extract_answer

        judged = completion.rpartition(THINK_CLOSE)[2] if THINK_CLOSE in completion else completion
        if self.require_answer_statement and not states_answer(judged):
            return None, "no 'The answer is' statement"
        answer = extract_answer(completion)
        if answer is None or not answer.strip():
            return None, "no readable answer"
        if _UNEVALUATED.search(answer):
            return None, f"answer {answer!r} is an unevaluated expression"
        return answer, None

    def __call__(self, prompt: str, completions: Sequence[str]) -> Verdict:
        if not completions:
            return Verdict(False, None, "", 0.0, "no completions")
        read = [self.answer_of(c) for c in completions]
        valid = [(i, a) for i, (a, _) in enumerate(read) if a is not None]
        if not valid:
            return Verdict(False, None, completions[0], 0.0, f"format: {read[0][1]}")
        counts = Counter(_normalize(a) for _, a in valid)
        top, votes = counts.most_common(1)[0]
        index, answer = next((i, a) for i, a in valid if _normalize(a) == top)
        agreement = votes / len(completions)
        completion = completions[index]
        if agreement < self.min_agreement:
            return Verdict(False, answer, completion, agreement,
                           f"agreement: {votes}/{len(completions)} on {answer!r} < {self.min_agreement:g}")
        if self.extra_check is not None and not self.extra_check(prompt, completion):
            return Verdict(False, answer, completion, agreement, "task check failed")
        return Verdict(True, answer, completion, agreement, f"agreement: {votes}/{len(completions)} on {answer!r}")


@dataclass(frozen=True)
class Escalation:
    from_tier: str
    to_tier: str
    reason: str
    small_answer: str | None
    small_completion: str


@dataclass(frozen=True)
class CascadeResult:
    answer: str | None
    completion: str
    tier: Tier  # the tier whose answer is returned
    verified: bool  # whether that answer passed the verifier
    escalations: tuple[Escalation, ...]
    cost: float  # dollars over every tier called
    calls: tuple[tuple[str, int], ...] = ()  # (tier, completions asked for), in call order
    errors: tuple[tuple[str, str], ...] = ()


@dataclass
class EscalationLog:
    """Appends escalation rows to a JSONL file (thread-safe; each row is checked against the Trajectory schema)."""

    path: Path
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def append(self, row: dict[str, Any]) -> None:
        from srl_rlvr.data.schema import Trajectory

        Trajectory.model_validate(row)  # a row the data loaders would reject is a bug here, not later
        line = json.dumps(row, ensure_ascii=False) + "\n"
        with self._lock, self.path.open("a", encoding="utf-8") as f:
            f.write(line)


class Cascade:
    """Ask ``tiers`` in order (cheapest first), escalating while the verifier is unsure.

    ``k`` completions are asked of every tier but the last (agreement needs several; the last tier is
    asked once). ``call_tier(tier, prompt, n)`` is the same callable the router uses.
    """

    def __init__(self, tiers: Sequence[Tier], verifier: Callable[[str, Sequence[str]], Verdict] | None = None,
                 k: int = 3, log: EscalationLog | str | Path | None = None, name: str = "cascade",
                 domain: str = "math"):
        if not tiers:
            raise ValueError("a cascade needs at least one tier")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.tiers = list(tiers)
        self.verifier = verifier or MathVerifier()
        self.k = k
        self.log = EscalationLog(log) if isinstance(log, (str, Path)) else log
        self.name = name
        self.domain = domain

    def run(self, prompt: str, call_tier: TierCaller, problem_id: str | None = None) -> CascadeResult:
        escalations: list[Escalation] = []
        pending: list[int] = []  # escalations (by index) still waiting for the next tier's answer
        calls: list[tuple[str, int]] = []
        errors: list[tuple[str, str]] = []
        cost = 0.0
        for position, tier in enumerate(self.tiers):
            last = position == len(self.tiers) - 1
            n = 1 if last else self.k
            calls.append((tier.name, n))
            try:
                outputs = list(call_tier(tier, prompt, n))
            except Exception as exc:  # a failing tier escalates like an unsure one
                errors.append((tier.name, f"{type(exc).__name__}: {exc}"))
                continue
            cost += call_cost(tier, prompt, outputs)
            verdict = self.verifier(prompt, [output_text(o) for o in outputs])
            for number in pending:
                self._log(prompt, problem_id, escalations[number], tier, verdict, number)
            pending = []
            if verdict.accept or last:
                return CascadeResult(verdict.answer, verdict.completion, tier, verdict.accept, tuple(escalations),
                                     cost, tuple(calls), tuple(errors))
            esc = Escalation(tier.name, self.tiers[position + 1].name, verdict.reason, verdict.answer,
                             verdict.completion)
            pending.append(len(escalations))
            escalations.append(esc)
        raise AllTiersFailed(errors)

    def _log(self, prompt: str, problem_id: str | None, esc: Escalation, answered_by: Tier, verdict: Verdict,
             number: int) -> None:
        if self.log is None:
            return
        key = problem_id or hashlib.sha1(prompt.encode("utf-8")).hexdigest()[:12]
        row: dict[str, Any] = {
            "id": f"{self.name}-{key}-{number}",
            "problem": prompt,
            "solution": verdict.completion if verdict.completion.strip() else "(empty completion)",
            "domain": self.domain,
            "source": self.name,
            "reason": esc.reason,
            "small_tier": esc.from_tier,
            "small_answer": esc.small_answer,
            "small_completion": esc.small_completion,
            "escalated_tier": answered_by.name,
            "escalated_simulated": answered_by.simulated,
            "verified": verdict.accept,
            "created": time.time(),
        }
        if verdict.answer is not None:
            row["answer"] = verdict.answer
        self.log.append(row)
