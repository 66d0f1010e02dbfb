"""An async OpenAI-compatible chat client for the teacher: one completion per request, retried when transient.

``POST {base_url}/chat/completions`` with ``model``, ``messages``, ``temperature``, ``max_tokens`` and ``n=1``
(``base_url`` is the API root, e.g. ``http://localhost:8000/v1``). At most ``concurrency`` requests are in
flight (an asyncio.Semaphore, held per attempt, so a request waiting to retry frees its slot).

Failures:

* transient (connection errors, timeouts, HTTP 408/425/429/5xx: :func:`srl_rlvr.ops.failures.is_transient_http`):
  retried ``policy.transient_retries`` times by :func:`srl_rlvr.ops.failures.retry_transient_async`
  (exponential backoff); a ``Retry-After: <seconds>`` header on
  the failed response replaces that retry's wait (capped at :data:`MAX_RETRY_AFTER_S`). Still failing: the
  request raises :class:`TeacherDown`, a one-line UserInputError naming the URL.
* a request the teacher refuses as such (HTTP 400, 413, 422: a prompt over the context, a bad parameter) or a
  200 whose body holds no message: a :class:`TeacherReply` with ``error`` set (the caller rejects that sample
  as ``teacher_error``).
* anything else (401, 403, 404, ...: a wrong key, model or URL; a redirect loop, an undecodable body)
  raises :class:`TeacherRefused`: every other request would fail the same way.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from srl_rlvr.errors import UserInputError
from srl_rlvr.ops.failures import (
    FailurePolicy,
    HTTPStatusFailure,
    TransientFailure,
    is_transient_http,
    retry_after_hint,
    retry_transient_async,
)

PER_REQUEST_STATUS = frozenset({400, 413, 422})  # this request is refused; the next one may be fine
MAX_RETRY_AFTER_S = 300.0
DEFAULT_TIMEOUT_S = 600.0  # a long generation on a busy server takes minutes


@dataclass(frozen=True)
class TeacherReply:
    """One finished teacher response (or the teacher's refusal of this one request, in ``error``)."""

    request_id: str | None = None
    content: str | None = None
    reasoning: str | None = None  # ``reasoning_content`` of servers that send the monologue apart
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TeacherReply:
        return cls(**{k: data.get(k) for k in cls.__dataclass_fields__})


class TeacherDown(UserInputError):
    """The teacher kept failing transiently after every retry."""


class TeacherRefused(UserInputError):
    """The teacher refused in a way every request would be refused (wrong key, model or URL)."""


class TeacherStatus(HTTPStatusFailure):
    """An HTTP error status from the teacher (its message says what the teacher said)."""

    def __str__(self) -> str:
        return f"HTTP {self.status}: {_message(self.text, self.status)}"


def _one_line(text: str, limit: int = 300) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _message(text: str, status: int) -> str:
    """The error message of an OpenAI-style error body, else the body itself."""
    try:
        message = json.loads(text)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = text
    return _one_line(message or f"HTTP {status}")


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds, or None when absent or not a number (HTTP dates are not honoured).

    >>> parse_retry_after("0"), parse_retry_after("2.5"), parse_retry_after(None), parse_retry_after("soon")
    (0.0, 2.5, None, None)
    """
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S) if seconds == seconds else None  # NaN is no number


def reply_from_body(body: Any) -> TeacherReply:
    """The first choice of a chat-completion body; a body without a message is a per-request ``error``.

    >>> reply_from_body({"id": "c1", "choices": [{"message": {"content": "hi"}, "finish_reason": "stop"}]}).content
    'hi'
    >>> reply_from_body({"choices": []}).error
    'the response holds no choices[0].message'
    """
    try:
        choice = body["choices"][0]
        message = choice["message"]
        content = message.get("content")
    except (KeyError, IndexError, TypeError, AttributeError):
        return TeacherReply(error="the response holds no choices[0].message")
    request_id = body.get("id") if isinstance(body.get("id"), str) else None
    reasoning = message.get("reasoning_content")
    if not isinstance(content, str):
        return TeacherReply(request_id=request_id, error="the response message has no text content")
    return TeacherReply(
        request_id=request_id,
        content=content,
        reasoning=reasoning if isinstance(reasoning, str) and reasoning.strip() else None,
        finish_reason=choice.get("finish_reason") if isinstance(choice.get("finish_reason"), str) else None,
        usage=body.get("usage") if isinstance(body.get("usage"), dict) else None,
    )


class Teacher:
    """``async with Teacher(...) as teacher: reply = await teacher.complete(messages, 0.7, 1024)``."""

    def __init__(self, base_url: str, model: str, api_key: str | None = None, concurrency: int = 4,
                 policy: FailurePolicy | None = None, timeout_s: float = DEFAULT_TIMEOUT_S):
        if concurrency < 1:
            raise UserInputError(f"concurrency must be >= 1, got {concurrency}")
        self.base_url = base_url.rstrip("/")
        self.url = f"{self.base_url}/chat/completions"
        self.model, self.api_key, self.timeout_s = model, api_key, timeout_s
        self.policy = policy or FailurePolicy()
        self.concurrency = concurrency
        self.semaphore = asyncio.Semaphore(concurrency)
        self.http: Any = None
        self.sent = 0  # HTTP requests made, retries included
        self.retries = 0

    async def __aenter__(self) -> Teacher:
        import httpx

        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        self.http = httpx.AsyncClient(headers=headers, limits=limits,
                                      timeout=httpx.Timeout(self.timeout_s, connect=10.0))
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.http.aclose()
        self.http = None

    def body(self, messages: list[dict[str, Any]], temperature: float, max_tokens: int) -> dict[str, Any]:
        return {"model": self.model, "messages": messages, "temperature": temperature, "max_tokens": max_tokens,
                "n": 1}

    async def _once(self, body: dict[str, Any], headers: dict[str, str]) -> TeacherReply:
        async with self.semaphore:
            self.sent += 1
            response = await self.http.post(self.url, json=body, headers=headers)
        if response.status_code >= 400:
            raise TeacherStatus(response.status_code, response.text,
                                parse_retry_after(response.headers.get("retry-after")))
        try:
            return reply_from_body(response.json())
        except ValueError:
            return TeacherReply(error=f"the response is not JSON: {_one_line(response.text, 120)!r}")

    async def complete(self, messages: list[dict[str, Any]], temperature: float, max_tokens: int,
                       headers: dict[str, str] | None = None) -> TeacherReply:
        """One completion; see the module docstring for what each failure becomes."""
        body = self.body(messages, temperature, max_tokens)

        def count_retry(_attempt: int, _exc: BaseException) -> None:
            self.retries += 1

        try:
            return await retry_transient_async(lambda: self._once(body, headers or {}), f"teacher {self.url}",
                                               self.policy, is_transient_http, on_retry=count_retry,
                                               wait_hint=retry_after_hint)
        except TransientFailure as failure:
            attempts = self.policy.transient_retries
            raise TeacherDown(f"teacher {self.url} is unreachable: still failing after {attempts} "
                              f"retries: {_one_line(_describe(failure.__cause__))}") from None
        except TeacherStatus as exc:
            if exc.status in PER_REQUEST_STATUS:
                return TeacherReply(error=f"{exc}")
            raise TeacherRefused(f"teacher {self.url} refused the request: {exc}") from None
        except Exception as exc:
            if _is_http_error(exc):  # redirects, undecodable bodies: no retry makes them right
                raise TeacherRefused(f"teacher {self.url}: {_one_line(_describe(exc))}") from None
            raise


def _is_http_error(exc: BaseException) -> bool:
    import httpx

    return isinstance(exc, (httpx.HTTPError, httpx.InvalidURL))


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
