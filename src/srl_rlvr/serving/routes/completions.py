"""``POST /v1/completions``: raw text in, raw text out (no chat template, no think split)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, StreamingResponse

from srl_rlvr.serving import sse
from srl_rlvr.serving.backends.base import Finished, GenerationEvent
from srl_rlvr.serving.catalog import ModelCatalog
from srl_rlvr.serving.deps import get_catalog, get_metrics, get_settings, require_user
from srl_rlvr.serving.generation import check_queue, completion_prompt, metered, sampling_params
from srl_rlvr.serving.metrics import ServingMetrics
from srl_rlvr.serving.schemas import CompletionRequest
from srl_rlvr.serving.settings import ServeSettings

router = APIRouter()


@router.post("/v1/completions", dependencies=[Depends(require_user)])
async def completions(body: CompletionRequest, request: Request, catalog: ModelCatalog = Depends(get_catalog),
                      settings: ServeSettings = Depends(get_settings),
                      metrics: ServingMetrics = Depends(get_metrics)) -> Any:
    target, headers = await catalog.select(body.model, body)
    prompt = completion_prompt(target, body.prompt_value())
    params = sampling_params(target, prompt, settings.limits, max_tokens=body.max_tokens,
                             default_max_tokens=settings.limits.default_max_tokens, temperature=body.temperature,
                             top_p=body.top_p, stop=body.stop_list(), seed=body.seed)
    check_queue(catalog.waiting(), settings.limits)
    events = metered(target, target.backend.generate(target.adapter, prompt, params), metrics,
                     request.state.arrival)
    head = {"id": sse.new_id("cmpl"), "object": "text_completion", "created": sse.now(), "model": target.name}
    if body.stream:
        first = await sse.first_event(events)
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return StreamingResponse(sse.guarded(_stream(head, first, events, include_usage), events, "completion"),
                                 media_type="text/event-stream", headers=headers)
    text, finished = [], None
    async for event in events:
        if isinstance(event, Finished):
            finished = event
        else:
            text.append(event.text)
    return JSONResponse({
        **head, "choices": [{"index": 0, "text": "".join(text), "logprobs": None,
                             "finish_reason": finished.finish_reason}],
        "usage": sse.usage(finished.prompt_tokens, finished.completion_tokens),
    }, headers=headers)


async def _stream(head: dict[str, Any], first: GenerationEvent, events: AsyncIterator[GenerationEvent],
                  include_usage: bool) -> AsyncIterator[str]:
    def chunk(text: str, finish_reason: str | None = None) -> str:
        return sse.frame({**head, "choices": [{"index": 0, "text": text, "logprobs": None,
                                                "finish_reason": finish_reason}]})

    event: GenerationEvent | None = first
    while event is not None:
        if isinstance(event, Finished):
            yield chunk("", event.finish_reason)
            if include_usage:
                yield sse.usage_frame(head, event.prompt_tokens, event.completion_tokens)
            break
        yield chunk(event.text)
        event = await anext(events, None)
