"""Auth scopes, limits and malformed requests through TestClient: every failure is a 4xx OpenAI-style error."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from serving_helpers import TINY, tiny_settings

from srl_rlvr.serving.app import create_app

ADMIN, USER = "admin-key-123", "user-key-456"
CHAT = {"model": TINY, "messages": [{"role": "user", "content": "What is 2+3?"}], "max_tokens": 4, "temperature": 0}


@pytest.fixture(scope="module")
def client(tiny_model_dir: Path) -> TestClient:
    settings = tiny_settings(
        tiny_model_dir,
        api_keys=[{"key": ADMIN, "scope": "admin"}, {"key": USER, "scope": "user"}],
        limits={"max_prompt_tokens": 60, "max_tokens": 32, "max_body_bytes": 4096},
    )
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as c:
        yield c


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _error(response, status: int, *fragments: str) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    for fragment in fragments:
        assert fragment in error["message"], error["message"]
    return error


def test_missing_and_wrong_keys_get_401(client: TestClient):
    assert _error(client.post("/v1/chat/completions", json=CHAT), 401, "Missing API key")["code"] == "missing_api_key"
    assert (_error(client.get("/v1/models", headers=_auth("nope")), 401, "Invalid API key")["type"]
            == "authentication_error")
    _error(client.get("/v1/models", headers={"Authorization": f"Basic {ADMIN}"}), 401, "Missing API key")
    assert client.post("/v1/chat/completions", json=CHAT, headers=_auth(USER)).status_code == 200


def test_hot_swap_needs_admin_scope(client: TestClient, lora_dirs):
    body = {"lora_name": "swap", "lora_path": str(lora_dirs["lora-a"])}
    error = _error(client.post("/v1/load_lora_adapter", json=body, headers=_auth(USER)), 403, "scope 'admin'",
                   "'user'")
    assert error["type"] == "permission_error"
    _error(client.post("/v1/load_lora_adapter", json=body), 401)
    assert client.post("/v1/load_lora_adapter", json=body, headers=_auth(ADMIN)).status_code == 200
    _error(client.post("/v1/unload_lora_adapter", json={"lora_name": "swap"}, headers=_auth(USER)), 403)
    assert client.post("/v1/unload_lora_adapter", json={"lora_name": "swap"}, headers=_auth(ADMIN)).status_code == 200


def test_health_and_metrics_need_no_key(client: TestClient):
    assert client.get("/health").json() == {"status": "ok"}
    assert "srl_rlvr_serving_num_requests_running" in client.get("/metrics").text


def test_over_cap_requests_get_400_with_the_reason(client: TestClient):
    headers = _auth(USER)
    error = _error(client.post("/v1/chat/completions", json={**CHAT, "max_tokens": 33}, headers=headers), 400,
                   "max_tokens=33 is over this server's limit of 32")
    assert error["param"] == "max_tokens"
    long_prompt = {**CHAT, "messages": [{"role": "user", "content": "7 " * 40}]}
    _error(client.post("/v1/chat/completions", json=long_prompt, headers=headers), 400,
           "this server accepts at most 60 prompt tokens")
    _error(client.post("/v1/completions", json={"model": TINY, "prompt": [5] * 61}, headers=headers), 400,
           "at most 60 prompt tokens")
    _error(client.post("/v1/completions", json={"model": TINY, "prompt": [99999]}, headers=headers), 400,
           "outside the vocabulary")
    big = {**CHAT, "messages": [{"role": "user", "content": "x" * 5000}]}
    _error(client.post("/v1/chat/completions", json=big, headers=headers), 413, "limit of 4096 bytes")


@pytest.mark.parametrize(("body", "fragment"), [
    (b"{not json", "not valid JSON"),
    (b"[1, 2]", "Input should be a valid dictionary"),
    (b'{"model": "tiny"}', "messages: Field required"),
    (b'{"model": "tiny", "messages": "hi"}', "messages: Input should be a valid list"),
    (b'{"model": "tiny", "messages": [{"role": "robot", "content": "hi"}]}', "messages.0.role"),
    (b'{"model": "tiny", "messages": [{"role": "user", "content": 5}]}', "messages.0.content"),
    (b'{"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": "4"}', "max_tokens"),
    (b'{"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}', "max_tokens"),
    (b'{"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "temperature": 3}', "temperature"),
    (b'{"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "n": 2}', "only n=1 is supported"),
    (b'{"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "logprobs": true}',
     "logprobs: Extra inputs"),
    (b'{"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "stop": [""]}',
     "stop strings must not be empty"),
    (b'{"model": "tiny", "messages": []}', "messages"),
    (b"\xff\xfe\x00garbage", ""),
])
def test_malformed_requests_are_400_not_500(client: TestClient, body: bytes, fragment: str):
    response = client.post("/v1/chat/completions", content=body,
                           headers={**_auth(USER), "Content-Type": "application/json"})
    _error(response, 400, fragment)


def test_bad_hot_swap_requests(client: TestClient, lora_dirs, tmp_path: Path):
    headers = _auth(ADMIN)
    _error(client.post("/v1/load_lora_adapter", json={"lora_name": "x"}, headers=headers), 400,
           "lora_path: Field required")
    _error(client.post("/v1/load_lora_adapter", json={"lora_name": "x", "lora_path": str(tmp_path)}, headers=headers),
           400, "no adapter_config.json")
    _error(client.post("/v1/load_lora_adapter", json={"lora_name": TINY, "lora_path": str(lora_dirs["lora-a"])},
                       headers=headers), 400, "already a served model name")
    dup = {"lora_name": "dup", "lora_path": str(lora_dirs["lora-b"])}
    assert client.post("/v1/load_lora_adapter", json=dup, headers=headers).status_code == 200
    # the same name again replaces in place; a bad replacement leaves the loaded one as it was
    _error(client.post("/v1/load_lora_adapter", json={"lora_name": "dup", "lora_path": str(tmp_path)},
                       headers=headers), 400, "no adapter_config.json")
    ask = {**CHAT, "model": "dup"}
    assert client.post("/v1/chat/completions", json=ask, headers=headers).status_code == 200
    replaced = client.post("/v1/load_lora_adapter", json=dup, headers=headers)
    assert replaced.status_code == 200, replaced.text
    assert client.post("/v1/unload_lora_adapter", json={"lora_name": "dup"}, headers=headers).status_code == 200
    _error(client.post("/v1/unload_lora_adapter", json={"lora_name": "ghost"}, headers=headers), 404,
           "cannot be found")


def test_unknown_model_and_route(client: TestClient):
    error = _error(client.post("/v1/chat/completions", json={**CHAT, "model": "gpt-9"}, headers=_auth(USER)), 404,
                   "The model `gpt-9` does not exist.")
    assert error["code"] == "model_not_found"
    _error(client.get("/v1/nothing-here", headers=_auth(USER)), 404)
    _error(client.get("/v1/chat/completions", headers=_auth(USER)), 405)


def test_a_keyless_server_has_no_adapter_endpoints(tiny_model_dir: Path, lora_dirs):
    with TestClient(create_app(tiny_settings(tiny_model_dir)), base_url="http://127.0.0.1") as open_server:
        body = {"lora_name": "x", "lora_path": str(lora_dirs["lora-a"])}
        assert open_server.post("/v1/load_lora_adapter", json=body).status_code == 404
        assert open_server.post("/v1/unload_lora_adapter", json={"lora_name": "x"}).status_code == 404
        assert open_server.post("/v1/chat/completions", json=CHAT).status_code == 200  # the rest stays open
    user_only = tiny_settings(tiny_model_dir, api_keys=[{"key": USER, "scope": "user"}])
    with TestClient(create_app(user_only), base_url="http://127.0.0.1") as c:
        assert c.post("/v1/load_lora_adapter", json=body, headers=_auth(USER)).status_code == 404


@pytest.mark.parametrize("host,allowed", [("127.0.0.1:8000", True), ("localhost", True), ("[::1]:8000", True),
                                          ("LOCALHOST:1", True), ("evil.example", False),
                                          ("127.0.0.1.nip.io", False), ("proxy.internal", True)])
def test_a_loopback_server_answers_only_loopback_host_headers(tiny_model_dir: Path, host, allowed):
    settings = tiny_settings(tiny_model_dir, allowed_hosts=["proxy.internal"])
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as c:
        response = c.get("/v1/models", headers={"Host": host})
    if allowed:
        assert response.status_code == 200
    else:
        assert _error(response, 400, repr(host))["code"] == "invalid_host"  # DNS rebinding gets nowhere


def test_a_server_on_all_interfaces_does_not_check_the_host(tiny_model_dir: Path):
    settings = tiny_settings(tiny_model_dir, host="0.0.0.0", api_keys=[{"key": USER, "scope": "user"}])
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as c:
        assert c.get("/v1/models", headers={"Host": "api.example.com", **_auth(USER)}).status_code == 200
