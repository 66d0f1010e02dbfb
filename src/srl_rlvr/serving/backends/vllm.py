"""The ``vllm`` backend (GPU): launch or proxy a vLLM OpenAI server with runtime LoRA loading.

    backend: vllm
    vllm: {url: null, port: 8001, max_loras: 8, max_lora_rank: 64}   # url set: proxy that server instead

Launched with :func:`vllm_command` (``--enable-lora`` and ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``, so
``/v1/load_lora_adapter`` works) on 127.0.0.1, with a **random API key per launch** (``VLLM_API_KEY`` in
the child's environment, never on its command line, where ``ps`` would show it to every user): vLLM then
refuses every ``/v1`` request without it, runtime LoRA loading included, so no other local process can
skip our keys, scopes, caps and budgets, or load an adapter from any path. Only this process has the key.

Chat prompts are rendered here with the model's own tokenizer, exactly as in training (``<think>``
prefill included), and sent to vLLM's ``/v1/completions`` as token ids; so vLLM never re-applies a chat
template and the SRL format survives. Adapter load/unload are forwarded to
vLLM's own endpoints, where vLLM swaps them between scheduler steps.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from srl_rlvr.errors import UserInputError
from srl_rlvr.serving.backends import register_backend
from srl_rlvr.serving.backends.base import AdapterInfo
from srl_rlvr.serving.backends.openai_upstream import OpenAIUpstreamBackend, UpstreamClient, env_api_key
from srl_rlvr.serving.errors import APIError

RUNTIME_LORA_ENV = "VLLM_ALLOW_RUNTIME_LORA_UPDATING"
CHILD_KEY_ENV = "VLLM_API_KEY"  # vLLM's own variable for --api-key


def child_environment(base: dict[str, str] | None = None) -> tuple[dict[str, str], str]:
    """The launched vLLM's environment and the key it will demand (new for every launch)."""
    import secrets

    key = secrets.token_urlsafe(32)
    return {**(os.environ if base is None else base), RUNTIME_LORA_ENV: "True", CHILD_KEY_ENV: key}, key


def vllm_command(settings: Any, model_path: str) -> list[str]:
    """The command line that starts vLLM's OpenAI server for ``settings`` (bound to loopback only)."""
    v = settings.vllm
    cmd = [
        v.python, "-m", "vllm.entrypoints.openai.api_server",
        "--model", model_path, "--served-model-name", settings.base_name,
        "--host", "127.0.0.1", "--port", str(v.port),
        "--enable-lora", "--max-loras", str(v.max_loras), "--max-lora-rank", str(v.max_lora_rank),
    ]
    if v.gpu_memory_utilization is not None:
        cmd += ["--gpu-memory-utilization", str(v.gpu_memory_utilization)]
    if v.max_model_len is not None:
        cmd += ["--max-model-len", str(v.max_model_len)]
    return cmd + list(v.extra_args)


class VLLMBackend(OpenAIUpstreamBackend):
    name = "vllm"
    serves_local_model = True
    renders_prompts = True

    def __init__(self, settings: Any):
        v = settings.vllm
        if (Path(settings.model).expanduser() / "adapter_config.json").is_file():
            raise UserInputError(f"{settings.model}: a LoRA adapter; the vllm backend needs a full model as --model "
                                 "(list adapters under lora_adapters in serve.yaml)")
        self._child_env: dict[str, str] | None = None
        if v.url:
            key = env_api_key(v.api_key_env)
        else:  # our own child: a fresh key, known only to this process and the child
            self._child_env, key = child_environment()
        client = UpstreamClient(v.url or f"http://127.0.0.1:{v.port}/v1", key, v.timeout_s)
        super().__init__(settings, client, upstream_model=settings.base_name)
        self.process: subprocess.Popen | None = None
        self._root = settings.model

    @property
    def model_root(self) -> str:
        return self._root

    async def start(self) -> None:
        from transformers import AutoTokenizer

        from srl_rlvr.models import resolve_model

        self._root = await asyncio.to_thread(resolve_model, self.settings.model)
        self.tokenizer = await asyncio.to_thread(AutoTokenizer.from_pretrained, self._root)
        await self.client.open()
        if self.settings.vllm.url is None:
            self.process = subprocess.Popen(vllm_command(self.settings, self._root), env=self._child_env)
            await self._wait_until_up()
        cards = (await self.client.get_json("/models")).get("data", [])
        bases = [c for c in cards if not c.get("parent")]
        if self.upstream_model not in {c.get("id") for c in bases}:
            if len(bases) != 1:  # a proxied server under another name: take its one base model
                raise RuntimeError(f"vLLM at {self.client.api_root} serves {[c.get('id') for c in bases]}, "
                                   f"not '{self.upstream_model}'")
            self.upstream_model = bases[0]["id"]
        for card in cards:
            if card.get("id") == self.upstream_model and card.get("max_model_len"):
                self.max_model_len = int(card["max_model_len"])
            elif card.get("parent"):  # adapters the proxied server already has
                self._adapters[card["id"]] = AdapterInfo(card["id"], str(card.get("root") or card["id"]))
        if self.max_model_len is None:
            self.max_model_len = self.settings.vllm.max_model_len

    async def _wait_until_up(self) -> None:
        deadline = time.monotonic() + self.settings.vllm.startup_timeout_s
        health = self.client.api_root.removesuffix("/v1") + "/health"
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"vLLM exited with code {self.process.returncode} while starting")
            try:
                if (await self.client.http.get(health)).status_code == 200:
                    return
            except Exception:  # noqa: BLE001 - not listening yet
                pass
            await asyncio.sleep(2.0)
        raise RuntimeError(f"vLLM did not answer {health} within {self.settings.vllm.startup_timeout_s:.0f}s")

    async def close(self) -> None:
        await super().close()
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                await asyncio.to_thread(self.process.wait, 30)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.process = None

    async def load_adapter(self, name: str, path: str) -> AdapterInfo:
        if name in self._adapters:
            raise APIError(400, f"The lora adapter '{name}' has already been loaded.", "adapter_exists", "lora_name")
        await self.client.post("/load_lora_adapter", {"lora_name": name, "lora_path": str(path)})
        info = AdapterInfo(name=name, path=str(path))
        self._adapters = {**self._adapters, name: info}
        return info

    async def unload_adapter(self, name: str) -> None:
        if name not in self._adapters:
            raise APIError(404, f"The lora adapter '{name}' cannot be found.", "model_not_found", "lora_name")
        await self.client.post("/unload_lora_adapter", {"lora_name": name})
        self._adapters = {k: v for k, v in self._adapters.items() if k != name}


@register_backend("vllm")
def make_vllm_backend(settings: Any) -> VLLMBackend:
    return VLLMBackend(settings)
