"""TRL-style batch adapters: ``f(completions, **dataset_columns) -> list[float]``.

TRL's GRPOTrainer calls each reward function with ``prompts``, ``completions``, ``completion_ids``,
``trainer_state``, ``log_extra``, ``log_metric`` and every dataset column as keyword lists; each adapter
reads the one or two columns it needs and ignores the rest. Their ``__name__`` is what TRL logs
(``rewards/<name>/mean``), so each reads as the reward it computes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from srl_rlvr.rewards.code import code_test_reward
from srl_rlvr.rewards.math import math_answer_reward
from srl_rlvr.rewards.srl import srl_step_reward

Completion = str | Sequence[dict[str, Any]]


def _content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    # Multimodal messages: a list of typed blocks; only the text blocks are the answer.
    return "".join(block.get("text", "") for block in content if block.get("type") == "text")


def completion_text(completion: Completion) -> str:
    """The raw text of a completion, whether TRL passed a string or conversational messages.

    When TRL's response parser split the reasoning off (``reasoning_content`` or ``thinking``), the
    ``<think>...</think>`` wrapper is put back, since the SRL format rule is about the raw text.

    >>> completion_text("<think>a</think>b")
    '<think>a</think>b'
    >>> completion_text([{"role": "assistant", "content": "b", "reasoning_content": "a"}])
    '<think>a</think>b'
    """
    if isinstance(completion, str):
        return completion
    parts = []
    for message in completion:
        if message.get("role", "assistant") != "assistant":
            continue
        content = _content_text(message.get("content"))
        reasoning = message.get("reasoning_content") or message.get("thinking")
        parts.append(f"<think>{reasoning}</think>{content}" if reasoning else content)
    return "".join(parts)


def _column(kwargs: dict[str, Any], name: str, length: int, reward_name: str) -> list[Any]:
    if name not in kwargs:
        raise KeyError(f"reward {reward_name!r} needs a dataset column {name!r}; got {sorted(kwargs)}")
    values = list(kwargs[name])
    if len(values) != length:
        raise ValueError(f"column {name!r} has {len(values)} values for {length} completions")
    return values


def srl_step_reward_batch(completions: Sequence[Completion], **kwargs: Any) -> list[float]:
    """Strict SRL reward for each completion against column ``expert_step``.

    >>> srl_step_reward_batch(["<think>t</think>x = 1", "x = 1"], expert_step=["x = 1", "x = 1"])
    [1.0, -1.0]
    """
    experts = _column(kwargs, "expert_step", len(completions), "srl")
    return [srl_step_reward(completion_text(c), e, mode="strict") for c, e in zip(completions, experts)]


def srl_step_reward_lenient_batch(completions: Sequence[Completion], **kwargs: Any) -> list[float]:
    """Lenient SRL reward (malformed answers graded in ``[-1, 0]``) against column ``expert_step``.

    >>> srl_step_reward_lenient_batch([[{"role": "assistant", "content": "x = 1"}]], expert_step=["x = 1"])
    [0.0]
    """
    experts = _column(kwargs, "expert_step", len(completions), "srl_lenient")
    return [srl_step_reward(completion_text(c), e, mode="lenient") for c, e in zip(completions, experts)]


def math_answer_reward_batch(completions: Sequence[Completion], **kwargs: Any) -> list[float]:
    """1.0/0.0 per completion against column ``answer`` (math-verify).

    >>> math_answer_reward_batch(["so \\\\boxed{12}", "so \\\\boxed{13}"], answer=["12", "12"])
    [1.0, 0.0]
    """
    answers = _column(kwargs, "answer", len(completions), "math")
    return [math_answer_reward(completion_text(c), a) for c, a in zip(completions, answers)]


def code_test_reward_batch(completions: Sequence[Completion], **kwargs: Any) -> list[float]:
    """Test pass fraction per completion against column ``tests`` (and ``entry_point`` if present).

    Completions run in parallel sandboxes (one per CPU): each is a separate process, mostly waiting.

    >>> code_test_reward_batch(["def f():\\n    return 1"], tests=[["assert f() == 1"]])
    [1.0]
    """
    tests = _column(kwargs, "tests", len(completions), "code")
    entry_points = kwargs.get("entry_point") or [None] * len(completions)
    sandbox = kwargs.get("sandbox")  # strict | weak (None: $SRL_RLVR_SANDBOX, else strict); see sandbox.py
    jobs = list(zip(completions, tests, entry_points))

    def score(job: tuple[Completion, Any, str | None]) -> float:
        completion, test, entry_point = job
        return code_test_reward(completion_text(completion), test, entry_point=entry_point, sandbox=sandbox)

    if len(jobs) <= 1:
        return [score(job) for job in jobs]
    with ThreadPoolExecutor(max_workers=min(len(jobs), os.cpu_count() or 1)) as pool:
        return list(pool.map(score, jobs))


srl_step_reward_batch.__name__ = "srl_step_reward"
srl_step_reward_lenient_batch.__name__ = "srl_step_reward_lenient"
math_answer_reward_batch.__name__ = "math_answer_reward"
code_test_reward_batch.__name__ = "code_test_reward"
