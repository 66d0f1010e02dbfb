"""A live uvicorn server on loopback, driven by the official openai client; LoRA hot-swap under load."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import openai
import pytest
from serving_helpers import TINY, ScriptedBackend, tiny_settings, write_stage_manifest

from srl_rlvr.prompts import full_problem_messages
from srl_rlvr.serving.app import create_app
from srl_rlvr.serving.live import LiveServer

QUESTIONS = ["What is 2+3?", "Mia has 7 boxes.", "Say hi", "12 - 3 = ?", "The farmer picks 24 apples."]


@pytest.fixture(scope="module")
def server(tiny_model_dir: Path, lora_dirs):
    settings = tiny_settings(tiny_model_dir, lora_adapters={"lora-a": str(lora_dirs["lora-a"])})
    with LiveServer(create_app(settings)) as live:
        yield live


def _client(server: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="unused", max_retries=0, timeout=60)


def _chat(client: openai.OpenAI, model: str, question: str, max_tokens: int = 8) -> str:
    # The SRL prompt layout: every request shares a long system prompt, so the prefix cache is in play.
    response = client.chat.completions.create(model=model, messages=full_problem_messages(question),
                                              max_tokens=max_tokens, temperature=0)
    return response.choices[0].message.content


def test_chat_plain_and_streamed_agree(server):
    client = _client(server)
    response = client.chat.completions.create(model=TINY, messages=[{"role": "user", "content": "What is 2+3?"}],
                                              max_tokens=10, temperature=0)
    assert response.object == "chat.completion" and response.model == TINY
    assert response.usage.completion_tokens == 10 and response.choices[0].finish_reason == "length"
    stream = client.chat.completions.create(model=TINY, messages=[{"role": "user", "content": "What is 2+3?"}],
                                            max_tokens=10, temperature=0, stream=True,
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == response.choices[0].message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 10


def test_completions_plain_and_streamed(server):
    client = _client(server)
    done = client.completions.create(model=TINY, prompt="The answer is", max_tokens=6, temperature=0)
    streamed = "".join(c.choices[0].text for c in client.completions.create(
        model=TINY, prompt="The answer is", max_tokens=6, temperature=0, stream=True))
    assert done.object == "text_completion" and done.choices[0].text == streamed and streamed


def test_sse_wire_format_ends_with_done(server):
    body = {"model": TINY, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3, "stream": True}
    with httpx.stream("POST", f"{server.base_url}/v1/chat/completions", json=body, timeout=60) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines) and lines[-1] == "data: [DONE]"


def test_models_lists_base_and_adapters_with_parent(server):
    cards = {m.id: m for m in _client(server).models.list().data}
    assert cards[TINY].parent is None and cards["lora-a"].parent == TINY
    assert cards["lora-a"].root.endswith("lora-a")


def test_openai_client_sees_api_errors(server):
    client = _client(server)
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        _chat(client, "nope", "hi")
    with pytest.raises(openai.BadRequestError, match="max_tokens=5000"):
        _chat(client, TINY, "hi", max_tokens=5000)


class _Askers:
    """Threads that keep asking their models and check each answer against the model's answer alone."""

    def __init__(self, client: openai.OpenAI, models: list[str], alone: dict):
        self.client, self.alone = client, alone
        self.stop = threading.Event()
        self.mismatches: list = []
        self.errors: list = []
        self.stamps: list = []
        self.threads = [threading.Thread(target=self._ask, args=(m, k)) for k, m in enumerate(models)]

    def _ask(self, model: str, offset: int) -> None:
        i = offset
        while not self.stop.is_set():
            question = QUESTIONS[i % len(QUESTIONS)]
            try:
                started = time.monotonic()
                answer = _chat(self.client, model, question)
                self.stamps.append((started, time.monotonic()))
                if answer != self.alone[(model, question)]:
                    self.mismatches.append((model, question, answer))
            except Exception as exc:  # noqa: BLE001 - collected and asserted below
                self.errors.append(repr(exc))
            i += 1

    def __enter__(self) -> _Askers:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for t in self.threads:
            t.join()

    def check(self, windows: list[tuple[float, float]]) -> None:
        assert not self.errors and not self.mismatches
        overlapping = [s for s in self.stamps if any(s[0] < end and s[1] > start for start, end in windows)]
        assert len(overlapping) >= 4, "the swaps should overlap requests in flight"


def test_hot_swap_leaves_concurrent_requests_untouched(tiny_model_dir: Path, lora_dirs):
    """Requests keep running on the base model (and on lora-a) while adapters are loaded and unloaded again
    and again, including the first load (which wraps the model with PEFT) and the last unload (which unwraps
    it); every answer must equal what that model gives alone (greedy, deterministic)."""
    # adapter endpoints exist only with an admin key (a keyless server has none)
    app = create_app(tiny_settings(tiny_model_dir, api_keys=[{"key": "unused", "scope": "admin"}]))
    with LiveServer(app) as live:
        client = _client(live)
        admin = httpx.Client(base_url=live.base_url, timeout=60, headers={"Authorization": "Bearer unused"})

        def load(name: str) -> None:
            response = admin.post("/v1/load_lora_adapter", json={"lora_name": name, "lora_path": str(lora_dirs[name])})
            assert response.status_code == 200, response.text

        def unload(name: str) -> None:
            assert admin.post("/v1/unload_lora_adapter", json={"lora_name": name}).status_code == 200

        load("lora-a")
        load("lora-b")
        alone = {(m, q): _chat(client, m, q) for m in (TINY, "lora-a", "lora-b") for q in QUESTIONS}
        assert len({alone[(m, QUESTIONS[0])] for m in (TINY, "lora-a", "lora-b")}) == 3
        unload("lora-b")
        unload("lora-a")

        # 1. Only the base model is in use; each cycle wraps and unwraps it.
        windows = []
        with _Askers(client, [TINY, TINY, TINY], alone) as askers:
            for _ in range(3):
                time.sleep(0.1)
                t0 = time.monotonic()
                load("lora-a")
                load("lora-b")
                for name in ("lora-a", "lora-b"):
                    assert _chat(client, name, QUESTIONS[1]) == alone[(name, QUESTIONS[1])]
                unload("lora-b")
                unload("lora-a")
                windows.append((t0, time.monotonic()))
                with pytest.raises(openai.NotFoundError):
                    _chat(client, "lora-a", QUESTIONS[0])
            time.sleep(0.1)
        askers.check(windows)

        # 2. Base and lora-a stay in use while lora-b comes and goes.
        load("lora-a")
        windows = []
        with _Askers(client, [TINY, "lora-a", TINY, "lora-a"], alone) as askers:
            for _ in range(3):
                time.sleep(0.1)
                t0 = time.monotonic()
                load("lora-b")
                for question in QUESTIONS[:2]:
                    assert _chat(client, "lora-b", question) == alone[("lora-b", question)]
                unload("lora-b")
                windows.append((t0, time.monotonic()))
            time.sleep(0.1)
        askers.check(windows)
    backend = app.state.catalog.backends[0]
    assert max(backend.batch_sizes) > 1 and max(backend.prefix_hits) > 100  # batching and the prefix cache were used


def test_metrics_count_requests_per_adapter(server):
    client = _client(server)
    _chat(client, "lora-a", "metrics?")
    text = httpx.get(f"{server.base_url}/metrics").text
    for name in ("srl_rlvr_serving_time_to_first_token_seconds_bucket",
                 "srl_rlvr_serving_e2e_request_latency_seconds_count",
                 "srl_rlvr_serving_prompt_tokens_total", "srl_rlvr_serving_generation_tokens_total",
                 "srl_rlvr_serving_num_requests_running",
                 "srl_rlvr_serving_num_requests_waiting"):
        assert name in text
    assert 'srl_rlvr_serving_generation_tokens_total{lora_name="lora-a",model_name="tiny"}' in text


def test_think_split_reaches_the_openai_client(tiny_model_dir: Path, tiny_tokenizer, tmp_path: Path):
    """A model folder whose stage manifest says think_prefill: the prompt ends with <think>, and the
    answer comes back split, plain and streamed (a scripted backend writes well-formed SRL output)."""
    import shutil

    model_dir = tmp_path / "srl-model"
    shutil.copytree(tiny_model_dir, model_dir)
    write_stage_manifest(model_dir, think_prefill=True)
    settings = tiny_settings(model_dir)
    backend = ScriptedBackend(settings, tiny_tokenizer, " add 2 and 3 </think>\n2 + 3 = 5 ")
    with LiveServer(create_app(settings, backend)) as live:
        client = _client(live)
        message = client.chat.completions.create(model=TINY, messages=[{"role": "user", "content": "2+3?"}],
                                                 temperature=0).choices[0].message
        chunks = list(client.chat.completions.create(model=TINY, messages=[{"role": "user", "content": "2+3?"}],
                                                     temperature=0, stream=True))
    assert backend.prompts[0].text.endswith("<|im_start|>assistant\n<think>")
    assert message.content == "2 + 3 = 5" and message.reasoning_content == "add 2 and 3"
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    reasoning = "".join(getattr(d, "reasoning_content", None) or "" for d in deltas)
    content = "".join(d.content or "" for d in deltas)
    assert (reasoning, content) == ("add 2 and 3", "2 + 3 = 5")
    assert not any(getattr(d, "reasoning_content", None) and d.content for d in deltas)


def test_client_disconnect_frees_its_row(server):
    """Closing a stream mid-way stops its generation (measured against the same request run to the end)."""
    backend = server.app.state.catalog.backends[0]
    body = {"model": TINY, "prompt": "The answer is", "max_tokens": 1000, "stream": True, "temperature": 0}
    started = time.monotonic()
    with httpx.stream("POST", f"{server.base_url}/v1/completions", json=body, timeout=60) as response:
        next(line for line in response.iter_lines() if line)
    while backend.load_snapshot()[None] != (0, 0):
        assert time.monotonic() - started < 30
        time.sleep(0.005)
    freed = time.monotonic() - started
    started = time.monotonic()
    usage = httpx.post(f"{server.base_url}/v1/completions", json={**body, "stream": False}, timeout=60).json()["usage"]
    full = time.monotonic() - started
    assert usage["completion_tokens"] == 1000 and freed < full / 2
