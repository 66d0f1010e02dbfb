"""The verifier, the cascade's escalation path, and the escalation log's trajectory format."""

from __future__ import annotations

import json

from srl_rlvr.data.loaders.registry import load_source
from srl_rlvr.routing import Cascade, MathVerifier, Tier, TierCost
from srl_rlvr.routing.backends import DemoSolverCaller

SMALL = Tier("small", "hf", "m", TierCost(0.0, 1.0))
TEACHER = Tier("teacher", "demo_solver", None, TierCost(3.0, 15.0), simulated=True)
PROBLEM = ("Mia has 7 boxes with 6 pens in each. First she gives away 9 pens, and then she buys 15 more. "
           "How many pens does she have now?")


def test_verifier_checks_format_and_agreement():
    v = MathVerifier(min_agreement=0.6)
    assert v("q", ["So 5. The answer is 48.", "The answer is 48", "The answer is 47."]).accept
    split = v("q", ["The answer is 48.", "The answer is 47.", "The answer is 46."])
    assert not split.accept and split.reason.startswith("agreement")
    assert not v("q", ["She has 48 pens"]).accept  # no answer statement
    unevaluated = v("q", ["The answer is 33 - 12."])
    assert not unevaluated.accept and "unevaluated" in unevaluated.reason
    assert v("q", ["<think>maybe 3</think>The answer is 1,000."]).answer == "1000"
    assert MathVerifier(require_answer_statement=False)("q", ["She has 48 pens"]).accept


def test_verifier_never_sees_gold_so_a_confident_wrong_answer_passes():
    assert MathVerifier()("q", ["The answer is 7."] * 3).accept


def test_cascade_accepts_a_sure_small_answer_without_escalating(tmp_path):
    log = tmp_path / "esc.jsonl"
    cascade = Cascade([SMALL, TEACHER], k=3, log=log)
    asked = []

    def call_tier(tier, prompt, n):
        asked.append((tier.name, n))
        return ["The answer is 48."] * n

    result = cascade.run(PROBLEM, call_tier)
    assert result.answer == "48" and result.tier.name == "small" and result.verified
    assert asked == [("small", 3)] and result.escalations == () and not log.exists()


def test_cascade_escalates_and_logs_trajectories(tmp_path):
    log = tmp_path / "esc.jsonl"
    cascade = Cascade([SMALL, TEACHER], k=3, log=log, name="casc")
    teacher = DemoSolverCaller()

    def call_tier(tier, prompt, n):
        if tier.name == "small":
            return ["The answer is 40.", "The answer is 48.", "I think 12 + 3"]
        return teacher(tier, prompt, n)

    result = cascade.run(PROBLEM, call_tier, problem_id="p1")
    assert result.answer == "48" and result.tier.name == "teacher" and result.verified
    assert [e.reason.split(":")[0] for e in result.escalations] == ["agreement"]
    assert result.cost > 0 and result.calls == (("small", 3), ("teacher", 1))
    row = json.loads(log.read_text().splitlines()[0])
    assert row["id"] == "casc-p1-0" and row["small_answer"] in ("40", "48") and row["answer"] == "48"
    assert row["escalated_tier"] == "teacher" and row["escalated_simulated"] is True
    loaded = load_source(str(log)).rows
    assert len(loaded) == 1 and loaded[0].problem == PROBLEM and loaded[0].solution.endswith("The answer is 48.")
    assert loaded[0].metadata["reason"].startswith("agreement")


def test_a_failing_tier_escalates_and_the_next_answer_is_logged(tmp_path):
    log = tmp_path / "esc.jsonl"
    cascade = Cascade([SMALL, Tier("mid", "hf", "m2"), TEACHER], k=1, log=log)

    def call_tier(tier, prompt, n):
        if tier.name == "small":
            return ["no idea"]
        if tier.name == "mid":
            raise ConnectionError("down")
        return DemoSolverCaller()(tier, prompt, n)

    result = cascade.run(PROBLEM, call_tier)
    assert result.tier.name == "teacher" and result.errors[0][0] == "mid"
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["small_tier"] == "small" and rows[0]["escalated_tier"] == "teacher"
