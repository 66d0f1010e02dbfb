"""What the hf backend's worker keeps per request: the queued request, adapter commands, and the per-token
bookkeeping (stream each row's new text, end it at eos, a stop string or its own ``max_tokens``) shared by
the static and the continuous scheduler."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from srl_rlvr.serving.backends.base import Finished, GenerationEvent, SamplingParams, TextDelta
from srl_rlvr.serving.errors import APIError


@dataclass(eq=False)
class Request:
    adapter: str | None
    token_ids: list[int]
    params: SamplingParams
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)
    queued_at: float = field(default_factory=time.monotonic)
    # generation state, touched only by the worker thread
    tokens: list[int] = field(default_factory=list)
    sent_chars: int = 0
    done: bool = False

    @property
    def kv_tokens(self) -> int:
        """The most KV-cache positions this request can grow to (what ``max_batch_tokens`` caps)."""
        return len(self.token_ids) + self.params.max_tokens

    def send(self, event: GenerationEvent | BaseException) -> None:
        with contextlib.suppress(RuntimeError):  # the event loop is gone (shutdown): nobody is listening
            self.loop.call_soon_threadsafe(self.events.put_nowait, event)

    def fail(self, error: BaseException) -> None:
        if not self.done:
            self.done = True
            self.send(error)


@dataclass(eq=False)
class Command:
    """Work that must not overlap a forward pass (adapter load/unload/replace).

    ``touches`` is the adapter whose weights it changes: the continuous scheduler runs it between decode
    steps once no running row uses that adapter (so rows in flight finish on the weights they started on).
    """

    run: Callable[[], Any]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future
    touches: str | None = None

    def execute(self) -> None:
        try:
            result = self.run()
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting coroutine
            self.loop.call_soon_threadsafe(set_exception, self.future, exc)
        else:
            self.loop.call_soon_threadsafe(set_result, self.future, result)


class RowController:
    """Turns each new token of a row into streamed text and ends the row; also a transformers stopping
    criterion, so the static scheduler's ``generate`` calls it once per step."""

    def __init__(self, rows: list[Request], tokenizer: Any, eos_ids: set[int]):
        self.rows, self.tokenizer, self.eos_ids = rows, tokenizer, eos_ids

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        for row, token in zip(self.rows, input_ids[:, -1].tolist()):
            self.process(row, token)
        return torch.tensor([row.done for row in self.rows], dtype=torch.bool, device=input_ids.device)

    def process(self, row: Request, token: int) -> None:
        if row.done:
            return
        if row.cancelled.is_set():  # the client went away: free the row
            row.done = True
        elif token in self.eos_ids:
            self.finish(row, "stop")
        else:
            row.tokens.append(token)
            self.advance(row)
            if not row.done and len(row.tokens) >= row.params.max_tokens:
                self.finish(row, "length")

    def _text(self, row: Request) -> str:
        # No clean-up of spaces: byte-level decoding is then prefix-stable, so deltas add up to the text.
        return self.tokenizer.decode(row.tokens, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def advance(self, row: Request) -> None:
        text = self._text(row)
        hold = 0
        if row.params.stop:
            hits = [i for s in row.params.stop if (i := text.find(s, max(0, row.sent_chars - len(s)))) >= 0]
            if hits:
                self._send_until(row, text, min(hits))
                self._end(row, "stop")
                return
            hold = max(partial_suffix(text, s) for s in row.params.stop)  # maybe the start of a stop string
        end = len(text) - hold
        while end > row.sent_chars and text[end - 1] == "\ufffd":  # half of a multi-byte character
            end -= 1
        self._send_until(row, text, end)

    def finish(self, row: Request, reason: str) -> None:
        text = self._text(row)
        self._send_until(row, text, len(text))
        self._end(row, reason)

    @staticmethod
    def _send_until(row: Request, text: str, end: int) -> None:
        if end > row.sent_chars:
            row.send(TextDelta(text[row.sent_chars:end]))
            row.sent_chars = end

    @staticmethod
    def _end(row: Request, reason: str) -> None:
        row.done = True
        row.send(Finished(reason, len(row.token_ids), len(row.tokens)))


def generation_failed(exc: BaseException) -> APIError:
    """The 500 a request gets when its forward pass or sampling raised (the worker itself lives on)."""
    return APIError(500, f"generation failed: {type(exc).__name__}: {exc}", "generation_failed")


def partial_suffix(text: str, stop: str) -> int:
    for n in range(min(len(stop) - 1, len(text)), 0, -1):
        if text.endswith(stop[:n]):
            return n
    return 0


def common_prefix_length(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def set_result(future: asyncio.Future, value: Any) -> None:
    if not future.done():
        future.set_result(value)


def set_exception(future: asyncio.Future, exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
