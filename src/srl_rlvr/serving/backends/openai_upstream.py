"""The ``openai`` backend: forward requests to any OpenAI-compatible endpoint (a big tier, a teacher).

    backend: openai
    openai: {base_url: https://api.example.com/v1, model: big-model, api_key_env: UPSTREAM_API_KEY}

Chat requests go upstream as chat messages (the upstream applies its own chat template, so the
``<think>`` prefill is not available here); completions go as text. Upstream responses are always
streamed, so time-to-first-token is measured the same way for every backend. Token counts come from the
upstream's ``usage``; an upstream that sends none gets its chunks counted instead (one per token on
vLLM-like servers, an estimate elsewhere).

A transient upstream failure (connection refused or reset, a timeout, HTTP 408/425/429/5xx) is retried
``openai.retries`` times with exponential backoff from ``openai.backoff_s`` (ops/failures.py), only before
the first byte of a response reaches our client, so a retry never duplicates streamed text; then the
client gets a 502 naming the upstream. Each retry is logged and counted in ``UpstreamClient.retries``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import AsyncIterator
from typing import Any

from srl_rlvr.errors import UserInputError
from srl_rlvr.ops.failures import HTTPStatusFailure, is_transient_http
from srl_rlvr.serving.backends import register_backend
from srl_rlvr.serving.backends.base import Backend, Finished, GenerationEvent, Prompt, SamplingParams, TextDelta
from srl_rlvr.serving.errors import APIError

logger = logging.getLogger(__name__)


class UpstreamClient:
    """Streaming OpenAI-style HTTP calls to one API root (``.../v1``), errors mapped to our APIError."""

    def __init__(self, api_root: str, api_key: str | None, timeout_s: float, retries: int = 0,
                 backoff_s: float = 0.5):
        from srl_rlvr.ops.failures import FailurePolicy

        self.api_root = api_root.rstrip("/")
        self.api_key, self.timeout_s = api_key, timeout_s
        self.policy = FailurePolicy(transient_retries=retries, backoff_s=backoff_s, backoff_max_s=max(backoff_s, 8.0))
        self.http: Any = None
        self.retries: dict[str, int] = {}  # reason -> count (the metrics catalog of issue 15 will export it)

    async def open(self) -> None:
        import httpx

        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        self.http = httpx.AsyncClient(headers=headers, timeout=httpx.Timeout(self.timeout_s, connect=10.0))

    async def close(self) -> None:
        if self.http is not None:
            await self.http.aclose()
            self.http = None

    async def _retried(self, call):
        """``call()`` with the transient-failure policy; its last failure mapped to our APIError."""
        import httpx

        from srl_rlvr.ops.failures import TransientFailure, retry_transient_async

        try:
            return await retry_transient_async(call, f"upstream {self.api_root}", self.policy, is_transient_http,
                                               on_retry=self._count_retry)
        except TransientFailure as exc:
            raise self.failed(exc.__cause__) from None
        except UpstreamStatus as exc:  # not transient: a client mistake passes through, the rest is a 502
            raise upstream_error(exc.status, exc.text) from None
        except httpx.HTTPError as exc:
            raise self.unreachable(exc) from None

    async def post(self, path: str, body: dict[str, Any]) -> Any:
        async def once():
            response = await self.http.post(f"{self.api_root}{path}", json=body)
            _raise_for_status(response.status_code, response.text)
            return response

        return await self._retried(once)

    async def get_json(self, path: str) -> Any:
        async def once():
            response = await self.http.get(f"{self.api_root}{path}")
            _raise_for_status(response.status_code, response.text)
            return response

        return (await self._retried(once)).json()

    async def stream(self, path: str, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """The JSON chunks of an SSE response, up to ``data: [DONE]``."""
        import httpx

        async def opened():
            request = self.http.build_request("POST", f"{self.api_root}{path}", json=body)
            response = await self.http.send(request, stream=True)
            if response.status_code >= 400:
                text = (await response.aread()).decode("utf-8", "replace")
                await response.aclose()
                _raise_for_status(response.status_code, text)
            return response

        response = await self._retried(opened)  # retried only until the response starts
        try:
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[len("data:"):].strip()
                if data == "[DONE]":
                    return
                chunk = json.loads(data)
                if isinstance(chunk, dict) and "error" in chunk:
                    raise upstream_error(502, json.dumps(chunk))
                yield chunk
        except httpx.HTTPError as exc:
            raise self.unreachable(exc) from None
        finally:
            await response.aclose()

    def _count_retry(self, attempt: int, exc: BaseException) -> None:
        reason = f"http_{exc.status}" if isinstance(exc, UpstreamStatus) else type(exc).__name__
        self.retries[reason] = self.retries.get(reason, 0) + 1
        logger.warning("upstream %s: %s, retry %d of %d", self.api_root, reason, attempt,
                       self.policy.transient_retries)

    def failed(self, exc: BaseException | None) -> APIError:
        if isinstance(exc, UpstreamStatus):
            return upstream_error(exc.status, exc.text)
        return self.unreachable(exc)

    def unreachable(self, exc: BaseException | None) -> APIError:
        return APIError(502, f"upstream {self.api_root} unreachable: {type(exc).__name__}: {exc}",
                        "upstream_unreachable")


class UpstreamStatus(HTTPStatusFailure):
    """An HTTP error status from the upstream (transient when 408, 425, 429 or 5xx)."""


def _raise_for_status(status: int, text: str) -> None:
    if status >= 400:
        raise UpstreamStatus(status, text)


def upstream_error(status: int, text: str) -> APIError:
    """Client mistakes (400, 404, 413, 422) pass through with the upstream's message; the rest are a 502."""
    try:
        message = json.loads(text)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = text.strip()[:500] or f"HTTP {status}"
    if status in (400, 404, 413, 422):
        return APIError(400 if status == 422 else status, f"upstream: {message}", "upstream_rejected")
    return APIError(502, f"upstream answered HTTP {status}: {message}", "upstream_error")


def sampling_body(params: SamplingParams) -> dict[str, Any]:
    body: dict[str, Any] = {"max_tokens": params.max_tokens, "temperature": params.temperature, "top_p": params.top_p}
    if params.stop:
        body["stop"] = list(params.stop)
    if params.seed is not None:
        body["seed"] = params.seed
    return body


class OpenAIUpstreamBackend(Backend):
    name = "openai"

    def __init__(self, settings: Any, client: UpstreamClient | None = None, upstream_model: str | None = None):
        super().__init__(settings)
        if client is None:
            section = settings.openai
            if not section.base_url:
                raise UserInputError("backend 'openai' needs openai.base_url in serve.yaml (the upstream's /v1 root)")
            client = UpstreamClient(section.base_url, env_api_key(section.api_key_env), section.timeout_s,
                                    section.retries, section.backoff_s)
            upstream_model = section.model or settings.model
        self.client = client
        self.upstream_model = upstream_model or settings.model
        self._in_flight: dict[str | None, int] = {}

    async def start(self) -> None:
        await self.client.open()

    async def close(self) -> None:
        await self.client.close()

    def upstream_name(self, adapter: str | None) -> str:
        return adapter if adapter is not None else self.upstream_model

    async def generate(self, adapter: str | None, prompt: Prompt,
                       params: SamplingParams) -> AsyncIterator[GenerationEvent]:
        body = {"model": self.upstream_name(adapter), **sampling_body(params), "stream": True,
                "stream_options": {"include_usage": True}}
        if prompt.messages is not None:
            path, body["messages"] = "/chat/completions", list(prompt.messages)
        else:
            path = "/completions"
            body["prompt"] = list(prompt.token_ids) if prompt.token_ids is not None else prompt.text
        finish_reason, usage, chunks = "stop", None, 0
        self._in_flight[adapter] = self._in_flight.get(adapter, 0) + 1
        try:
            async for chunk in self.client.stream(path, body):
                usage = chunk.get("usage") or usage
                for choice in chunk.get("choices") or []:
                    delta = choice.get("delta") or {}
                    reasoning = delta.get("reasoning_content") or delta.get("reasoning")
                    text = delta.get("content") if prompt.messages is not None else choice.get("text")
                    if reasoning:
                        chunks += 1
                        yield TextDelta(reasoning, reasoning=True)
                    if text:
                        chunks += 1
                        yield TextDelta(text)
                    finish_reason = choice.get("finish_reason") or finish_reason
        finally:
            self._in_flight[adapter] -= 1
        prompt_tokens = (usage or {}).get("prompt_tokens", len(prompt.token_ids or ()))
        completion_tokens = (usage or {}).get("completion_tokens", chunks)
        yield Finished(finish_reason, int(prompt_tokens), int(completion_tokens))

    def load_snapshot(self) -> dict[str | None, tuple[int, int]]:
        return {name: (n, 0) for name, n in self._in_flight.items()} or {None: (0, 0)}


def env_api_key(env_name: str | None) -> str | None:
    if env_name is None:
        return None
    value = os.environ.get(env_name, "").strip()
    if not value:
        raise UserInputError(f"serve.yaml names {env_name} as the upstream API key variable, but it is not set")
    return value


@register_backend("openai")
def make_openai_backend(settings: Any) -> OpenAIUpstreamBackend:
    return OpenAIUpstreamBackend(settings)
