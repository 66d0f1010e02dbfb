"""Whether a teacher sample is kept, and its think block and steps when it is.

Checks, in order; the first that fails is the sample's rejection reason:

1. ``teacher_error``: the teacher refused this request or sent no message text;
2. ``truncated``: ``finish_reason == "length"`` (the text stops where max_tokens did);
3. ``unparsable_steps``: a ``<think>`` never closed, or no step left once the think blocks are off;
4. ``wrong_answer``: math: the final answer is judged by :func:`srl_rlvr.rewards.math.math_answer_reward`,
   the RLVR reward itself, so a kept trajectory is one RLVR would have rewarded; code: the program must
   pass every test in the sandbox (:func:`srl_rlvr.rewards.code.code_test_reward` == 1.0).

Every ``<think>...</think>`` block (the full-problem prompt asks for one before each step) is cut out of
the text and joined into ``think``; a ``</think>`` with no opening tag (a server that prefilled
``<think>``) closes a block that started at the beginning. A server's separate ``reasoning_content``
comes first in ``think``. What is left is split into steps by :func:`srl_rlvr.data.steps.split_steps`,
the splitter ``srl-rlvr data build`` uses for a ``solution``.

``contaminated`` (a prompt dropped before sampling, see ``decontaminate.py``) is the fifth reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from srl_rlvr.data.steps import split_steps
from srl_rlvr.pipelines.distill.teacher import TeacherReply

REASONS = ("wrong_answer", "truncated", "unparsable_steps", "contaminated", "teacher_error")
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
_THINK_BLOCK = re.compile(r"<think>(.*?)</think>", re.DOTALL)


@dataclass(frozen=True)
class Verdict:
    reason: str | None  # None: kept
    think: str = ""
    steps: list[str] = field(default_factory=list)
    detail: str = ""

    @property
    def kept(self) -> bool:
        return self.reason is None


def split_think(text: str) -> tuple[str, str, bool]:
    """(think, the rest, well_formed): every think block cut out of ``text``.

    >>> split_think("<think>plan</think>Step 1: a.\\nStep 2: b.")
    ('plan', 'Step 1: a.\\nStep 2: b.', True)
    >>> split_think("<think>one</think>A.\\n<think>two</think>B.")
    ('one\\n\\ntwo', 'A.\\nB.', True)
    >>> split_think("prefilled plan</think>A.")
    ('prefilled plan', 'A.', True)
    >>> split_think("<think>never closed")[2]
    False
    """
    thinks: list[str] = []
    close, open_ = text.find(THINK_CLOSE), text.find(THINK_OPEN)
    if close >= 0 and (open_ < 0 or close < open_):
        thinks.append(text[:close].strip())
        text = text[close + len(THINK_CLOSE):]
    thinks += [m.strip() for m in _THINK_BLOCK.findall(text)]
    rest = _THINK_BLOCK.sub("", text)
    well_formed = THINK_OPEN not in rest and THINK_CLOSE not in rest
    return "\n\n".join(t for t in thinks if t), rest.strip(), well_formed


def verify_reply(reply: TeacherReply, domain: str, answer: str | None = None,
                 tests: str | list[str] | None = None, entry_point: str | None = None) -> Verdict:
    """Check one teacher reply against its problem's gold ``answer`` (math) or ``tests`` (code)."""
    if reply.error is not None or reply.content is None:
        return Verdict("teacher_error", detail=reply.error or "no content")
    think, body, well_formed = split_think(reply.content)
    if reply.reasoning:
        think = f"{reply.reasoning.strip()}\n\n{think}".strip()
    if reply.finish_reason == "length":
        return Verdict("truncated", think, detail="finish_reason is 'length'")
    steps = split_steps(body) if well_formed else []
    if not well_formed:
        return Verdict("unparsable_steps", think, detail="a <think> block is never closed")
    if not steps:
        return Verdict("unparsable_steps", think, detail="no step after the think block")
    if domain == "code":
        from srl_rlvr.rewards.code import code_test_reward

        score = code_test_reward(body, tests or [], entry_point=entry_point)
        if score < 1.0:
            return Verdict("wrong_answer", think, steps, detail=f"passed {score:.0%} of the tests")
        return Verdict(None, think, steps)
    from srl_rlvr.rewards.math import extract_answer, math_answer_reward

    if math_answer_reward(body, answer or "") < 1.0:
        return Verdict("wrong_answer", think, steps, detail=f"answered {extract_answer(body)!r}, gold {answer!r}")
    return Verdict(None, think, steps)
