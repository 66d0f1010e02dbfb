"""The hf backend's continuous scheduler against its static one: requests join and leave the running batch
between decode steps, the token cap, per-row seeded sampling, and swaps that do not stall other adapters."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from serving_helpers import tiny_settings
from test_hf_backend import QUESTIONS, _collect, _plain_generate, _prompt

from srl_rlvr.serving.backends.base import SamplingParams, TextDelta
from srl_rlvr.serving.backends.hf import HFBackend

GREEDY = dict(temperature=0)


async def _timed(backend, adapter, prompt, params) -> tuple[str, object, float]:
    text, finished = await _collect(backend, adapter, prompt, params)
    return text, finished, time.monotonic()


async def _first_delta(backend, adapter, prompt, params) -> tuple[asyncio.Task, asyncio.Event]:
    """Start a request and return once it is generating (its first text arrived)."""
    started = asyncio.Event()

    async def go():
        parts, finished = [], None
        async for event in backend.generate(adapter, prompt, params):
            if isinstance(event, TextDelta):
                parts.append(event.text)
                started.set()
            else:
                finished = event
        started.set()
        return "".join(parts), finished, time.monotonic()

    task = asyncio.ensure_future(go())
    await started.wait()
    return task, started


@pytest.mark.parametrize("scheduler", ["continuous", "static"])
def test_short_requests_do_not_wait_for_a_long_one(scheduler: str, tiny_model_dir: Path):
    """A long request is generating; two short ones sent after it. Continuous: both are answered while the
    long one still runs (they joined its batch); static: they wait until it ends. Every text equals plain
    solo generate either way."""
    async def main():
        backend = HFBackend(tiny_settings(tiny_model_dir, hf={"scheduler": scheduler, "max_batch_size": 4,
                                                              "batch_wait_ms": 0}))
        await backend.start()
        try:
            prompts = [_prompt(backend.tokenizer, q) for q in QUESTIONS]
            long_task, _ = await _first_delta(backend, None, prompts[0], SamplingParams(max_tokens=160, **GREEDY))
            short = await asyncio.gather(*(_timed(backend, None, p, SamplingParams(max_tokens=6, **GREEDY))
                                           for p in prompts[1:3]))
            return await long_task, short, backend
        finally:
            await backend.close()

    (long_text, long_done, long_end), short, backend = asyncio.run(main())
    assert long_done.completion_tokens > 100  # really long: it ran to (near) its limit
    assert long_text == _plain_generate(tiny_model_dir, QUESTIONS[0], 160)
    for question, (text, _, _) in zip(QUESTIONS[1:3], short):
        assert text == _plain_generate(tiny_model_dir, question, 6)
    if scheduler == "continuous":
        assert all(end < long_end for _, _, end in short)
        assert backend.scheduler.steps < long_done.completion_tokens + 12  # shared decode steps, not extra ones
    else:
        assert all(end >= long_end for _, _, end in short)


def test_max_batch_tokens_keeps_a_request_waiting_until_there_is_room(tiny_model_dir: Path):
    async def main(cap_rows: int):
        probe = HFBackend(tiny_settings(tiny_model_dir))
        await probe.start()
        prompts = [_prompt(probe.tokenizer, q) for q in QUESTIONS[:2]]
        await probe.close()
        need = max(len(p.token_ids) for p in prompts) + 20
        backend = HFBackend(tiny_settings(tiny_model_dir, hf={"max_batch_size": 4, "batch_wait_ms": 200,
                                                              "max_batch_tokens": need * cap_rows}))
        await backend.start()
        try:
            done = await asyncio.gather(*(_timed(backend, None, p, SamplingParams(max_tokens=20, **GREEDY))
                                          for p in prompts))
            return list(backend.batch_sizes), done
        finally:
            await backend.close()

    one_at_a_time, done_1 = asyncio.run(main(1))
    together, done_2 = asyncio.run(main(2))
    assert one_at_a_time == [1, 1] and together == [2]
    assert [d[0] for d in done_1] == [d[0] for d in done_2]


def test_each_row_samples_with_its_own_seed_and_settings(tiny_model_dir: Path):
    seeded = SamplingParams(max_tokens=16, temperature=0.9, top_p=0.8, seed=7)

    async def main():
        backend = HFBackend(tiny_settings(tiny_model_dir, hf={"max_batch_size": 4, "batch_wait_ms": 200}))
        await backend.start()
        try:
            prompt = _prompt(backend.tokenizer, QUESTIONS[1])
            alone = (await _collect(backend, None, prompt, seeded))[0]
            greedy = (await _collect(backend, None, prompt, SamplingParams(max_tokens=16, **GREEDY)))[0]
            mixed = await asyncio.gather(
                _collect(backend, None, prompt, SamplingParams(max_tokens=16, **GREEDY)),
                _collect(backend, None, prompt, seeded),
                _collect(backend, None, prompt, SamplingParams(max_tokens=16, temperature=0.9, seed=8)))
            return alone, greedy, [m[0] for m in mixed], list(backend.batch_sizes)
        finally:
            await backend.close()

    alone, greedy, mixed, batches = asyncio.run(main())
    assert batches[-1] == 3  # greedy and two seeds in one batch
    assert mixed[0] == greedy and mixed[1] == alone  # batch mates change nothing
    assert mixed[2] != alone  # another seed, other tokens


def test_a_replace_waits_for_rows_on_that_adapter_and_stalls_no_one_else(tiny_model_dir: Path, lora_dirs):
    async def main():
        backend = HFBackend(tiny_settings(tiny_model_dir, hf={"max_batch_size": 4, "batch_wait_ms": 0}))
        await backend.start()
        try:
            prompt = _prompt(backend.tokenizer, QUESTIONS[1])
            long_params, short = SamplingParams(max_tokens=120, **GREEDY), SamplingParams(max_tokens=8, **GREEDY)
            await backend.load_adapter("old", str(lora_dirs["lora-a"]))
            await backend.load_adapter("new", str(lora_dirs["lora-b"]))
            want_old_long = (await _collect(backend, "old", prompt, long_params))[0]
            want_new = (await _collect(backend, "new", prompt, short))[0]
            want_base = (await _collect(backend, None, prompt, short))[0]
            await backend.load_adapter("live", str(lora_dirs["lora-a"]))
            long_task, _ = await _first_delta(backend, "live", prompt, long_params)
            replacing = asyncio.ensure_future(backend.replace_adapter("live", str(lora_dirs["lora-b"])))
            await asyncio.sleep(0)
            base = asyncio.ensure_future(_timed(backend, None, prompt, short))
            after = asyncio.ensure_future(_timed(backend, "live", prompt, short))
            base_text, _, base_end = await base
            replaced_at = None
            await replacing
            replaced_at = time.monotonic()
            long_text, _, long_end = await long_task
            after_text, _, after_end = await after
            return (want_old_long, want_new, want_base, long_text, long_end, base_text, base_end, after_text,
                    after_end, replaced_at)
        finally:
            await backend.close()

    (want_old_long, want_new, want_base, long_text, long_end, base_text, base_end, after_text, after_end,
     replaced_at) = asyncio.run(main())
    assert long_text == want_old_long  # in flight across the swap: the old weights throughout
    assert base_text == want_base and base_end < long_end  # the base model was not stalled by the swap
    assert after_text == want_new and after_end > long_end and replaced_at >= long_end - 0.05


@pytest.mark.parametrize("scheduler", ["continuous", "static"])
def test_a_failing_forward_fails_its_rows_with_500_and_the_worker_lives_on(scheduler: str, tiny_model_dir: Path):
    from srl_rlvr.serving.errors import APIError

    async def main():
        backend = HFBackend(tiny_settings(tiny_model_dir, hf={"scheduler": scheduler, "prefix_cache": False}))
        await backend.start()
        try:
            prompt = _prompt(backend.tokenizer, QUESTIONS[0])
            params = SamplingParams(max_tokens=8, **GREEDY)
            want = (await _collect(backend, None, prompt, params))[0]
            real, calls = backend._model.forward, []

            def flaky(*args, **kwargs):
                calls.append(1)
                if len(calls) == 3:  # the third forward pass of the next request: mid-generation
                    raise RuntimeError("injected")
                return real(*args, **kwargs)

            backend._model.forward = flaky
            with pytest.raises(APIError) as failed:
                await _collect(backend, None, prompt, params)
            backend._model.forward = real
            return want, failed.value, (await _collect(backend, None, prompt, params))[0]
        finally:
            await backend.close()

    want, error, again = asyncio.run(main())
    assert error.status == 500 and "injected" in error.message
    assert again == want


def test_a_row_that_cannot_sample_fails_alone(tiny_model_dir: Path):
    """A seed torch cannot take (past the API's own bound) fails its request only, not its batch mates."""
    from srl_rlvr.serving.errors import APIError

    async def main():
        backend = HFBackend(tiny_settings(tiny_model_dir, hf={"max_batch_size": 4, "batch_wait_ms": 300}))
        await backend.start()
        try:
            prompt = _prompt(backend.tokenizer, QUESTIONS[0])
            return await asyncio.gather(
                _collect(backend, None, prompt, SamplingParams(max_tokens=6, **GREEDY)),
                _collect(backend, None, prompt, SamplingParams(max_tokens=6, temperature=1.0, seed=2**70)),
                _collect(backend, None, prompt, SamplingParams(max_tokens=6, temperature=1.0, seed=3)),
                return_exceptions=True), list(backend.batch_sizes)
        finally:
            await backend.close()

    (good, bad, seeded), batches = asyncio.run(main())
    assert batches == [3]
    assert isinstance(bad, APIError) and bad.status == 400 and bad.param == "seed"
    assert not isinstance(good, BaseException) and not isinstance(seeded, BaseException)
    assert good[1].completion_tokens > 0 and seeded[1].completion_tokens > 0


def test_reserved_adapter_names_are_refused(tiny_model_dir: Path, lora_dirs):
    from srl_rlvr.serving.errors import APIError

    async def main():
        backend = HFBackend(tiny_settings(tiny_model_dir))
        await backend.start()
        try:
            errors = []
            for name in ("__base__", "live__replacing"):
                with pytest.raises(APIError) as refused:
                    await backend.load_adapter(name, str(lora_dirs["lora-a"]))
                errors.append(refused.value)
            return errors, backend.adapters()
        finally:
            await backend.close()

    errors, adapters = asyncio.run(main())
    assert [e.status for e in errors] == [400, 400] and all("reserved" in e.message for e in errors)
    assert adapters == {}
