"""Between a parsed request and a backend: prompt rendering, limits, sampling settings, metrics."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from srl_rlvr.serving.backends.base import Finished, GenerationEvent, Prompt, SamplingParams, TextDelta
from srl_rlvr.serving.catalog import Target
from srl_rlvr.serving.errors import APIError
from srl_rlvr.serving.metrics import ServingMetrics
from srl_rlvr.serving.settings import LimitSettings


def chat_prompt(target: Target, messages: list[dict[str, Any]]) -> Prompt:
    """The training-time prompt (chat template, plus ``<think>`` where the model was trained with it)."""
    backend = target.backend
    if not backend.renders_prompts:
        return Prompt(messages=tuple(messages))
    text = target.think.render(backend.tokenizer, messages)
    # The chat template already holds the special tokens: no second BOS.
    return Prompt(text=text, token_ids=tuple(backend.tokenizer(text, add_special_tokens=False)["input_ids"]))


def completion_prompt(target: Target, prompt: str | list[int]) -> Prompt:
    """A raw completion prompt: text is tokenized as vLLM does (special tokens added), ids are taken as given."""
    backend = target.backend
    if isinstance(prompt, list):
        if not backend.renders_prompts:
            return Prompt(token_ids=tuple(prompt))
        vocab = len(backend.tokenizer)
        bad = next((t for t in prompt if not 0 <= t < vocab), None)
        if bad is not None:
            raise APIError(400, f"prompt token id {bad} is outside the vocabulary (0..{vocab - 1})", param="prompt")
        return Prompt(text=backend.tokenizer.decode(prompt), token_ids=tuple(prompt))
    if not backend.renders_prompts:
        return Prompt(text=prompt)
    return Prompt(text=prompt, token_ids=tuple(backend.tokenizer(prompt)["input_ids"]))


def sampling_params(target: Target, prompt: Prompt, limits: LimitSettings, *, max_tokens: int | None,
                    default_max_tokens: int, temperature: float | None, top_p: float | None,
                    stop: tuple[str, ...], seed: int | None) -> SamplingParams:
    """Check the request against the server's caps (400 with the reason) and fill in defaults."""
    n_prompt = len(prompt.token_ids) if prompt.token_ids is not None else None
    if n_prompt is not None and n_prompt > limits.max_prompt_tokens:
        raise APIError(400, f"The prompt is {n_prompt} tokens long; this server accepts at most "
                       f"{limits.max_prompt_tokens} prompt tokens.", "prompt_too_long", "messages")
    if n_prompt == 0:
        raise APIError(400, "The prompt is empty.", "empty_prompt", "prompt")
    if max_tokens is not None and max_tokens > limits.max_tokens:
        raise APIError(400, f"max_tokens={max_tokens} is over this server's limit of {limits.max_tokens}.",
                       "max_tokens_too_large", "max_tokens")
    context = target.backend.max_model_len
    if max_tokens is None:
        max_tokens = min(default_max_tokens, limits.max_tokens)
        if context is not None and n_prompt is not None:
            max_tokens = max(1, min(max_tokens, context - n_prompt))
    if context is not None and n_prompt is not None and n_prompt + max_tokens > context:
        raise APIError(400, f"This model's maximum context length is {context} tokens. However, you requested "
                       f"{n_prompt + max_tokens} tokens ({n_prompt} in the prompt, {max_tokens} in the completion).",
                       "context_length_exceeded", "max_tokens")
    return SamplingParams(max_tokens=max_tokens, temperature=1.0 if temperature is None else temperature,
                          top_p=1.0 if top_p is None else top_p, stop=stop, seed=seed)


def check_queue(waiting: int, limits: LimitSettings) -> None:
    if waiting >= limits.max_waiting_requests:
        raise APIError(503, f"The server is busy ({waiting} requests waiting); retry later.", "server_busy")


async def metered(target: Target, events: AsyncIterator[GenerationEvent], metrics: ServingMetrics,
                  arrival: float) -> AsyncIterator[GenerationEvent]:
    """Pass events through, recording time to first token, latency and token counts when it finishes."""
    first_token = None
    try:
        async for event in events:
            if isinstance(event, TextDelta) and first_token is None:
                first_token = time.monotonic()
            if isinstance(event, Finished) and target.backend.metered:
                metrics.observe_finished(target.labels, arrival=arrival, first_token=first_token, end=time.monotonic(),
                                         prompt_tokens=event.prompt_tokens, completion_tokens=event.completion_tokens,
                                         finish_reason=event.finish_reason)
            yield event
    finally:
        await events.aclose()
