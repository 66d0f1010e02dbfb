"""Every prompt the model sees, in one place, so SRL, RLVR, SFT, eval and serving stay consistent.

The SRL step prompt and the full-problem prompt share the system prompt's opening and the
``Problem: / Steps so far:`` layout; the full-problem prompt is the step-1 prompt asking for all steps.
"""

from __future__ import annotations

from typing import Any

# A concrete example of the format: small models (SmolLM2-135M) never produce <think>…</think> from the
# instruction alone (0 of 24 sampled rollouts); with the example and a "<think>" prefill some do.
# The example is deliberately not arithmetic: with "She has 3 * 5 = 15 apples." SRL collapsed onto copying
# it (every step "She has 4 * 5 = 15 apples.", docs/results.md), so it shows the tags and nothing else.
FORMAT_EXAMPLE = "Example of the format:\n<think>The door is locked, so the key comes first.</think>Pick up the key."

SRL_SYSTEM_PROMPT = (
    "You solve problems one step at a time. You are shown a problem and the steps taken so far. "
    "First think about what to do next inside <think> and </think>. "
    "Then, after </think>, write only the next step: one short step, not the rest of the solution.\n\n"
    + FORMAT_EXAMPLE
)

FULL_SYSTEM_PROMPT = (
    "You solve problems one step at a time. You are shown a problem and the steps taken so far. "
    "For each step, first think inside <think> and </think>, then write the step. "
    "Write every step until the problem is solved, and end with: The answer is <answer>.\n\n"
    + FORMAT_EXAMPLE
)

# Reasoning-model chat templates (DeepSeek-R1 style) open the monologue for the model; ``think_prefill``
# does the same: the generation prompt ends with this tag and it is put back in front of the completion
# before scoring, so rewards and parsers always see the full ``<think>…</think>action`` text.
THINK_PREFILL = "<think>"
# ``think_prefill: empty`` prefills an empty monologue: the model writes only the step. The SRL reward never
# reads the monologue, and a 135M model's monologue is filler that costs most of a rollout's tokens
# (docs/results.md); the completion is still scored as the full ``<think></think>step`` text.
EMPTY_THINK_PREFILL = "<think></think>"
THINK_PREFILL_MODES = (False, True, "empty")


def normalise_prefill(value: bool | str | None) -> bool | str:
    """``None``/``False`` -> False (no prefill), ``True`` -> True (``<think>``), ``"empty"`` -> ``"empty"``.

    >>> normalise_prefill(None), normalise_prefill(True), normalise_prefill("empty")
    (False, True, 'empty')
    """
    if value is None or value is False:
        return False
    if value is True or value == "empty":
        return value
    raise ValueError(f"think_prefill must be true, false or 'empty', got {value!r}")


def prefill_text(think_prefill: bool | str | None) -> str:
    """The text a generation prompt ends with for a ``think_prefill`` setting ('' when off)."""
    mode = normalise_prefill(think_prefill)
    return EMPTY_THINK_PREFILL if mode == "empty" else (THINK_PREFILL if mode else "")

NO_STEPS_YET = "(none yet)"


def render_steps(previous: list[str]) -> str:
    return "\n".join(f"Step {i}: {s}" for i, s in enumerate(previous, 1)) if previous else NO_STEPS_YET


def render_step_prompt(problem: str, previous: list[str], k: int) -> str:
    """The SRL user message for target step k (1-based) given the expert's steps 1..k-1."""
    return f"Problem:\n{problem}\n\nSteps so far:\n{render_steps(previous)}\n\nWrite step {k}."


def srl_step_messages(problem: str, previous: list[str], k: int,
                      system: str = SRL_SYSTEM_PROMPT) -> list[dict[str, Any]]:
    return [{"role": "system", "content": system},
            {"role": "user", "content": render_step_prompt(problem, previous, k)}]


def full_problem_messages(problem: str) -> list[dict[str, Any]]:
    """The prompt RLVR trains on and eval scores with: solve the whole problem, every step, then the answer.

    >>> full_problem_messages("What is 2+3?")[1]["content"]
    'Problem:\\nWhat is 2+3?\\n\\nSteps so far:\\n(none yet)\\n\\nWrite all the steps and the final answer.'
    """
    user = f"Problem:\n{problem}\n\nSteps so far:\n{NO_STEPS_YET}\n\nWrite all the steps and the final answer."
    return [{"role": "system", "content": FULL_SYSTEM_PROMPT}, {"role": "user", "content": user}]


def full_solution_text(steps: list[str]) -> str:
    """An expert solution as the full-problem completion format (used by the SFT baseline)."""
    return "\n".join(f"Step {i}: {s}" for i, s in enumerate(steps, 1))


def render_generation_prompt(tokenizer, messages: list[dict[str, Any]], think_prefill: bool | str = False) -> str:
    """The exact text a model is prompted with: the chat template's generation prompt, plus ``<think>``
    (or the empty ``<think></think>``) when the model is trained/served with that prefill."""
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return text + prefill_text(think_prefill)


def with_prefill(completion: str, think_prefill: bool | str) -> str:
    """Put the prefill back in front of a generated completion (no-op without prefill).

    >>> with_prefill("plan</think>x = 5", True)
    '<think>plan</think>x = 5'
    >>> with_prefill("x = 5", "empty")
    '<think></think>x = 5'
    """
    return prefill_text(think_prefill) + completion
