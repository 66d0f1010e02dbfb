"""The ``openai`` backend: forward requests to any OpenAI-compatible endpoint (a big tier, a teacher).

    backend: openai
    openai: {base_url: https://api.example.com/v1, model: big-model, api_key_env: UPSTREAM_API_KEY}

Chat requests go upstream as chat messages (the upstream applies its own chat template, so the
``<think>`` prefill is not available here); completions go as text. Upstream responses are always
streamed, so time-to-first-token is measured the same way for every backend. Token counts come from the
upstream's ``usage``; an upstream that sends none gets its chunks counted instead (one per token on
vLLM-like servers, an estimate elsewhere).
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from typing import Any

from srl_rlvr.errors import UserInputError
from srl_rlvr.serving.backends import register_backend
from srl_rlvr.serving.backends.base import Backend, Finished, GenerationEvent, Prompt, SamplingParams, TextDelta
from srl_rlvr.serving.errors import APIError


class UpstreamClient:
    """Streaming OpenAI-style HTTP calls to one API root (``.../v1``), errors mapped to our APIError."""

    def __init__(self, api_root: str, api_key: str | None, timeout_s: float):
        self.api_root = api_root.rstrip("/")
        self.api_key, self.timeout_s = api_key, timeout_s
        self.http: Any = None

    async def open(self) -> None:
        import httpx

        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        self.http = httpx.AsyncClient(headers=headers, timeout=httpx.Timeout(self.timeout_s, connect=10.0))

    async def close(self) -> None:
        if self.http is not None:
            await self.http.aclose()
            self.http = None

    async def post(self, path: str, body: dict[str, Any]) -> Any:
        import httpx

        try:
            response = await self.http.post(f"{self.api_root}{path}", json=body)
        except httpx.HTTPError as exc:
            raise self.unreachable(exc) from None
        if response.status_code >= 400:
            raise upstream_error(response.status_code, response.text)
        return response

    async def get_json(self, path: str) -> Any:
        import httpx

        try:
            response = await self.http.get(f"{self.api_root}{path}")
        except httpx.HTTPError as exc:
            raise self.unreachable(exc) from None
        if response.status_code >= 400:
            raise upstream_error(response.status_code, response.text)
        return response.json()

    async def stream(self, path: str, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """The JSON chunks of an SSE response, up to ``data: [DONE]``."""
        import httpx

        try:
            async with self.http.stream("POST", f"{self.api_root}{path}", json=body) as response:
                if response.status_code >= 400:
                    raise upstream_error(response.status_code, (await response.aread()).decode("utf-8", "replace"))
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

    def unreachable(self, exc: Exception) -> APIError:
        return APIError(502, f"upstream {self.api_root} unreachable: {type(exc).__name__}: {exc}",
                        "upstream_unreachable")


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
            client = UpstreamClient(section.base_url, env_api_key(section.api_key_env), section.timeout_s)
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
