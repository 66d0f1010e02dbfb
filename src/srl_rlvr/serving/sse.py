"""Server-sent events in OpenAI's streaming shape: ``data: {json}`` frames, ending with ``data: [DONE]``."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from srl_rlvr.serving.backends.base import GenerationEvent
from srl_rlvr.serving.errors import APIError, error_body

DONE = "data: [DONE]\n\n"
log = logging.getLogger("srl_rlvr.serving")


def frame(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False, separators=(',', ':'))}\n\n"


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def now() -> int:
    return int(time.time())


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


async def first_event(events: AsyncIterator[GenerationEvent]) -> GenerationEvent:
    """Wait for the first event before any header is sent, so an early failure is a plain HTTP error."""
    try:
        return await anext(events)
    except BaseException:
        await events.aclose()
        raise


def error_frame(exc: BaseException) -> str:
    """A failure after streaming began can only be reported inside the stream."""
    if isinstance(exc, APIError):
        return frame(exc.body())
    return frame(error_body(500, f"internal error: {type(exc).__name__}"))


def usage_frame(head: dict[str, Any], prompt_tokens: int, completion_tokens: int) -> str:
    """The final ``stream_options.include_usage`` chunk: no choices, just usage."""
    return frame({**head, "choices": [], "usage": usage(prompt_tokens, completion_tokens)})


async def guarded(frames: AsyncIterator[str], events: AsyncIterator[GenerationEvent], what: str) -> AsyncIterator[str]:
    """Relay a route's frames, then ``[DONE]``. Headers are already sent, so a failure becomes an error
    frame; the generation is closed however the stream ends (a client that disconnects frees its row)."""
    try:
        async for chunk in frames:
            yield chunk
    except Exception as exc:  # noqa: BLE001 - see the docstring
        if not isinstance(exc, APIError):
            log.exception("%s stream failed", what)
        yield error_frame(exc)
    finally:
        await frames.aclose()
        await events.aclose()
    yield DONE
