"""``POST /v1/chat/completions`` (plain and streamed), with the SRL think split."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, StreamingResponse

from srl_rlvr.serving import sse
from srl_rlvr.serving.backends.base import Finished, GenerationEvent, TextDelta
from srl_rlvr.serving.catalog import ModelCatalog, Target
from srl_rlvr.serving.deps import get_catalog, get_metrics, get_settings, request_api_key, require_user
from srl_rlvr.serving.errors import APIError
from srl_rlvr.serving.generation import chat_prompt, check_queue, metered, sampling_params
from srl_rlvr.serving.metrics import ServingMetrics
from srl_rlvr.serving.schemas import ChatCompletionRequest
from srl_rlvr.serving.settings import ServeSettings
from srl_rlvr.serving.think_format import REASONING

router = APIRouter()


@router.post("/v1/chat/completions", dependencies=[Depends(require_user)])
async def chat_completions(body: ChatCompletionRequest, request: Request,
                           catalog: ModelCatalog = Depends(get_catalog),
                           settings: ServeSettings = Depends(get_settings),
                           metrics: ServingMetrics = Depends(get_metrics)) -> Any:
    target, headers = await catalog.select(body.model, body, request_api_key(request, settings))
    messages = [m.as_template_message() for m in body.messages]
    try:
        prompt = chat_prompt(target, messages)
    except Exception as exc:  # noqa: BLE001 - chat templates raise for message orders they do not support
        if isinstance(exc, APIError):
            raise
        raise APIError(400, f"the chat template rejected these messages: {exc}", "invalid_messages",
                       "messages") from None
    params = sampling_params(target, prompt, settings.limits, max_tokens=body.requested_max_tokens(),
                             default_max_tokens=settings.limits.default_max_tokens, temperature=body.temperature,
                             top_p=body.top_p, stop=body.stop_list(), seed=body.seed)
    check_queue(catalog.waiting(), settings.limits)
    events = metered(target, target.backend.generate(target.adapter, prompt, params), metrics,
                     request.state.arrival)
    if body.stream:
        first = await sse.first_event(events)
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return StreamingResponse(sse.guarded(_stream(target, first, events, include_usage), events, "chat"),
                                 media_type="text/event-stream", headers=headers)
    return JSONResponse(await _complete(target, events), headers=headers)


async def _complete(target: Target, events: AsyncIterator[GenerationEvent]) -> dict[str, Any]:
    text, upstream_reasoning, finished = [], [], None
    async for event in events:
        if isinstance(event, TextDelta):
            (upstream_reasoning if event.reasoning else text).append(event.text)
        else:
            finished = event
    reasoning, content = target.think.answer("".join(text))
    if upstream_reasoning:
        reasoning = "".join(upstream_reasoning) + (reasoning or "")
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if reasoning is not None:
        message[REASONING] = reasoning
    return {
        "id": sse.new_id("chatcmpl"), "object": "chat.completion", "created": sse.now(), "model": target.name,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finished.finish_reason}],
        "usage": sse.usage(finished.prompt_tokens, finished.completion_tokens),
    }


async def _stream(target: Target, first: GenerationEvent, events: AsyncIterator[GenerationEvent],
                  include_usage: bool) -> AsyncIterator[str]:
    head = {"id": sse.new_id("chatcmpl"), "object": "chat.completion.chunk", "created": sse.now(),
            "model": target.name}

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> str:
        return sse.frame({**head, "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                                "finish_reason": finish_reason}]})

    splitter = target.think.splitter()
    yield chunk({"role": "assistant", "content": ""})
    if target.think.prefill and splitter is None:  # the raw text starts with the prefilled tag
        yield chunk({"content": "<think>"})
    event: GenerationEvent | None = first
    while event is not None:
        if isinstance(event, Finished):
            for kind, text in splitter.finish() if splitter else []:
                yield chunk({kind: text})
            yield chunk({}, event.finish_reason)
            if include_usage:
                yield sse.usage_frame(head, event.prompt_tokens, event.completion_tokens)
            break
        if event.reasoning:
            yield chunk({REASONING: event.text})
        elif splitter is not None:
            for kind, text in splitter.feed(event.text):
                yield chunk({kind: text})
        else:
            yield chunk({"content": event.text})
        event = await anext(events, None)
