"""The hf backend's continuous scheduler (``hf.scheduler: continuous``, the default).

One running batch, advanced one decode step at a time by a plain forward pass (no ``generate``). Between
steps the worker:

* admits waiting requests (first come, first served) while the batch has fewer than ``max_batch_size``
  rows and their prompt tokens + ``max_tokens`` stay within ``max_batch_tokens``: the newcomers are
  prefilled together (from a cached shared prefix where there is one) and their KV cache is joined to the
  running one, left-padded to a common width;
* frees the slot of every row that ended (eos, stop string, its own ``max_tokens``, or a client that went
  away): its cache row is dropped and all-padding columns on the left are cut off;
* runs adapter commands: a load at once; an unload or in-place replace of adapter X once no running or
  earlier-queued request uses X. Requests for X queued after the command wait for it; requests for the
  base model or other adapters go on meanwhile. So rows in flight finish on the weights they started on,
  later requests get the new ones, and a swap never stalls the other adapters.

Each row samples with its own settings (greedy, temperature/top_p, and a seed as a per-row generator), so
requests with different sampling share one batch. Positions come from each row's own attention mask, so
a row's tokens are those it would get alone (up to floating-point rounding of batched matmuls).

Models whose cache is not one plain growing tensor per layer (sliding-window layers) need ``static``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from srl_rlvr.models.kv_cache import preallocated_cache
from srl_rlvr.serving.backends.hf_rows import Command, Request, RowController, generation_failed
from srl_rlvr.serving.errors import APIError

log = logging.getLogger("srl_rlvr.serving")


@dataclass
class _Batch:
    """The running rows and their joint KV cache: per layer (keys, values) of [rows, heads, width, dim]."""

    rows: list[Request] = field(default_factory=list)
    kv: list[tuple[Any, Any]] = field(default_factory=list)
    mask: Any = None  # [rows, width]: 1 where a cache column holds one of the row's tokens
    positions: Any = None  # [rows]: each row's next position id
    last: Any = None  # [rows]: each row's newest token, the next step's input
    generators: list[Any] = field(default_factory=list)  # per row: a seeded torch.Generator or None
    cache: Any = None  # the preallocated cache over ``kv`` (models/kv_cache.py); None until the next step builds it

    @property
    def room(self) -> int:
        """Columns the running rows may still need: the most tokens any of them may still generate."""
        return max((r.params.max_tokens - len(r.tokens) for r in self.rows), default=0) + 1

    def join(self, other: _Batch) -> None:
        import torch

        self.cache = None  # rebuilt with the joint rows at the next step
        if not self.rows:
            self.rows, self.kv, self.mask = other.rows, other.kv, other.mask
            self.positions, self.last, self.generators = other.positions, other.last, other.generators
            return
        width = max(self.mask.shape[1], other.mask.shape[1])

        def left_pad(t: Any, dim: int) -> Any:
            missing = width - t.shape[dim]
            if missing == 0:
                return t
            shape = list(t.shape)
            shape[dim] = missing
            return torch.cat([torch.zeros(shape, dtype=t.dtype, device=t.device), t], dim=dim)

        self.kv = [(torch.cat([left_pad(k1, 2), left_pad(k2, 2)]), torch.cat([left_pad(v1, 2), left_pad(v2, 2)]))
                   for (k1, v1), (k2, v2) in zip(self.kv, other.kv)]
        self.mask = torch.cat([left_pad(self.mask, 1), left_pad(other.mask, 1)])
        self.positions = torch.cat([self.positions, other.positions])
        self.last = torch.cat([self.last, other.last])
        self.rows = self.rows + other.rows
        self.generators = self.generators + other.generators

    def drop_finished(self) -> None:
        keep = [i for i, row in enumerate(self.rows) if not row.done]
        if len(keep) == len(self.rows):
            return
        self.cache = None
        if not keep:
            self.rows, self.kv, self.generators = [], [], []
            self.mask = self.positions = self.last = None
            return
        import torch

        index = torch.tensor(keep, device=self.mask.device)
        mask = self.mask.index_select(0, index)
        start = int(mask.any(dim=0).int().argmax())  # the first column some remaining row still uses
        self.kv = [(k.index_select(0, index)[:, :, start:], v.index_select(0, index)[:, :, start:])
                   for k, v in self.kv]
        self.mask = mask[:, start:]
        self.positions = self.positions.index_select(0, index)
        self.last = self.last.index_select(0, index)
        self.rows = [self.rows[i] for i in keep]
        self.generators = [self.generators[i] for i in keep]


class ContinuousScheduler:
    def __init__(self, backend: Any):  # the HFBackend that owns it (not imported: hf.py imports this module)
        self.backend = backend
        self.batch = _Batch()
        self.steps = 0  # decode steps run (for tests and metrics)

    @staticmethod
    def check_model(model: Any) -> None:
        """Refuse models whose KV cache is not one plain growing tensor per layer (joined and cut here)."""
        from srl_rlvr.errors import UserInputError

        config = model.config.get_text_config(decoder=True)
        kinds = set(getattr(config, "layer_types", None) or ["full_attention"])
        window = getattr(config, "sliding_window", None) if getattr(config, "use_sliding_window", True) else None
        if kinds != {"full_attention"} or window:
            raise UserInputError(f"hf.scheduler: continuous needs full attention in every layer; this model has "
                                 f"{sorted(kinds)} (sliding_window={window}); set hf.scheduler: static")

    # --- the loop ----------------------------------------------------------------------------------
    def run(self) -> None:
        while True:
            work = self._next_work()
            if work is None:
                return
            if isinstance(work, Command):
                work.execute()
                continue
            try:
                if work:
                    self._admit(work)
                if self.batch.rows:
                    self._step()
            except Exception as exc:  # noqa: BLE001 - reported to each client in the batch, the worker lives on
                log.exception("generation failed")
                error = generation_failed(exc)
                for row in [*self.batch.rows, *work]:
                    row.fail(error)
                self.batch = _Batch()
                with self.backend._cond:
                    self.backend._running = []

    def _next_work(self) -> list[Request] | Command | None:
        """Between two decode steps: a command to run now, the requests to admit (maybe none), or None to stop."""
        b = self.backend
        hf = b.hf
        with b._cond:
            while True:
                b._drop_cancelled_locked()
                running = [r for r in self.batch.rows if not r.done]
                if b._stopping and not running:
                    return None
                if b._stopping:
                    return []  # finish the rows in flight, admit nothing new
                commands = [(i, c) for i, c in enumerate(b._pending) if isinstance(c, Command)]
                if commands:
                    at, command = commands[0]
                    earlier = [r for r in b._pending[:at] if isinstance(r, Request)]
                    if command.touches is None or all(r.adapter != command.touches for r in running + earlier):
                        b._pending.pop(at)
                        return command
                # A request waits behind a command only if that command changes the request's adapter.
                eligible = [r for i, r in enumerate(b._pending) if isinstance(r, Request)
                            and not any(at < i and c.touches == r.adapter for at, c in commands)]
                if not eligible and not running:
                    b._cond.wait()
                    continue
                if (not running and not commands and len(eligible) < hf.max_batch_size
                        and (left := eligible[0].queued_at + hf.batch_wait_ms / 1000.0 - time.monotonic()) > 0):
                    b._cond.wait(left)  # an idle server: let concurrent requests be prefilled together
                    continue
                admitted = self._fit(running, eligible)
                if admitted:
                    taken = set(map(id, admitted))
                    b._pending = [r for r in b._pending if id(r) not in taken]
                b._running = running + admitted
                return admitted

    def _fit(self, running: list[Request], eligible: list[Request]) -> list[Request]:
        """The longest run of waiting requests, in arrival order, that fits beside the running rows."""
        hf = self.backend.hf
        rows = len(running)
        tokens = sum(r.kv_tokens for r in running)
        adapter = running[0].adapter if running else (eligible[0].adapter if eligible else None)
        admitted: list[Request] = []
        for request in eligible:
            if rows >= hf.max_batch_size:
                break
            if rows and tokens + request.kv_tokens > hf.max_batch_tokens:
                break  # in order: a big request is not overtaken forever by small ones
            if not hf.mixed_adapter_batches and request.adapter != adapter:
                break
            admitted.append(request)
            rows += 1
            tokens += request.kv_tokens
        return admitted

    # --- prefill and decode ------------------------------------------------------------------------
    def _admit(self, rows: list[Request]) -> None:
        b = self.backend
        rows = b.start_rows(rows)
        if not rows:
            return
        try:
            newcomers, logits = self._prefill(rows)
        except Exception as exc:  # noqa: BLE001 - reported to each admitted client, the worker lives on
            log.exception("prefill failed")
            for row in rows:
                row.fail(generation_failed(exc))
            return
        newcomers.last = self._sample(logits, rows, newcomers.generators)
        controller = RowController(rows, b._decode_tokenizer, b._eos_ids)
        for row, token in zip(rows, newcomers.last.tolist()):
            controller.process(row, token)
        self.batch.join(newcomers)
        self.batch.drop_finished()
        with b._cond:
            b._running = list(self.batch.rows)

    def _prefill(self, rows: list[Request]) -> tuple[_Batch, Any]:
        import copy

        import torch
        from transformers import DynamicCache

        b = self.backend
        shared, prefix = b.shared_prefix(rows) if b.hf.prefix_cache else (0, None)
        b.prefix_hits.append(shared)
        input_ids, mask = b.layout(rows, shared)
        input_ids, mask = input_ids.to(b.device), mask.to(b.device)
        positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
        if prefix is not None:
            cache = copy.deepcopy(prefix)  # the stored prefix stays as it is
            cache.batch_repeat_interleave(len(rows))
        else:
            cache = DynamicCache()
        model, extra, scope = b.model_for(rows)
        with torch.inference_mode(), scope:
            out = model(input_ids=input_ids[:, shared:], attention_mask=mask, position_ids=positions[:, shared:],
                        cache=cache, use_cache=True, logits_to_keep=1, **extra)
        generators = []
        for row in rows:
            seed = row.params.seed if not row.params.greedy else None
            try:
                generators.append(None if seed is None else torch.Generator(device=b.device).manual_seed(seed))
            except (RuntimeError, ValueError, OverflowError) as exc:  # a seed torch cannot take: that row only
                row.fail(APIError(400, f"seed {seed}: {exc}", "invalid_seed", "seed"))
                generators.append(None)
        kv = [(layer.keys, layer.values) for layer in out.cache.layers]
        batch = _Batch(rows=list(rows), kv=kv, mask=mask, positions=mask.sum(dim=1), generators=generators)
        return batch, out.logits[:, -1, :]

    def _step(self) -> None:
        import torch

        b, batch = self.backend, self.batch
        self.steps += 1
        mask = torch.cat([batch.mask, torch.ones_like(batch.mask[:, :1])], dim=1)
        if batch.cache is None:
            batch.cache = preallocated_cache(batch.kv, batch.room)
        model, extra, scope = b.model_for(batch.rows)
        with torch.inference_mode(), scope:
            out = model(input_ids=batch.last[:, None], attention_mask=mask, position_ids=batch.positions[:, None],
                        cache=batch.cache, use_cache=True, **extra)
        batch.kv = [(layer.keys, layer.values) for layer in batch.cache.layers]
        batch.mask = mask
        batch.positions = batch.positions + 1
        batch.last = self._sample(out.logits[:, -1, :], batch.rows, batch.generators)
        controller = RowController(batch.rows, b._decode_tokenizer, b._eos_ids)
        for row, token in zip(batch.rows, batch.last.tolist()):
            controller.process(row, token)
        batch.drop_finished()
        with b._cond:
            b._running = list(batch.rows)

    @staticmethod
    def _sample(logits: Any, rows: list[Request], generators: list[Any]) -> Any:
        """One next token per row, each with that row's own sampling settings. A row whose sampling fails
        gets a 500 alone; its batch mates go on."""
        import torch

        tokens = logits.argmax(dim=-1)
        for i, row in enumerate(rows):
            p = row.params
            if p.greedy or row.done:
                continue
            try:
                scores = logits[i].float() / p.temperature
                if p.top_p < 1.0:  # nucleus: drop the least likely tokens whose mass is at most 1 - top_p
                    ordered, order = torch.sort(scores)
                    drop = ordered.softmax(dim=-1).cumsum(dim=-1) <= 1.0 - p.top_p
                    drop[-1] = False
                    scores[order[drop]] = float("-inf")
                tokens[i] = torch.multinomial(scores.softmax(dim=-1), 1, generator=generators[i])[0]
            except Exception as exc:  # noqa: BLE001 - that row's own settings; the others are fine
                log.exception("sampling failed for one row")
                row.fail(generation_failed(exc))
        return tokens
