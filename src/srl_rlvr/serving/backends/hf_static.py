"""The hf backend's static scheduler (``hf.scheduler: static``): the waiting requests that can share a
``generate`` call run as one left-padded batch until its longest row ends.

Kept beside the continuous scheduler so the two can be compared at equal settings
(``bench/serve_load.py --scenario long-short``): here one ``max_tokens=1024`` request holds every request
behind it until it ends, and a row that finished early keeps its slot.
"""

from __future__ import annotations

import copy
import logging
import time
from typing import Any

from srl_rlvr.serving.backends.hf_rows import Command, Request, RowController, generation_failed

log = logging.getLogger("srl_rlvr.serving")


class StaticScheduler:
    def __init__(self, backend: Any):  # the HFBackend that owns it (not imported: hf.py imports this module)
        self.backend = backend
        self.last_batch = (0, 0.0, 0.0)  # rows, seconds it ran, when it ended (monotonic)

    def run(self) -> None:
        b = self.backend
        while (job := self._next_job()) is not None:
            if isinstance(job, Command):
                job.execute()
                continue
            started = time.monotonic()
            try:
                self._run_batch(job)
            finally:
                ended = time.monotonic()
                with b._cond:
                    b._running = []
                self.last_batch = (len(job), ended - started, ended)

    def _group_key(self, request: Request) -> tuple:
        p = request.params
        sampling: tuple = ("greedy",) if p.greedy else ("sample", p.temperature, p.top_p)
        if not p.greedy and p.seed is not None:
            sampling += ("seed", id(request))  # a seeded request runs alone, so its seed alone decides its tokens
        return sampling, (None if self.backend.hf.mixed_adapter_batches else request.adapter)

    def _next_job(self) -> list[Request] | Command | None:
        b = self.backend
        wait_s = b.hf.batch_wait_ms / 1000.0
        with b._cond:
            while True:
                if b._stopping:
                    return None
                b._drop_cancelled_locked()
                if not b._pending:
                    b._cond.wait()
                    continue
                barrier = next((i for i, r in enumerate(b._pending) if isinstance(r, Command)), None)
                eligible = b._pending[:barrier]
                if not eligible:
                    return b._pending.pop(0)
                key = self._group_key(eligible[0])
                group = [r for r in eligible if self._group_key(r) == key][: b.hf.max_batch_size]
                if barrier is None and len(group) < b.hf.max_batch_size:
                    left = self.batch_wait_left(len(group), eligible[0].queued_at, wait_s)
                    if left > 0:
                        b._cond.wait(left)  # let concurrent requests join this batch
                        continue
                taken = set(map(id, group))
                b._pending = [r for r in b._pending if id(r) not in taken]
                b._running = group
                return group

    def batch_wait_left(self, queued: int, oldest: float, wait_s: float) -> float:
        """Seconds more to wait before running ``queued`` requests as a batch.

        A lone request waits ``batch_wait_ms`` for company. Right after a batch of k rows, the clients it
        answered are typically sending their next requests; starting with the first to arrive would split
        them into a batch of 1 and a batch of k-1 (and the split persists), so wait for k of them, up to
        ``refill_wait_fraction`` of that batch's run time.
        """
        now = time.monotonic()
        left = oldest + wait_s - now
        rows, seconds, ended = self.last_batch
        if queued < min(rows, self.backend.hf.max_batch_size):
            left = max(left, ended + self.backend.hf.refill_wait_fraction * seconds - now)
        return left

    def _run_batch(self, rows: list[Request]) -> None:
        import torch
        from transformers import GenerationConfig, StoppingCriteriaList

        b = self.backend
        rows = b.start_rows(rows)
        if not rows:
            return
        pad = b.tokenizer.pad_token_id
        device = b.device
        params = rows[0].params
        try:
            shared, prefix_cache = b.shared_prefix(rows) if b.hf.prefix_cache else (0, None)
        except Exception as exc:  # noqa: BLE001 - reported to each waiting client, the worker lives on
            log.exception("prefix prefill failed")
            for row in rows:
                row.fail(generation_failed(exc))
            return
        b.prefix_hits.append(shared)
        input_ids, attention = b.layout(rows, shared)
        extra_cache = {}
        if prefix_cache is not None:
            cache = copy.deepcopy(prefix_cache)  # generate extends it; the stored one stays as it is
            cache.batch_repeat_interleave(len(rows))
            extra_cache = {"cache": cache}
        config = GenerationConfig(
            max_new_tokens=max(r.params.max_tokens for r in rows), do_sample=not params.greedy, num_beams=1,
            pad_token_id=pad, eos_token_id=sorted(b._eos_ids),
            **({} if params.greedy else {"temperature": params.temperature, "top_p": params.top_p, "top_k": 0}),
        )
        controller = RowController(rows, b._decode_tokenizer, b._eos_ids)
        try:
            model, extra, scope = b.model_for(rows)
            if not params.greedy and params.seed is not None:
                torch.manual_seed(params.seed)
            with torch.inference_mode(), scope:
                model.generate(input_ids=input_ids.to(device), attention_mask=attention.to(device),
                               generation_config=config, stopping_criteria=StoppingCriteriaList([controller]),
                               **extra, **extra_cache)
        except Exception as exc:  # noqa: BLE001 - reported to each waiting client, the worker lives on
            log.exception("generation failed")
            for row in rows:
                row.fail(generation_failed(exc))
            return
        for row in rows:  # rows still open ran into max_new_tokens of the whole batch
            if not row.done and not row.cancelled.is_set():
                controller.finish(row, "length")
            row.done = True
