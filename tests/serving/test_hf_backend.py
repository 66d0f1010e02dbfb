"""The hf backend on the tiny model: batching, per-row limits, stop strings, cancellation, adapters."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import torch
from serving_helpers import tiny_settings
from transformers import AutoModelForCausalLM, AutoTokenizer

from srl_rlvr.prompts import render_generation_prompt
from srl_rlvr.serving.backends.base import Finished, Prompt, SamplingParams, TextDelta
from srl_rlvr.serving.backends.hf import HFBackend
from srl_rlvr.serving.errors import APIError

QUESTIONS = ["What is 2+3?", "Mia has 7 boxes with 6 pens in each.", "Say hi",
             "Noah starts with 12 marbles. How many?"]


def _prompt(tokenizer, question: str) -> Prompt:
    text = render_generation_prompt(tokenizer, [{"role": "user", "content": question}])
    return Prompt(text=text, token_ids=tuple(tokenizer(text, add_special_tokens=False)["input_ids"]))


async def _collect(backend: HFBackend, adapter, prompt: Prompt, params: SamplingParams) -> tuple[str, Finished]:
    text, finished = [], None
    async for event in backend.generate(adapter, prompt, params):
        if isinstance(event, TextDelta):
            text.append(event.text)
        else:
            finished = event
    return "".join(text), finished


def _plain_generate(model_dir: Path, question: str, max_new_tokens: int) -> str:
    """Reference: plain transformers generate, greedy, one prompt alone."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    prompt = _prompt(tokenizer, question)
    with torch.inference_mode():
        out = model.generate(torch.tensor([prompt.token_ids]), max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id)
    new = out[0, len(prompt.token_ids):].tolist()
    if tokenizer.eos_token_id in new:
        new = new[: new.index(tokenizer.eos_token_id)]
    return tokenizer.decode(new, skip_special_tokens=True)


SCHEDULERS = pytest.mark.parametrize("scheduler", ["continuous", "static"])


def _backend(model_dir: Path, scheduler: str, **hf) -> HFBackend:
    return HFBackend(tiny_settings(model_dir, hf={"scheduler": scheduler, **hf}))


def run(coro):
    return asyncio.run(coro)


@SCHEDULERS
def test_concurrent_requests_share_one_batch_and_match_solo_generate(scheduler: str, tiny_model_dir: Path):
    async def main():
        # A long batch wait, so all four requests are surely waiting when the batch forms.
        backend = _backend(tiny_model_dir, scheduler, max_batch_size=4, batch_wait_ms=500)
        await backend.start()
        try:
            prompts = [_prompt(backend.tokenizer, q) for q in QUESTIONS]
            limits = [3, 12, 7, 12]  # rows end at their own max_tokens inside one batch
            results = await asyncio.gather(*(_collect(backend, None, p, SamplingParams(max_tokens=n, temperature=0))
                                             for p, n in zip(prompts, limits)))
            return list(backend.batch_sizes), results, limits
        finally:
            await backend.close()

    batch_sizes, results, limits = run(main())
    assert batch_sizes == [4]
    for question, limit, (text, finished) in zip(QUESTIONS, limits, results):
        assert text == _plain_generate(tiny_model_dir, question, limit)
        assert finished.completion_tokens <= limit
        assert finished.finish_reason == ("length" if finished.completion_tokens == limit else "stop")


@SCHEDULERS
def test_stop_strings_and_cancellation(scheduler: str, tiny_model_dir: Path):
    async def main():
        backend = _backend(tiny_model_dir, scheduler)
        await backend.start()
        try:
            prompt = Prompt(text="1 2 3", token_ids=tuple(backend.tokenizer("1 2 3")["input_ids"]))
            full, _ = await _collect(backend, None, prompt, SamplingParams(max_tokens=12, temperature=0))
            stop = full[3:5]
            cut, finished = await _collect(backend, None, prompt, SamplingParams(max_tokens=12, temperature=0,
                                                                                   stop=(stop,)))
            # Cancel a long request after its first delta: the worker frees the row and serves the next.
            stream = backend.generate(None, prompt, SamplingParams(max_tokens=500, temperature=0))
            await anext(stream)
            await stream.aclose()
            after, _ = await _collect(backend, None, prompt, SamplingParams(max_tokens=12, temperature=0))
            return full, stop, cut, finished, after, backend.load_snapshot()
        finally:
            await backend.close()

    full, stop, cut, finished, after, snapshot = run(main())
    assert stop and cut == full[: full.index(stop)] and finished.finish_reason == "stop"
    assert after == full
    assert snapshot[None] == (0, 0)


@pytest.mark.parametrize("mixed", [True, False])
@SCHEDULERS
def test_adapters_load_mix_and_unload(scheduler: str, tiny_model_dir: Path, lora_dirs, tmp_path: Path, mixed: bool):
    async def main():
        backend = _backend(tiny_model_dir, scheduler, max_batch_size=4, batch_wait_ms=300, mixed_adapter_batches=mixed)
        await backend.start()
        try:
            prompt = _prompt(backend.tokenizer, QUESTIONS[1])
            params = SamplingParams(max_tokens=10, temperature=0)
            base = (await _collect(backend, None, prompt, params))[0]
            await backend.load_adapter("a", str(lora_dirs["lora-a"]))
            await backend.load_adapter("b", str(lora_dirs["lora-b"]))
            solo = {name: (await _collect(backend, name, prompt, params))[0] for name in (None, "a", "b")}
            before = len(backend.batch_sizes)
            together = await asyncio.gather(*(_collect(backend, name, prompt, params) for name in (None, "a", "b")))
            mixed_batches = list(backend.batch_sizes)[before:]
            await backend.unload_adapter("a")
            with pytest.raises(APIError, match="does not exist"):
                await _collect(backend, "a", prompt, params)
            still_b = (await _collect(backend, "b", prompt, params))[0]
            await backend.unload_adapter("b")  # the last one: back to the plain model
            base_again = (await _collect(backend, None, prompt, params))[0]
            # An adapter for another architecture is refused before it touches the model.
            bad = tmp_path / "bad"
            bad.mkdir()
            _make_mismatched_adapter(lora_dirs["lora-a"], bad)
            with pytest.raises(APIError, match="has size"):
                await backend.load_adapter("bad", str(bad))
            base_after_bad = (await _collect(backend, None, prompt, params))[0]
            return base, solo, [t[0] for t in together], mixed_batches, still_b, base_again, base_after_bad
        finally:
            await backend.close()

    base, solo, answers, mixed_batches, still_b, base_again, base_after_bad = run(main())
    assert solo[None] == base and len({base, solo["a"], solo["b"]}) == 3  # the adapters really change the output
    # With peft's adapter_names, base and both adapters share one batch; without, one batch per adapter.
    assert mixed_batches == ([3] if mixed else [1, 1, 1])
    assert answers == [solo[None], solo["a"], solo["b"]]
    assert still_b == solo["b"] and base_again == base and base_after_bad == base


def _make_mismatched_adapter(source: Path, out: Path) -> None:
    from safetensors.torch import load_file, save_file

    weights = load_file(source / "adapter_model.safetensors")
    weights = {k: (torch.zeros(v.shape[0], v.shape[1] + 8) if ".lora_A." in k else v) for k, v in weights.items()}
    save_file(weights, out / "adapter_model.safetensors")
    (out / "adapter_config.json").write_text((source / "adapter_config.json").read_text())


@SCHEDULERS
def test_shared_prefix_is_prefilled_once_and_changes_nothing(scheduler: str, tiny_model_dir: Path, lora_dirs):
    """SRL-style prompts share a long system prompt: it is prefilled once and cached (per adapter), and
    every answer equals the one without the prefix cache, including after an adapter name is reused."""
    from srl_rlvr.prompts import full_problem_messages

    problems = ["Mia has 7 boxes with 6 pens in each.", "Noah starts with 12 marbles.", "What is 2+3?"]

    async def answers(prefix_cache: bool) -> tuple[list, list[int]]:
        backend = _backend(tiny_model_dir, scheduler, max_batch_size=3, batch_wait_ms=300, prefix_cache=prefix_cache)
        await backend.start()
        try:
            prompts = []
            for problem in problems:
                text = render_generation_prompt(backend.tokenizer, full_problem_messages(problem))
                prompts.append(Prompt(text=text, token_ids=tuple(backend.tokenizer(text, add_special_tokens=False)
                                                                 ["input_ids"])))
            params = SamplingParams(max_tokens=10, temperature=0)

            async def batch(adapter):
                return [r[0] for r in await asyncio.gather(*(_collect(backend, adapter, p, params) for p in prompts))]

            out = [await batch(None), await batch(None)]  # the second batch reuses the cached prefix
            await backend.load_adapter("x", str(lora_dirs["lora-a"]))
            out.append(await batch("x"))
            await backend.unload_adapter("x")
            await backend.load_adapter("x", str(lora_dirs["lora-b"]))  # same name, other weights
            out.append(await batch("x"))
            out.append([(await _collect(backend, None, p, params))[0] for p in prompts])  # one-row batches
            return out, list(backend.prefix_hits)
        finally:
            await backend.close()

    with_cache, hits = run(answers(True))
    without_cache, no_hits = run(answers(False))
    assert with_cache == without_cache
    assert with_cache[2] != with_cache[0] and with_cache[3] != with_cache[2]
    assert set(no_hits) == {0}
    assert hits[0] > 100 and hits[:4] == [hits[0]] * 4 and all(h == hits[0] for h in hits[4:])
    for problem, answer in zip(problems[:1], with_cache[0][:1]):
        tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
        model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
        text = render_generation_prompt(tokenizer, full_problem_messages(problem))
        ids = torch.tensor([tokenizer(text, add_special_tokens=False)["input_ids"]])
        with torch.inference_mode():
            out = model.generate(ids, max_new_tokens=10, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        new = out[0, ids.shape[1]:].tolist()
        new = new[: new.index(tokenizer.eos_token_id)] if tokenizer.eos_token_id in new else new
        assert answer == tokenizer.decode(new, skip_special_tokens=True)


def test_batch_wait_policy(tiny_model_dir: Path):
    """A lone request waits batch_wait_ms; right after a batch of k rows, up to refill_wait_fraction of that
    batch's run time for k requests to come back; a full batch never waits."""
    import time

    backend = HFBackend(tiny_settings(tiny_model_dir, hf={"scheduler": "static", "max_batch_size": 8,
                                                          "batch_wait_ms": 10, "refill_wait_fraction": 0.1}))
    now = time.monotonic()
    assert backend.scheduler.batch_wait_left(1, now, 0.010) == pytest.approx(0.010, abs=0.005)
    backend.scheduler.last_batch = (8, 5.0, now)  # 8 rows just finished after 5 s
    assert backend.scheduler.batch_wait_left(3, now, 0.010) == pytest.approx(0.5, abs=0.01)
    assert backend.scheduler.batch_wait_left(8, now, 0.010) <= 0.010
    backend.scheduler.last_batch = (8, 5.0, now - 1.0)  # long ago: only the plain wait is left
    assert backend.scheduler.batch_wait_left(3, now, 0.010) <= 0.010


def test_a_lora_folder_as_model_is_served_merged(tiny_model_dir: Path, lora_dirs):
    async def answer(model: str, adapter: str | None) -> str:
        backend = HFBackend(tiny_settings(tiny_model_dir, model=model))
        await backend.start()
        try:
            if adapter:
                await backend.load_adapter("a", adapter)
            prompt = _prompt(backend.tokenizer, QUESTIONS[0])
            return (await _collect(backend, "a" if adapter else None, prompt,
                                   SamplingParams(max_tokens=8, temperature=0)))[0]
        finally:
            await backend.close()

    merged = run(answer(str(lora_dirs["lora-a"]), None))
    assert merged == run(answer(str(tiny_model_dir), str(lora_dirs["lora-a"])))
    assert merged != run(answer(str(tiny_model_dir), None))


@SCHEDULERS
def test_replacing_an_adapter_in_place_has_no_window_and_in_flight_requests_keep_the_old_weights(
        scheduler: str, tiny_model_dir: Path, lora_dirs):
    async def main():
        backend = _backend(tiny_model_dir, scheduler, max_batch_size=2, batch_wait_ms=5)
        await backend.start()
        try:
            prompt = _prompt(backend.tokenizer, QUESTIONS[1])
            params = SamplingParams(max_tokens=12, temperature=0)
            await backend.load_adapter("ref-a", str(lora_dirs["lora-a"]))
            await backend.load_adapter("ref-b", str(lora_dirs["lora-b"]))
            want_a = (await _collect(backend, "ref-a", prompt, params))[0]
            want_b = (await _collect(backend, "ref-b", prompt, params))[0]
            await backend.load_adapter("live", str(lora_dirs["lora-a"]))
            before = [asyncio.ensure_future(_collect(backend, "live", prompt, params)) for _ in range(4)]
            await asyncio.sleep(0)  # queued ahead of the replace: they run first, on lora-a
            replacing = asyncio.ensure_future(backend.replace_adapter("live", str(lora_dirs["lora-b"])))
            after = [asyncio.ensure_future(_collect(backend, "live", prompt, params)) for _ in range(4)]
            done = await asyncio.gather(*before, replacing, *after, return_exceptions=True)
            return want_a, want_b, done, backend.adapters()
        finally:
            await backend.close()

    want_a, want_b, done, adapters = run(main())
    assert want_a != want_b  # the two adapters really answer differently
    failures = [d for d in done if isinstance(d, BaseException)]
    assert failures == []  # no 404 window, no request failed
    assert [d[0] for d in done[:4]] == [want_a] * 4  # in flight (queued before the swap): the old weights
    assert [d[0] for d in done[5:]] == [want_b] * 4  # after it: the new ones
    assert set(adapters) == {"ref-a", "ref-b", "live"} and adapters["live"].path == str(lora_dirs["lora-b"])
