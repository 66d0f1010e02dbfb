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
    completions += ["The final answer is 5 + 7 = 13.", "\\boxed{12 = 5 + 7}", "So 5 + 7 which is 13."]
    for completion in completions:
        read = extract_answer(completion)
        if read is None:
            assert math_answer_reward(completion, "12") == 0.0
        else:  # whatever text was read, judging it boxed gives the same verdict
            assert math_answer_reward(completion, "12") == math_answer_reward("\\boxed{" + read + "}", "12")


# --- The answer is the value the model states ------------------------------------------------------------
# math-verify alone read "The final answer is 29 + 27 + 12 = 54." as 29 + 27 + 12, so gold 68 scored a wrong
# total as right and RLVR rewarded the right sum with any result. Each form below states 54 beside an
# expression worth 68 (or states its value beside a different one): only the stated value may be credited.
STATED_BESIDE_AN_EXPRESSION = [
    # (completion, extracted answer, the stated value, what the expression beside it is worth)
    ("The final answer is 29 + 27 + 12 = 54.", "54", "54", "68"),
    ("The final answer is 29 + 27 + 12 = 54. I hope it is correct.", "54", "54", "68"),
    ("The answer is 29+27+12=54", "54", "54", "68"),
    ("Answer: 29 + 27 + 12 = 54", "54", "54", "68"),
    ("**Final Answer:** The final answer is 29 + 27 + 12 = 54.", "54", "54", "68"),
    ("The answer is 29 + 27 + 12\n= 54", "54", "54", "68"),
    ("The answer is (29 + 27 + 12) = 54.", "54", "54", "68"),
    ("The answer is 29 \\times 2 + 10 = 54.", "54", "54", "68"),
    ("The answer is 29 + 27 + 12 = 68 = 54.", "54", "54", "68"),  # the last "=" is the last word
    ("\\boxed{29 + 27 + 12 = 54}", "54", "54", "68"),
    ("\\boxed{29+27+12} = 54", "54", "54", "68"),
    ("The final answer is $\\boxed{29 + 27 + 12 = 54}$. I hope it is correct.", "54", "54", "68"),
    ("The answer is $29 + 27 + 12 = 54$.", "54", "54", "68"),
    ("The answer is $29 + 27 + 12$ = $54$.", "54", "54", "68"),
    ("The answer is \\(29 + 27 + 12 = 54\\).", "54", "54", "68"),
    ("$$\n29 + 27 + 12 = 54\n$$", "54", "54", "68"),
    # the stated number first: what follows "=" is its working, not a second answer
    ("The answer is 54 = 29 + 27 + 12.", "54", "54", "68"),
    ("\\boxed{54 = 29 + 27 + 12}", "54", "54", "68"),
    ("The answer is $54$ = 29 + 27 + 12", "54", "54", "68"),
    ("The answer is 54 (29 + 27 + 12).", "54", "54", "68"),
    ("The answer is 54 (= 29 + 27 + 12).", "54", "54", "68"),
    ("The answer is 54, i.e. $29 + 27 + 12$.", "54", "54", "68"),
    ("The answer is 54 i.e. \\boxed{29 + 27 + 12}", "54", "54", "68"),
    # other ways of writing "gives"
    ("The answer is 29 + 27 + 12 \\approx 54", "54", "54", "68"),
    ("The answer is 29 + 27 + 12 ≈ 54", "54", "54", "68"),
    ("The answer is 29 + 27 + 12 → 54", "54", "54", "68"),
    ("The answer is 29 + 27 + 12 (= 54).", "54", "54", "68"),
    ("The answer is 29 + 27 + 12 which is 54.", "54", "54", "68"),
    ("The answer is 29 + 27 + 12, i.e. 54.", "54", "54", "68"),
    ("The answer is 29 + 27 + 12. That makes 54.", "54", "54", "68"),
    # fractions: the plain or lone fraction is the value, a sum of fractions its working
    ("The answer is $\\frac{4}{6} = \\frac{1}{2} + \\frac{1}{3}$", "\\frac{4}{6}", "2/3", "5/6"),
    ("The answer is $\\frac{29 + 27 + 12}{2} = 30$", "30", "30", "34"),
    ("The answer is $30 = \\frac{29 + 27 + 12}{2}$", "30", "30", "34"),
    ("The answer is \\frac{136}{2} = 54", "54", "54", "68"),
    # no answer marker: the last number, and a trailing "= N" wins over the expression before it
    ("she has 29 + 27 + 12 = 54 pens", "54", "54", "68"),
    ("So the total is 29 + 27 + 12 = 54", "54", "54", "68"),
    # a later final-answer line wins, and the think block is not judged
    ("The answer is 68.\nWait, I misadded. The final answer is 29 + 27 + 12 = 54.", "54", "54", "68"),
    ("<think>29 + 27 + 12 = 68</think>The answer is 29 + 27 + 12 = 54.", "54", "54", "68"),
]


@pytest.mark.parametrize(("completion", "read", "stated", "expression"), STATED_BESIDE_AN_EXPRESSION)
def test_the_stated_value_is_the_answer(completion: str, read: str, stated: str, expression: str) -> None:
    assert extract_answer(completion) == read
    assert math_answer_reward(completion, stated) == 1.0
    assert math_answer_reward(completion, expression) == 0.0  # the right expression, a wrong result


# Every way of writing "expression = wrong result" we could think of, with random sums: never credited.
WRONG_RESULT_FORMS = [
    "The final answer is {e} = {n}.",
    "The answer is {e} = {n}.",
    "Answer: {e}={n}",
    "\\boxed{{{e} = {n}}}",
    "\\boxed{{{e}}} = {n}",
    "$\\boxed{{{n} = {e}}}$",
    "The answer is $${e} = {n}$$",
    "The answer is {n} = {e}.",
    "The answer is **{e} = {n}**.",
    "**{e}** = {n}",
    "The answer is {e} \\approx {n}.",
    "The answer is {e} => {n}.",
    "The answer is {e} (that is {n}).",
    "The answer is {e}: {n}",
    "The answer is {n} ({e}).",
    "The answer is {n}, or {e}.",
    "Step 1: {e} = {n}.\nThe answer is {n}.",
    "They have {e} = {n} marbles in total.",
]
SUMS = [(29, 27, 12, 54), (7, 6, 5, 17), (120, 35, 4, 160), (1, 1, 1, 4)]


@pytest.mark.parametrize("form", WRONG_RESULT_FORMS)
@pytest.mark.parametrize(("a", "b", "c", "wrong"), SUMS)
def test_a_wrong_result_is_never_credited_for_its_expression(
    form: str, a: int, b: int, c: int, wrong: int
) -> None:
    for expression in (f"{a} + {b} + {c}", f"{a}+{b}+{c}", f"({a} + {b}) + {c}", f"{a} + {b} \\cdot 1 + {c}"):
        completion = form.format(e=expression, n=wrong)
        assert math_answer_reward(completion, str(a + b + c)) == 0.0, completion
        assert math_answer_reward(completion, str(wrong)) == 1.0, completion


@pytest.mark.parametrize(
    ("completion", "read", "gold"),
    [
        ("The final answer is 29 + 27 + 12 = 68.", "68", "68"),
        ("The answer is 33 + 15 = 48.", "48", "48"),
        ("\\boxed{3 + 4 = 7}", "7", "7"),
        ("\\boxed{3+4=7}", "7", "7"),
        ("After buying 15 more, she has 33 + 15 = 48 pens. The answer is 48.", "48", "48"),
        ("She had 33 pens.\nAfter buying 15 more, she has 33 + 15 = 48 pens", "48", "48"),
        ("The answer is 7.\nNo, recount: the final answer is 33 + 15 = 48.", "48", "48"),
        ("Step 1: 7 * 6 = 42.\nStep 2: 42 - 9 = 33.\nStep 3: 33 + 15 = 48. The answer is 48.", "48", "48"),
        ("So x = 3 + 4 = 7.", "7", "7"),
        ("\\boxed{x = 3 + 4 = 7}", "x = 7", "7"),
        ("The answer is -29 - 27 - 12 = -68", "-68", "-68"),
        ("The answer is 1,000 + 234 = 1,234.", "1234", "1234"),
        ("The answer is 22/7 \\approx 3.14", "22/7", "22/7"),  # "about" a value: the exact one is stated
        ("Let x be the number of books. Then 3 * x + 2 = 17, so x = 5.", "5", "5"),  # a variable: untouched
        ("The answer is 2^{10} = 1024", "1024", "1024"),
    ],
)
def test_a_right_stated_result_scores(completion: str, read: str, gold: str) -> None:
    assert extract_answer(completion) == read
    assert math_answer_reward(completion, gold) == 1.0
    wrong = "3" if gold == "7" else "7"
    assert math_answer_reward(completion, wrong) == 0.0


def test_an_expression_with_nothing_stated_after_it_is_judged_by_its_value() -> None:
    # Our choice, math-verify's behaviour: an unevaluated expression is an answer worth its value, as long as
    # no number follows it on its line ("\\boxed{24/2}" is 12). LaTeX values are math-verify's to read.
    assert math_answer_reward("The answer is 29 + 27 + 12.", "68") == 1.0
    assert math_answer_reward("The answer is $29 + 27 + 12$.", "68") == 1.0
    assert math_answer_reward("The answer is 54.\nThe answer is 29 + 27 + 12.", "68") == 1.0  # the later line
    assert math_answer_reward("so the answer is \\boxed{24/2}", "12") == 1.0
    assert math_answer_reward("The answer is $\\frac{1}{2}$.", "0.5") == 1.0
    assert math_answer_reward("The answer is \\boxed{2\\pi}.", "2\\pi") == 1.0
    assert math_answer_reward("The answer is 0.5", "\\frac{1}{2}") == 1.0
    assert math_answer_reward("The answer is 5 + 2 (3 + 4)", "49") == 0.0  # no product is guessed at


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
