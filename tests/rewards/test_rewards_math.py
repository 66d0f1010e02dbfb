"""Math reward: agrees with math-verify on boxed answers; documents the extras and our two rules."""

from __future__ import annotations

import threading

import pytest
from math_verify import parse, verify

from srl_rlvr.rewards import extract_answer, math_answer_reward

# Gold answers that math-verify reads the same bare or boxed, or that carry their own $...$ / \boxed.
GOLDS = [
    "12",
    "-3",
    "3.5",
    "1000",
    "\\frac{1}{2}",
    "$\\sqrt{2}$",
    "$2\\pi$",
    "$\\frac{\\sqrt{3}}{2}$",
    "\\boxed{x^2+1}",
    "$(1, 2)$",
]
BOXED_PREDICTIONS = [
    "\\boxed{12}",
    "\\boxed{12.0}",
    "\\boxed{\\frac{24}{2}}",
    "\\boxed{13}",
    "\\boxed{-3}",
    "\\boxed{\\frac{7}{2}}",
    "\\boxed{0.5}",
    "\\boxed{1/2}",
    "\\boxed{\\frac12}",
    "\\boxed{\\sqrt{2}}",
    "\\boxed{2\\pi}",
    "\\boxed{6.283185307}",
    "\\boxed{1+x^2}",
    "\\boxed{x^2-1}",
    "\\boxed{1,000}",
    "\\boxed{\\dfrac{\\sqrt3}{2}}",
    "\\boxed{(1,2)}",
    "\\boxed{}",
]
TEMPLATES = [
    "{box}",
    "We simplify step by step: 3 + 4 = 7, then more work. So the answer is ${box}$.",
    "First we note 5 apples and 9 pears.\n\nFinal answer: {box}",
]


@pytest.mark.parametrize("gold", GOLDS)
def test_agrees_with_math_verify_on_boxed_answers(gold: str) -> None:
    for prediction in BOXED_PREDICTIONS:
        for template in TEMPLATES:
            completion = template.format(box=prediction)
            expected = float(verify(parse(gold), parse(completion)))
            assert math_answer_reward(completion, gold) == expected, (completion, gold)


def test_agreement_set_is_not_trivial() -> None:
    outcomes = {math_answer_reward(p, g) for g in GOLDS for p in BOXED_PREDICTIONS}
    assert outcomes == {0.0, 1.0}
    assert math_answer_reward("\\boxed{\\frac{24}{2}}", "12") == 1.0
    assert math_answer_reward("\\boxed{1+x^2}", "\\boxed{x^2+1}") == 1.0


@pytest.mark.parametrize(
    ("completion", "read"),
    [
        ("The answer is 12", "12"),
        ("Thinking aloud... the answer is 12.", "12"),
        ("Answer: 12", "12"),
        ("She had 5 apples and bought 7 more, so she has 12 apples.", "12"),  # the final number
        ("Final Answer: The final answer is $12$. I hope it is correct.", "12"),
        ("There are 3 cats and 4 dogs. The answer is 12. Check: 3 + 4 + 5 = 12", "12"),
    ],
)
def test_extras_beyond_boxed(completion: str, read: str) -> None:
    assert extract_answer(completion) == read
    assert math_answer_reward(completion, "12") == 1.0
    assert math_answer_reward(completion, "13") == 0.0


def test_final_number_means_the_last_number() -> None:
    completion = "She has 12 apples. Done in 3 steps"
    assert extract_answer(completion) == "3"
    assert math_answer_reward(completion, "12") == 0.0


def test_no_answer_reads_none_and_scores_zero() -> None:
    assert extract_answer("I do not know.") is None
    assert math_answer_reward("I do not know.", "12") == 0.0
    assert math_answer_reward("", "12") == 0.0


def test_only_text_after_think_is_judged() -> None:
    completion = "<think>maybe \\boxed{5}? no.</think>The answer is 12"
    assert extract_answer(completion) == "12"
    assert math_answer_reward(completion, "12") == 1.0
    assert math_answer_reward(completion, "5") == 0.0
    assert math_answer_reward("<think>it is \\boxed{12}</think>", "12") == 0.0  # no answer given


def test_bare_latex_gold_is_read_whole() -> None:
    # math-verify alone reads a bare "2\pi" as 2; we box bare gold answers first.
    assert verify(parse("2\\pi"), parse("\\boxed{2\\pi}")) is False
    assert math_answer_reward("\\boxed{2\\pi}", "2\\pi") == 1.0
    assert math_answer_reward("\\boxed{2}", "2\\pi") == 0.0
    assert math_answer_reward("\\boxed{\\sqrt{2}}", "\\sqrt{2}") == 1.0


def test_argument_order_is_gold_then_prediction() -> None:
    # math-verify treats gold and prediction differently (e.g. assignments): x = 3 as gold accepts 3.
    assert math_answer_reward("\\boxed{3}", "x = 3") == 1.0


def test_reward_and_extraction_share_one_reading() -> None:
    completions = ["\\boxed{12}", "Answer: 1/2", "so 0.5", "nothing", "<think>7</think>8", "\\boxed{5}, \\boxed{6}"]
    for completion in completions:
        read = extract_answer(completion)
        if read is None:
            assert math_answer_reward(completion, "12") == 0.0
        else:  # whatever text was read, judging it boxed gives the same verdict
            assert math_answer_reward(completion, "12") == math_answer_reward("\\boxed{" + read + "}", "12")


def test_works_off_the_main_thread() -> None:
    # math-verify's signal.alarm timeout raises ValueError off the main thread; we disable it there.
    results: list[object] = []

    def work() -> None:
        try:
            results.append((math_answer_reward("\\boxed{12}", "12"), extract_answer("Answer: 7")))
        except Exception as error:  # pragma: no cover - the failure being guarded against
            results.append(error)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert results == [(1.0, "7")]
