"""The SRL step reward (arXiv 2510.25992): similarity of the model's next action to the expert's next step.

Strict format rule (the one :func:`parse_think_action` checks, and the only thing "well-formed" means here):

1. the completion, after optional leading whitespace, starts with ``<think>``;
2. ``<think>`` occurs exactly once and ``</think>`` occurs exactly once in the whole completion
   (so nothing can re-open or re-close the monologue, and the action carries no tags);
3. the action, i.e. everything after ``</think>`` with surrounding whitespace stripped, is non-empty.

The monologue between the tags may be empty (the reward never looks at it). Tags are case-sensitive.
"""

from __future__ import annotations

from srl_rlvr.rewards.similarity import difflib_ratio

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
VALID_MODES = ("strict", "lenient")
FORMAT_PENALTY = -1.0


def parse_think_action(completion: str) -> tuple[str, str] | None:
    """Split a well-formed ``<think>monologue</think>action`` completion into ``(monologue, action)``.

    Both parts are returned stripped. ``None`` means the completion breaks the strict format rule
    (see the module docstring). Serving uses this to split ``reasoning_content`` from ``content``.

    >>> parse_think_action("  <think>add the two</think>  x = 5 ")
    ('add the two', 'x = 5')
    >>> parse_think_action("<think></think>x = 5")
    ('', 'x = 5')
    >>> parse_think_action("<think>no action</think>   ") is None
    True
    >>> parse_think_action("x = 5") is None
    True
    >>> parse_think_action("<think>a</think>b</think>c") is None
    True
    """
    body = completion.lstrip()
    if not body.startswith(THINK_OPEN):
        return None
    if completion.count(THINK_OPEN) != 1 or completion.count(THINK_CLOSE) != 1:
        return None
    monologue, _, action = body[len(THINK_OPEN) :].partition(THINK_CLOSE)
    action = action.strip()
    if not action:
        return None
    return monologue.strip(), action


def _text_after_last_close(completion: str) -> str:
    """What a malformed completion most likely meant as its action: the text after the last ``</think>``."""
    _, separator, tail = completion.rpartition(THINK_CLOSE)
    return (tail if separator else completion).strip()


def srl_step_reward(completion: str, expert_step: str, mode: str = "strict") -> float:
    """Reward one completion against the expert's next step.

    ``mode="strict"`` (the paper): a well-formed completion (module docstring) scores
    ``difflib.SequenceMatcher(None, action, expert_step.strip()).ratio()``, i.e. ``2M/T`` in ``[0, 1]``,
    bit for bit; a malformed one scores exactly ``-1.0``.

    ``mode="lenient"``, for small models. Measured reason: SmolLM2-135M under the strict format got -1 on
    8 of 8 rollouts at every step, so the group's reward spread was 0 and GRPO got no gradient at all.
    Lenient keeps the well-formed score unchanged (``[0, 1]``) and grades a malformed completion too:
    its action is the text after the last ``</think>`` (the whole text when there is none), stripped, and
    it scores ``ratio - 1.0`` (float subtraction), in ``[-1, 0]``. So among malformed completions a
    closer action still scores higher, and a well-formed completion never scores below a malformed one.
    The one tie, decided on purpose: a malformed completion whose action matches the expert step exactly
    (ratio 1 → ``0.0``) ties a well-formed one that shares nothing with it (ratio 0 → ``0.0``). We keep
    the plain ``ratio - 1.0`` shift rather than squeeze the malformed range: both ends are equally poor
    outcomes, GRPO only reads within-group differences, and the affine shift keeps every value exact.

    >>> srl_step_reward("<think>sum them</think>x = 2 + 3", "x = 2 + 3")
    1.0
    >>> srl_step_reward("<think>sum them</think>abcd", "abce")
    0.75
    >>> srl_step_reward("abcd", "abce")
    -1.0
    >>> srl_step_reward("abcd", "abce", mode="lenient")
    -0.25
    >>> srl_step_reward("<think>a</think>b</think>abcd", "abce", mode="lenient")
    -0.25
    >>> srl_step_reward("x", "x", mode="loose")
    Traceback (most recent call last):
    ...
    ValueError: unknown SRL reward mode 'loose'; valid modes: 'strict', 'lenient'
    """
    if mode not in VALID_MODES:
        valid = ", ".join(repr(m) for m in VALID_MODES)
        raise ValueError(f"unknown SRL reward mode {mode!r}; valid modes: {valid}")
    expert = expert_step.strip()
    parsed = parse_think_action(completion)
    if parsed is not None:
        return difflib_ratio(parsed[1], expert)
    if mode == "strict":
        return FORMAT_PENALTY
    return difflib_ratio(_text_after_last_close(completion), expert) - 1.0
