"""Bad input never reaches the model: each request below gets a 4xx with our error body and a reason, and the
backend's ``generate`` is never called for it (a counter wrapped around it stays put; one good request at the
end moves it, so the counter is live).

Adds what tests/serving/test_api_errors_auth.py does not cover: bodies without a Content-Length (chunked) over
the size cap, the caps and malformed bodies on /v1/completions and the adapter endpoints, streamed requests
refused before any stream starts, unloaded adapters, a client that leaves mid-body (499, not 500), and the
adapter endpoints' full key matrix (no key, Basic scheme, wrong key, user key) with no side effect."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from reliability_server import ADMIN, USER, auth
from serving_helpers import TINY, tiny_settings

from srl_rlvr.serving.app import create_app
from srl_rlvr.serving.backends import build_backend

CHAT = {"model": TINY, "messages": [{"role": "user", "content": "What is 2+3?"}], "max_tokens": 4, "temperature": 0}
DONE = {"model": TINY, "prompt": "2+3=", "max_tokens": 4, "temperature": 0}
MAX_BODY = 4096


class Server:
    def __init__(self, client: TestClient, calls: list):
        self.client, self.calls = client, calls


@pytest.fixture(scope="module")
def server(tiny_model_dir: Path, lora_dirs) -> Server:
    settings = tiny_settings(
        tiny_model_dir, api_keys=[{"key": ADMIN, "scope": "admin"}, {"key": USER, "scope": "user"}],
        limits={"max_prompt_tokens": 60, "max_tokens": 32, "max_body_bytes": MAX_BODY},
        lora_adapters={"lora-a": str(lora_dirs["lora-a"])})
    backend = build_backend(settings)
    calls: list = []
    generate = backend.generate

    def counted_generate(adapter, prompt, params):
        calls.append((adapter, params))
        return generate(adapter, prompt, params)

    backend.generate = counted_generate
    with TestClient(create_app(settings, backend), base_url="http://127.0.0.1") as client:
        yield Server(client, calls)


def _error(response, status: int, fragment: str = "") -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json"), response.headers  # never a stream
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"].strip() and fragment in error["message"], error["message"]
    return error


def _chunks(total: int):
    """A body sent chunked, without a Content-Length (a callable: each test run gets a fresh generator)."""
    def body():
        for _ in range(total // 1000):
            yield b"x" * 1000
    return body


JSON = {"Content-Type": "application/json"}
BAD = [
    # bodies over the cap: a declared Content-Length, and chunked with none (counted as it arrives)
    ("/v1/completions", {"content": b'{"prompt": "' + b"7" * MAX_BODY + b'"}'}, 413, "limit of 4096 bytes"),
    ("/v1/chat/completions", {"content": _chunks(10 * MAX_BODY)}, 413, "limit of 4096 bytes"),
    ("/v1/load_lora_adapter", {"content": _chunks(2 * MAX_BODY)}, 413, "limit of 4096 bytes"),
    # over the prompt and max_tokens caps, plain and streamed
    ("/v1/completions", {"json": {**DONE, "prompt": "7 " * 61}}, 400, "at most 60 prompt tokens"),
    ("/v1/completions", {"json": {**DONE, "max_tokens": 33}}, 400, "max_tokens=33 is over this server's limit"),
    ("/v1/completions", {"json": {**DONE, "max_tokens": 33, "stream": True}}, 400, "limit of 32"),
    ("/v1/chat/completions", {"json": {**CHAT, "max_completion_tokens": 33}}, 400, "limit of 32"),
    ("/v1/chat/completions", {"json": {**CHAT, "max_tokens": 10**6, "stream": True}}, 400, "limit of 32"),
    ("/v1/chat/completions", {"json": {**CHAT, "stream": True, "messages": [{"role": "user", "content": "7 " * 61}]}},
     400, "at most 60 prompt tokens"),
    # malformed JSON and wrong types
    ("/v1/completions", {"content": b'{"model": "tiny", "prompt": ', "headers": JSON}, 400, "not valid JSON"),
    ("/v1/load_lora_adapter", {"content": b"{lora_name: x}", "headers": JSON}, 400, "not valid JSON"),
    ("/v1/completions", {"json": {**DONE, "prompt": {"text": "hi"}}}, 400, "prompt"),
    ("/v1/completions", {"json": {**DONE, "prompt": ["a", "b"]}}, 400, "prompt"),
    ("/v1/completions", {"json": {**DONE, "prompt": []}}, 400, "prompt"),
    ("/v1/completions", {"json": {**DONE, "prompt": [1.5]}}, 400, "prompt"),
    ("/v1/completions", {"json": {**DONE, "prompt": [True]}}, 400, "prompt"),
    ("/v1/completions", {"json": {**DONE, "prompt": [10**9]}}, 400, "outside the vocabulary"),
    ("/v1/completions", {"json": {**DONE, "echo": True}}, 400, "echo: Extra inputs"),
    ("/v1/chat/completions", {"json": {**CHAT, "stream": "yes"}}, 400, "stream"),
    ("/v1/chat/completions", {"json": {**CHAT, "model": 5}}, 400, "model"),
    ("/v1/chat/completions", {"json": {**CHAT, "model": ""}}, 400, "model"),
    ("/v1/chat/completions", {"json": {**CHAT, "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "http://x/y.png"}}]}]}}, 400, "messages.0.content"),
    ("/v1/chat/completions", {"json": {**CHAT, "stream_options": {"include_usage": "yes"}}}, 400, "include_usage"),
    ("/v1/load_lora_adapter", {"json": {"lora_name": ["x"], "lora_path": "/tmp"}}, 400, "lora_name"),
    ("/v1/unload_lora_adapter", {"json": {"lora_name": "lora-a", "lora_int_id": "1"}}, 400, "lora_int_id"),
    # unknown models, plain and streamed
    ("/v1/completions", {"json": {**DONE, "model": "gpt-9"}}, 404, "The model `gpt-9` does not exist."),
    ("/v1/chat/completions", {"json": {**CHAT, "model": "lora-z", "stream": True}}, 404, "`lora-z` does not exist"),
]


@pytest.mark.parametrize(("path", "request_args", "status", "fragment"), BAD,
                         ids=[f"{p}-{s}-{i}" for i, (p, _, s, _) in enumerate(BAD)])
def test_bad_input_is_a_4xx_that_never_reaches_the_model(server: Server, path, request_args, status, fragment):
    before = len(server.calls)
    key = ADMIN if "lora" in path else USER
    args = dict(request_args)
    headers = {**auth(key), **args.pop("headers", {})}
    if callable(args.get("content")):
        args["content"] = args["content"]()
    _error(server.client.post(path, headers=headers, **args), status, fragment)
    assert len(server.calls) == before, "the model was asked to generate for a refused request"


def test_an_unloaded_adapter_is_unknown_and_the_good_request_reaches_the_model(server: Server, lora_dirs):
    c, admin = server.client, auth(ADMIN)
    assert c.post("/v1/load_lora_adapter", json={"lora_name": "gone", "lora_path": str(lora_dirs["lora-b"])},
                  headers=admin).status_code == 200
    assert c.post("/v1/chat/completions", json={**CHAT, "model": "gone"}, headers=admin).status_code == 200
    assert c.post("/v1/unload_lora_adapter", json={"lora_name": "gone"}, headers=admin).status_code == 200
    before = len(server.calls)
    for body in ({**CHAT, "model": "gone"}, {**DONE, "model": "gone", "stream": True}):
        path = "/v1/chat/completions" if "messages" in body else "/v1/completions"
        assert _error(c.post(path, json=body, headers=auth(USER)), 404, "`gone` does not exist")["code"] == \
            "model_not_found"
    assert len(server.calls) == before
    assert c.post("/v1/completions", json=DONE, headers=auth(USER)).status_code == 200
    assert len(server.calls) == before + 1  # the counter does see the requests that do reach the model


@pytest.mark.parametrize("path", ["/v1/load_lora_adapter", "/v1/unload_lora_adapter"])
@pytest.mark.parametrize(("headers", "status", "code"), [
    ({}, 401, "missing_api_key"), ({"Authorization": f"Basic {ADMIN}"}, 401, "missing_api_key"),
    (auth("not-a-key"), 401, "invalid_api_key"), (auth(USER), 403, "insufficient_scope"),
], ids=["no-key", "basic-scheme", "wrong-key", "user-key"])
def test_adapter_endpoints_refuse_non_admins_with_no_side_effect(server: Server, lora_dirs, path, headers, status,
                                                                 code):
    c = server.client
    body = ({"lora_name": "intruder", "lora_path": str(lora_dirs["lora-b"])} if "load_lora" in path
            else {"lora_name": "lora-a"})
    assert _error(c.post(path, json=body, headers=headers), status)["code"] == code
    names = {m["id"] for m in c.get("/v1/models", headers=auth(USER)).json()["data"]}
    assert "intruder" not in names and "lora-a" in names  # nothing loaded, nothing unloaded


def test_a_client_that_leaves_mid_body_is_counted_as_499_and_never_reaches_the_model(server: Server):
    messages = [{"type": "http.request", "body": b'{"model": "tiny", "mess', "more_body": True},
                {"type": "http.disconnect"}]
    sent: list[dict] = []

    async def receive() -> dict:
        return messages.pop(0)

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/v1/chat/completions", "raw_path": b"/v1/chat/completions", "query_string": b"",
             "root_path": "", "server": ("127.0.0.1", 80), "client": ("127.0.0.1", 5555),
             "headers": [(b"host", b"127.0.0.1"), (b"content-type", b"application/json"),
                         (b"authorization", f"Bearer {USER}".encode())]}
    before = len(server.calls)
    asyncio.run(server.client.app(scope, receive, send))
    assert sent == []  # nobody left to answer
    assert len(server.calls) == before
    metrics = server.client.get("/metrics").text
    assert 'srl_rlvr_serving_http_responses_total{code="499",route="/v1/chat/completions"} 1.0' in metrics
    assert 'code="500"' not in metrics  # a client leaving is not a server error
