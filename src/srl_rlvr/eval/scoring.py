"""Scoring helpers for eval: pass@k, the full-solution format check, and the stepwise step parser.

Correctness itself is never decided here: it is :func:`srl_rlvr.rewards.math.math_answer_reward`,
the same function RLVR trains on.
"""

from __future__ import annotations

import re
from math import comb

from srl_rlvr.rewards.srl import THINK_CLOSE, THINK_OPEN, parse_think_action

_TAG = re.compile(re.escape(THINK_OPEN) + "|" + re.escape(THINK_CLOSE))
# A step that states the final answer ends a stepwise rollout.
_STATES_ANSWER = re.compile(r"the (?:final )?answer is|\\boxed", re.IGNORECASE)
# The recorded solution numbers the steps itself, so a model's own "Step 3:" prefix is dropped.
_STEP_PREFIX = re.compile(r"^\s*(?:\*\*)?step\s*\d+\s*[:.)]\s*(?:\*\*)?\s*", re.IGNORECASE)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from ``n`` samples of which ``c`` are correct (Chen et al. 2021): ``1 - C(n-c,k)/C(n,k)``.

    With ``n == k`` (what eval draws) it is 1 when any sample is correct, else 0.

    >>> pass_at_k(4, 0, 4), pass_at_k(4, 1, 4), pass_at_k(4, 2, 1)
    (0.0, 1.0, 0.5)
    """
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n, got n={n} c={c} k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


def full_format_ok(completion: str) -> bool:
    """A full-mode completion is well formed when it has at least one ``<think>…</think>`` block, every
    ``<think>`` is closed before the next opens (no nesting, no stray ``</think>``), and non-blank text
    follows the last ``</think>``.

    >>> full_format_ok("<think>a</think>Step 1: x<think>b</think>Step 2: y. The answer is 3.")
    True
    >>> full_format_ok("<think>a</think>"), full_format_ok("Step 1: x"), full_format_ok("<think>a<think>b</think>c")
    (False, False, False)
    """
    tags = _TAG.findall(completion)
    if not tags or len(tags) % 2:
        return False
    if any(tag != (THINK_OPEN if i % 2 == 0 else THINK_CLOSE) for i, tag in enumerate(tags)):
        return False
    return bool(completion.rpartition(THINK_CLOSE)[2].strip())


def step_text(completion: str) -> str:
    """The step a stepwise call wrote: the action of a well-formed ``<think>…</think>step`` completion,
    else the text after the last ``</think>``, else the whole text; without a leading ``Step k:``.

    >>> step_text("<think>add</think>Step 2: 3 + 4 = 7.")
    '3 + 4 = 7.'
    >>> step_text("no tags here")
    'no tags here'
    """
    parsed = parse_think_action(completion)
    if parsed is not None:
        text = parsed[1]
    else:
        _, separator, tail = completion.rpartition(THINK_CLOSE)
        text = tail if separator else completion
    return _STEP_PREFIX.sub("", text.strip(), count=1).strip()


def states_answer(step: str) -> bool:
    """Whether a step gives the final answer ("The answer is …" or ``\\boxed``), which ends the rollout.

    >>> states_answer("So she has 9. The answer is 9."), states_answer("x = 9")
    (True, False)
    """
    return bool(_STATES_ANSWER.search(step))
