"""The openai and vllm backends, proxying to our own app on loopback (a stand-in for the upstream)."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path

import httpx
import openai
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from serving_helpers import TINY, tiny_settings, write_stage_manifest

from srl_rlvr.serving.app import create_app
from srl_rlvr.serving.backends.vllm import RUNTIME_LORA_ENV, VLLMBackend, vllm_command
from srl_rlvr.serving.live import LiveServer
from srl_rlvr.serving.settings import ServeSettings

CHAT = {"messages": [{"role": "user", "content": "What is 2+3?"}], "max_tokens": 8, "temperature": 0}


UPSTREAM_KEY = "upstream-secret"


@pytest.fixture(scope="module")
def upstream(tiny_model_dir: Path):
    """The real thing being proxied: our hf app on the tiny model, behind an API key."""
    settings = tiny_settings(tiny_model_dir, api_keys=[{"key": UPSTREAM_KEY, "scope": "admin"}])
    with LiveServer(create_app(settings)) as live:
        yield live


@pytest.fixture
def upstream_key_env(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("UPSTREAM_KEY", UPSTREAM_KEY)
    return "UPSTREAM_KEY"


def _client(server: LiveServer, key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.base_url}/v1", api_key=key, max_retries=0, timeout=60)


def _direct(upstream: LiveServer) -> openai.OpenAI:
    return _client(upstream, UPSTREAM_KEY)


def _both(server: LiveServer, model: str, key: str = "unused") -> tuple[str, str]:
    client = _client(server, key)
    plain = client.chat.completions.create(model=model, **CHAT).choices[0].message.content
    streamed = "".join(c.choices[0].delta.content or "" for c in
                       client.chat.completions.create(model=model, stream=True, **CHAT) if c.choices)
    return plain, streamed


def test_openai_backend_proxies_an_upstream(upstream, upstream_key_env):
    settings = ServeSettings.model_validate({
        "model": "teacher", "backend": "openai", "limits": {"max_tokens": 4096},
        "openai": {"base_url": f"{upstream.base_url}/v1", "model": TINY, "api_key_env": upstream_key_env}})
    with LiveServer(create_app(settings)) as proxy:
        assert _both(proxy, "teacher") == _both(upstream, TINY, UPSTREAM_KEY)
        done = _client(proxy).completions.create(model="teacher", prompt="The answer is", max_tokens=5, temperature=0)
        direct = _direct(upstream).completions.create(model=TINY, prompt="The answer is", max_tokens=5, temperature=0)
        assert done.choices[0].text == direct.choices[0].text and done.usage == direct.usage
        with pytest.raises(openai.BadRequestError, match="upstream: max_tokens=2000 is over"):
            _client(proxy).chat.completions.create(model="teacher", **{**CHAT, "max_tokens": 2000})
        response = httpx.post(f"{proxy.base_url}/v1/load_lora_adapter", json={"lora_name": "x", "lora_path": "/x"})
        assert response.status_code == 404  # keyless: no adapter endpoints at all


def test_openai_backend_without_the_upstream_key_gets_a_502(upstream):
    settings = ServeSettings.model_validate({"model": "m", "backend": "openai",
                                             "openai": {"base_url": f"{upstream.base_url}/v1", "model": TINY}})
    with LiveServer(create_app(settings)) as proxy:
        response = httpx.post(f"{proxy.base_url}/v1/chat/completions", json={"model": "m", **CHAT})
        assert response.status_code == 502 and "HTTP 401" in response.json()["error"]["message"]


def test_openai_backend_reports_an_unreachable_upstream():
    settings = ServeSettings.model_validate({"model": "m", "backend": "openai",
                                             "openai": {"base_url": "http://127.0.0.1:9/v1"}})
    with LiveServer(create_app(settings)) as proxy:
        response = httpx.post(f"{proxy.base_url}/v1/chat/completions", json={"model": "m", **CHAT})
        assert response.status_code == 502 and "unreachable" in response.json()["error"]["message"]


def test_vllm_command_line(tiny_model_dir: Path):
    settings = ServeSettings.model_validate({
        "model": "smollm2-135m", "served_model_name": "smol", "backend": "vllm",
        "vllm": {"port": 8123, "max_loras": 4, "max_lora_rank": 32, "gpu_memory_utilization": 0.5,
                 "python": "/opt/venv/bin/python", "extra_args": ["--dtype", "bfloat16"]}})
    assert vllm_command(settings, "/models/smol") == [
        "/opt/venv/bin/python", "-m", "vllm.entrypoints.openai.api_server", "--model", "/models/smol",
        "--served-model-name", "smol", "--host", "127.0.0.1", "--port", "8123", "--enable-lora",
        "--max-loras", "4", "--max-lora-rank", "32", "--gpu-memory-utilization", "0.5", "--dtype", "bfloat16"]
    assert RUNTIME_LORA_ENV == "VLLM_ALLOW_RUNTIME_LORA_UPDATING"


def test_vllm_backend_proxies_completions_and_hot_swap(upstream, upstream_key_env, tiny_model_dir: Path, lora_dirs,
                                                       tmp_path: Path):
    """Proxy mode against a vLLM stand-in (our app speaks the same API): chat is rendered locally in the
    training format and sent as token ids to /v1/completions; adapter load/unload are forwarded."""
    settings = tiny_settings(tiny_model_dir, served_model_name="srl", backend="vllm", api_keys=[{"key": "adm",
                                                                                             "scope": "admin"}],
                             vllm={"url": f"{upstream.base_url}/v1", "api_key_env": upstream_key_env})
    with LiveServer(create_app(settings)) as proxy:
        assert _both(proxy, "srl", "adm") == _both(upstream, TINY, UPSTREAM_KEY)
        admin = httpx.Client(base_url=proxy.base_url, timeout=60, headers={"Authorization": "Bearer adm"})
        load = {"lora_name": "lora-a", "lora_path": str(lora_dirs["lora-a"])}
        assert admin.post("/v1/load_lora_adapter", json=load).status_code == 200
        upstream_models = {m.id: m.parent for m in _direct(upstream).models.list().data}
        assert upstream_models["lora-a"] == TINY  # forwarded to the upstream
        assert {m.id: m.parent for m in _client(proxy, "adm").models.list().data}["lora-a"] == "srl"
        assert _both(proxy, "lora-a", "adm") == _both(upstream, "lora-a", UPSTREAM_KEY)
        assert admin.post("/v1/unload_lora_adapter", json={"lora_name": "lora-a"}).status_code == 200
        assert "lora-a" not in {m.id for m in _direct(upstream).models.list().data}
        bad = admin.post("/v1/load_lora_adapter", json={"lora_name": "bad", "lora_path": str(tmp_path)})
        assert bad.status_code == 400 and "upstream: " in bad.json()["error"]["message"]


def test_vllm_backend_applies_the_think_prefill(upstream, upstream_key_env, tiny_model_dir: Path, tmp_path: Path):
    """With a stage manifest saying think_prefill, the proxied prompt ends with <think>, and the monologue
    comes back in reasoning_content (the tiny model's noise never closes it, so it is all reasoning)."""
    import shutil

    model_dir = tmp_path / "srl-model"
    shutil.copytree(tiny_model_dir, model_dir)
    write_stage_manifest(model_dir, think_prefill=True)
    settings = tiny_settings(model_dir, served_model_name="srl", backend="vllm",
                             vllm={"url": f"{upstream.base_url}/v1", "api_key_env": upstream_key_env})
    with LiveServer(create_app(settings)) as proxy:
        message = _client(proxy).chat.completions.create(model="srl", **CHAT).choices[0].message
    from transformers import AutoTokenizer

    from srl_rlvr.prompts import render_generation_prompt

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    ids = tokenizer(render_generation_prompt(tokenizer, CHAT["messages"], True), add_special_tokens=False)["input_ids"]
    raw = _direct(upstream).completions.create(model=TINY, prompt=ids, max_tokens=8, temperature=0).choices[0].text
    assert message.reasoning_content == raw.strip() and message.content == ""


@pytest.mark.gpu
@pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vllm is not installed")
def test_vllm_backend_launches_vllm(tiny_model_dir: Path, lora_dirs):
    settings = tiny_settings(tiny_model_dir, backend="vllm", vllm={"port": 8765, "gpu_memory_utilization": 0.3},
                             api_keys=[{"key": "adm", "scope": "admin"}])
    with LiveServer(create_app(settings), startup_timeout_s=900) as live:
        client = _client(live, "adm")
        assert client.chat.completions.create(model=TINY, **CHAT).choices[0].message.content is not None
        admin = httpx.Client(base_url=live.base_url, timeout=120, headers={"Authorization": "Bearer adm"})
        load = {"lora_name": "lora-a", "lora_path": str(lora_dirs["lora-a"])}
        assert admin.post("/v1/load_lora_adapter", json=load).status_code == 200
        assert client.chat.completions.create(model="lora-a", **CHAT).choices[0].message.content is not None


def test_openai_backend_retries_a_transient_upstream_failure_then_gives_a_clear_502(upstream, upstream_key_env):
    """An upstream that answers 503 twice, then works: the client sees one normal answer. Always 503: a 502."""
    failures = {"left": 2, "seen": 0}
    flaky = FastAPI()

    @flaky.api_route("/v1/{path:path}", methods=["GET", "POST"])
    async def forward(path: str, request: Request):
        failures["seen"] += 1
        if failures["left"] != 0:
            failures["left"] -= 1
            return JSONResponse({"error": {"message": "overloaded"}}, status_code=503)
        body = await request.body()
        async with httpx.AsyncClient(timeout=60) as client:
            real = await client.request(request.method, f"{upstream.base_url}/v1/{path}", content=body,
                                        headers={"Authorization": f"Bearer {UPSTREAM_KEY}",
                                                 "Content-Type": "application/json"})
        return Response(real.content, status_code=real.status_code, media_type=real.headers.get("content-type"))

    with LiveServer(flaky) as flaky_server:
        settings = ServeSettings.model_validate({
            "model": "teacher", "backend": "openai",
            "openai": {"base_url": f"{flaky_server.base_url}/v1", "model": TINY, "retries": 2, "backoff_s": 0.05}})
        with LiveServer(create_app(settings)) as proxy:
            plain = _client(proxy).chat.completions.create(model="teacher", **CHAT).choices[0].message.content
            assert plain == _direct(upstream).chat.completions.create(model=TINY, **CHAT).choices[0].message.content
            assert failures["seen"] == 3  # two 503s, then the real answer
            failures["left"] = -1  # from now on, always 503
            response = httpx.post(f"{proxy.base_url}/v1/chat/completions", json={"model": "teacher", **CHAT})
            assert response.status_code == 502 and "overloaded" in response.json()["error"]["message"]


def test_a_launched_vllm_gets_a_fresh_key_only_we_know(tiny_model_dir: Path, lora_dirs, tmp_path: Path):
    """Launch mode against a stand-in for vLLM's server (tests/serving/fake_vllm.py, which enforces the key
    the way vLLM does): our backend talks to it; a local process without the key cannot, not even to load
    an adapter; the key is in the child's environment, never on its command line."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    launcher = tmp_path / "python"
    launcher.write_text(f"#!/bin/sh\nexec {sys.executable} {Path(__file__).parent / 'fake_vllm.py'} \"$@\"\n")
    launcher.chmod(0o755)
    settings = tiny_settings(tiny_model_dir, backend="vllm", vllm={"port": port, "python": str(launcher),
                                                                   "startup_timeout_s": 60})

    async def main():
        first, second = VLLMBackend(settings), VLLMBackend(settings)
        assert first.client.api_key and first.client.api_key != second.client.api_key  # new per launch
        await first.start()
        try:
            child = f"http://127.0.0.1:{port}"
            outsider = httpx.post(f"{child}/v1/load_lora_adapter",
                                  json={"lora_name": "evil", "lora_path": "/etc"}, timeout=10)
            cmdline = Path(f"/proc/{first.process.pid}/cmdline").read_bytes().decode()
            environ = Path(f"/proc/{first.process.pid}/environ").read_bytes().decode()
            await first.load_adapter("lora-a", str(lora_dirs["lora-a"]))  # we have the key
            return outsider.status_code, cmdline, environ, first.client.api_key, set(first.adapters())
        finally:
            await first.close()

    status, cmdline, environ, key, adapters = asyncio.run(main())
    assert status == 401  # no key, no runtime LoRA loading from outside our process
    assert key not in cmdline and f"VLLM_API_KEY={key}" in environ
    assert adapters == {"lora-a"}
