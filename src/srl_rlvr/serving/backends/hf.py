"""The ``hf`` backend: transformers + PEFT in this process, with concurrent requests batched together.

One worker thread owns the model. Requests queue up; the worker takes the waiting ones that can share a
``generate`` call (same sampling settings; any mix of base and LoRA adapters, through peft's
``adapter_names=`` mixed-batch argument) and runs them as one left-padded batch. A stopping criterion
sees every new token of every row: it streams each row's text out as it grows and ends each row at its
own ``max_tokens``, eos or stop string, so a short request is answered as soon as its own row is done.

Prompts that share a prefix (the system prompt and problem layout every SRL prompt starts with) have that
prefix prefilled once: its KV cache is kept (per adapter, least recently used dropped) and repeated over
the batch's rows, which then hold ``[prefix | padding | own suffix]``; the attention mask and the position
ids computed from it make each row exactly what it would be unpadded. On a CPU, prefill of ~170-token
prompts costs as much as decoding 50 tokens, so this roughly halves the work of a batch.

LoRA load/unload run on the same worker thread, between batches and in arrival order, so a swap never
touches a forward pass in flight: requests on other adapters or the base model are unaffected.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import copy
import logging
import re
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from srl_rlvr.serving.backends import register_backend
from srl_rlvr.serving.backends.base import (
    AdapterInfo,
    Backend,
    Finished,
    GenerationEvent,
    Prompt,
    SamplingParams,
    TextDelta,
)
from srl_rlvr.serving.errors import APIError, model_not_found

log = logging.getLogger("srl_rlvr.serving")
BASE_ADAPTER = "__base__"  # peft's name for "no adapter" in a mixed batch
_LORA_KEY = re.compile(r"^base_model\.model\.(.+)\.lora_([AB])\.weight$")


@dataclass(eq=False)
class _Request:
    adapter: str | None
    token_ids: list[int]
    params: SamplingParams
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)
    queued_at: float = field(default_factory=time.monotonic)
    # generation state, touched only by the worker thread
    tokens: list[int] = field(default_factory=list)
    sent_chars: int = 0
    done: bool = False

    def send(self, event: GenerationEvent | BaseException) -> None:
        with contextlib.suppress(RuntimeError):  # the event loop is gone (shutdown): nobody is listening
            self.loop.call_soon_threadsafe(self.events.put_nowait, event)

    def fail(self, error: BaseException) -> None:
        if not self.done:
            self.done = True
            self.send(error)


@dataclass(eq=False)
class _Command:
    """Work that must not overlap a forward pass (adapter load/unload)."""

    run: Callable[[], Any]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future


class _RowController:
    """A transformers stopping criterion used as a per-step hook: emits each row's new text, ends rows."""

    def __init__(self, rows: list[_Request], tokenizer: Any, eos_ids: set[int]):
        self.rows, self.tokenizer, self.eos_ids = rows, tokenizer, eos_ids

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        for row, token in zip(self.rows, input_ids[:, -1].tolist()):
            if row.done:
                continue
            if row.cancelled.is_set():  # the client went away: free the row
                row.done = True
            elif token in self.eos_ids:
                self.finish(row, "stop")
            else:
                row.tokens.append(token)
                self.advance(row)
                if not row.done and len(row.tokens) >= row.params.max_tokens:
                    self.finish(row, "length")
        return torch.tensor([row.done for row in self.rows], dtype=torch.bool, device=input_ids.device)

    def _text(self, row: _Request) -> str:
        # No clean-up of spaces: byte-level decoding is then prefix-stable, so deltas add up to the text.
        return self.tokenizer.decode(row.tokens, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def advance(self, row: _Request) -> None:
        text = self._text(row)
        hold = 0
        if row.params.stop:
            hits = [i for s in row.params.stop if (i := text.find(s, max(0, row.sent_chars - len(s)))) >= 0]
            if hits:
                self._send_until(row, text, min(hits))
                self._end(row, "stop")
                return
            hold = max(_partial_suffix(text, s) for s in row.params.stop)  # maybe the start of a stop string
        end = len(text) - hold
        while end > row.sent_chars and text[end - 1] == "\ufffd":  # half of a multi-byte character
            end -= 1
        self._send_until(row, text, end)

    def finish(self, row: _Request, reason: str) -> None:
        text = self._text(row)
        self._send_until(row, text, len(text))
        self._end(row, reason)

    @staticmethod
    def _send_until(row: _Request, text: str, end: int) -> None:
        if end > row.sent_chars:
            row.send(TextDelta(text[row.sent_chars:end]))
            row.sent_chars = end

    @staticmethod
    def _end(row: _Request, reason: str) -> None:
        row.done = True
        row.send(Finished(reason, len(row.token_ids), len(row.tokens)))


def _partial_suffix(text: str, stop: str) -> int:
    for n in range(min(len(stop) - 1, len(text)), 0, -1):
        if text.endswith(stop[:n]):
            return n
    return 0


class HFBackend(Backend):
    name = "hf"
    serves_local_model = True
    renders_prompts = True

    def __init__(self, settings: Any):
        super().__init__(settings)
        self.hf = settings.hf
        self._model: Any = None  # the plain transformers model
        self._peft: Any = None  # the PeftModel wrapping it while any adapter is loaded
        self._decode_tokenizer: Any = None  # the worker's own copy (fast tokenizers dislike sharing threads)
        self._eos_ids: set[int] = set()
        self._root = settings.model
        self._cond = threading.Condition()
        self._pending: list[_Request | _Command] = []
        self._running: list[_Request] = []
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.batch_sizes: collections.deque[int] = collections.deque(maxlen=10_000)  # rows per generate call
        self.prefix_hits: collections.deque[int] = collections.deque(maxlen=10_000)  # shared tokens per batch
        self._prefix_cache: collections.OrderedDict[tuple[str | None, tuple[int, ...]], Any] = (
            collections.OrderedDict())
        self._last_prompt: dict[str | None, list[int]] = {}
        self._last_batch = (0, 0.0, 0.0)  # rows, seconds it ran, when it ended (monotonic)

    @property
    def model_root(self) -> str:
        return self._root

    # --- lifecycle ---------------------------------------------------------------------------------
    async def start(self) -> None:
        if self._model is None:
            await asyncio.to_thread(self._load_base)
        self._stopping = False
        self._thread = threading.Thread(target=self._worker, name="hf-backend-worker", daemon=True)
        self._thread.start()

    def _load_base(self) -> None:
        from srl_rlvr.models import load_model_and_tokenizer, resolve_model

        model, tokenizer = load_model_and_tokenizer(self.settings.model, dtype=self.hf.dtype, device=self.hf.device)
        if hasattr(model, "merge_and_unload"):  # --model is a LoRA folder: serve it merged, as the base model
            model = model.merge_and_unload()
        self._model = model.eval()
        self._root = resolve_model(self.settings.model)
        self.tokenizer = tokenizer
        self._decode_tokenizer = copy.deepcopy(tokenizer)
        self._eos_ids = {tokenizer.eos_token_id}
        configured = getattr(model.generation_config, "eos_token_id", None)
        self._eos_ids.update(configured if isinstance(configured, list) else [configured])
        self._eos_ids.discard(None)
        self.max_model_len = getattr(model.config, "max_position_embeddings", None)

    async def close(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
            self._thread = None
        with self._cond:
            leftover, self._pending = self._pending, []
        for item in leftover:
            error = APIError(503, "the server is shutting down", "shutting_down")
            if isinstance(item, _Request):
                item.fail(error)
            else:
                item.loop.call_soon_threadsafe(_set_exception, item.future, error)

    # --- requests ----------------------------------------------------------------------------------
    async def generate(self, adapter: str | None, prompt: Prompt,
                       params: SamplingParams) -> AsyncIterator[GenerationEvent]:
        if prompt.token_ids is None:
            raise ValueError("the hf backend needs a rendered prompt (token_ids)")
        if adapter is not None and adapter not in self._adapters:
            raise model_not_found(adapter)
        request = _Request(adapter, list(prompt.token_ids), params, asyncio.get_running_loop())
        with self._cond:
            self._pending.append(request)
            self._cond.notify()
        try:
            while True:
                event = await request.events.get()
                if isinstance(event, BaseException):
                    raise event
                yield event
                if isinstance(event, Finished):
                    return
        finally:
            if not request.done:  # closed early (client disconnected): the worker drops the row
                request.cancelled.set()
                with self._cond:
                    self._cond.notify()

    def load_snapshot(self) -> dict[str | None, tuple[int, int]]:
        with self._cond:
            running = [r.adapter for r in self._running if not r.done]
            waiting = [r.adapter for r in self._pending if isinstance(r, _Request)]
        names = {None, *self._adapters, *running, *waiting}
        return {n: (running.count(n), waiting.count(n)) for n in names}

    # --- adapters ----------------------------------------------------------------------------------
    async def load_adapter(self, name: str, path: str) -> AdapterInfo:
        return await self._on_worker(lambda: self._load_adapter_now(name, path))

    async def unload_adapter(self, name: str) -> None:
        await self._on_worker(lambda: self._unload_adapter_now(name))

    async def replace_adapter(self, name: str, path: str) -> AdapterInfo:
        """One worker command, so a barrier: requests queued before it finish on the old weights, the ones
        after it get the new ones, and none sees ``name`` missing (no unload-then-load window)."""
        return await self._on_worker(lambda: self._replace_adapter_now(name, path))

    async def _on_worker(self, run: Callable[[], Any]) -> Any:
        loop = asyncio.get_running_loop()
        command = _Command(run, loop, loop.create_future())
        with self._cond:
            self._pending.append(command)
            self._cond.notify()
        return await command.future

    def _load_adapter_now(self, name: str, path: str) -> AdapterInfo:
        from peft import PeftConfig, PeftModel

        if name in self._adapters:
            raise APIError(400, f"The lora adapter '{name}' has already been loaded.", "adapter_exists", "lora_name")
        folder = Path(path).expanduser()
        if not (folder / "adapter_config.json").is_file():
            raise APIError(400, f"{path}: not a LoRA adapter folder (no adapter_config.json)", "invalid_lora_path",
                           "lora_path")
        try:
            config = PeftConfig.from_pretrained(str(folder))
        except Exception as exc:  # noqa: BLE001 - any parse failure is the caller's bad folder
            raise APIError(400, f"{path}: unreadable adapter config ({exc})", "invalid_lora_path",
                           "lora_path") from None
        if str(config.peft_type) not in ("LORA", "PeftType.LORA"):
            raise APIError(400, f"{path}: a {config.peft_type} adapter; only LoRA adapters can be served",
                           "invalid_lora_path", "lora_path")
        self._check_weights_fit(folder, path)
        try:
            if self._peft is None:
                self._peft = PeftModel.from_pretrained(self._model, str(folder), adapter_name=name).eval()
            else:
                self._peft.load_adapter(str(folder), adapter_name=name)
                self._peft.eval()
        except Exception as exc:  # noqa: BLE001
            self._discard_partial_adapter(name)
            raise APIError(400, f"{path}: could not load the adapter ({exc})", "invalid_lora_path",
                           "lora_path") from None
        info = AdapterInfo(name=name, path=str(folder))
        self._forget_prefixes(name)  # a name can come back as another adapter
        self._adapters = {**self._adapters, name: info}  # copy-on-write: the event loop reads it unlocked
        return info

    def _replace_adapter_now(self, name: str, path: str) -> AdapterInfo:
        if name not in self._adapters:
            raise APIError(404, f"The lora adapter '{name}' cannot be found.", "model_not_found", "lora_name")
        staged = f"{name}__replacing"
        info = self._load_adapter_now(staged, path)  # every check, and a failed load leaves `name` as it was
        try:
            self._peft.delete_adapter(name)
            self._peft.load_adapter(info.path, adapter_name=name)  # peft cannot rename: load again (small)
            self._peft.eval()
        finally:
            self._peft.delete_adapter(staged)
            self._adapters = {k: v for k, v in self._adapters.items() if k != staged}
            if self._peft.active_adapter not in self._peft.peft_config:
                self._peft.set_adapter(next(iter(self._peft.peft_config)))
        self._forget_prefixes(name)
        self._forget_prefixes(staged)
        replaced = AdapterInfo(name=name, path=info.path)
        self._adapters = {**self._adapters, name: replaced}
        return replaced

    def _check_weights_fit(self, folder: Path, shown: str) -> None:
        """Refuse an adapter for another architecture before it touches the live model."""
        from peft.utils import load_peft_weights

        try:
            weights = load_peft_weights(str(folder), device="cpu")
        except Exception as exc:  # noqa: BLE001
            raise APIError(400, f"{shown}: unreadable adapter weights ({exc})", "invalid_lora_path",
                           "lora_path") from None
        modules = dict(self._model.named_modules())
        for key, tensor in weights.items():
            match = _LORA_KEY.match(key)
            if not match:
                continue
            module = modules.get(match[1])
            if module is None:
                raise APIError(400, f"{shown}: the adapter targets '{match[1]}', which this base model does not have",
                               "adapter_mismatch", "lora_path")
            base = module.get_base_layer() if hasattr(module, "get_base_layer") else module
            want = getattr(base, "in_features" if match[2] == "A" else "out_features", None)
            got = tensor.shape[1] if match[2] == "A" else tensor.shape[0]
            if want is not None and got != want:
                raise APIError(400, f"{shown}: '{key}' has size {got} where the base model's '{match[1]}' has {want}"
                               " (an adapter for another model?)", "adapter_mismatch", "lora_path")

    def _discard_partial_adapter(self, name: str) -> None:
        if self._peft is None:
            return
        if name in self._peft.peft_config:
            if len(self._peft.peft_config) == 1:
                self._model = self._peft.unload()
                self._peft = None
            else:
                self._peft.delete_adapter(name)
                if self._peft.active_adapter not in self._peft.peft_config:
                    self._peft.set_adapter(next(iter(self._peft.peft_config)))

    def _unload_adapter_now(self, name: str) -> None:
        if name not in self._adapters:
            raise APIError(404, f"The lora adapter '{name}' cannot be found.", "model_not_found", "lora_name")
        if len(self._adapters) == 1:  # peft cannot delete its last adapter: unwrap back to the plain model
            self._model = self._peft.unload()
            self._peft = None
        else:
            self._peft.delete_adapter(name)
            if self._peft.active_adapter not in self._peft.peft_config:  # peft may keep pointing at the deleted one
                self._peft.set_adapter(next(iter(self._peft.peft_config)))
        self._adapters = {k: v for k, v in self._adapters.items() if k != name}
        self._forget_prefixes(name)

    def _forget_prefixes(self, adapter: str) -> None:
        for key in [k for k in self._prefix_cache if k[0] == adapter]:
            del self._prefix_cache[key]
        self._last_prompt.pop(adapter, None)

    # --- the worker --------------------------------------------------------------------------------
    def _group_key(self, request: _Request) -> tuple:
        p = request.params
        sampling: tuple = ("greedy",) if p.greedy else ("sample", p.temperature, p.top_p)
        if not p.greedy and p.seed is not None:
            sampling += ("seed", id(request))  # a seeded request runs alone, so its seed alone decides its tokens
        return sampling, (None if self.hf.mixed_adapter_batches else request.adapter)

    def _next_job(self) -> list[_Request] | _Command | None:
        wait_s = self.hf.batch_wait_ms / 1000.0
        with self._cond:
            while True:
                if self._stopping:
                    return None
                self._pending = [r for r in self._pending if not (isinstance(r, _Request) and r.cancelled.is_set())]
                if not self._pending:
                    self._cond.wait()
                    continue
                barrier = next((i for i, r in enumerate(self._pending) if isinstance(r, _Command)), None)
                eligible = self._pending[:barrier]
                if not eligible:
                    return self._pending.pop(0)
                key = self._group_key(eligible[0])
                group = [r for r in eligible if self._group_key(r) == key][: self.hf.max_batch_size]
                if barrier is None and len(group) < self.hf.max_batch_size:
                    left = self._batch_wait_left(len(group), eligible[0].queued_at, wait_s)
                    if left > 0:
                        self._cond.wait(left)  # let concurrent requests join this batch
                        continue
                taken = set(map(id, group))
                self._pending = [r for r in self._pending if id(r) not in taken]
                self._running = group
                return group

    def _batch_wait_left(self, queued: int, oldest: float, wait_s: float) -> float:
        """Seconds more to wait before running ``queued`` requests as a batch.

        A lone request waits ``batch_wait_ms`` for company. Right after a batch of k rows, the clients it
        answered are typically sending their next requests; starting with the first to arrive would split
        them into a batch of 1 and a batch of k-1 (and the split persists), so wait for k of them, up to
        ``refill_wait_fraction`` of that batch's run time.
        """
        now = time.monotonic()
        left = oldest + wait_s - now
        rows, seconds, ended = self._last_batch
        if queued < min(rows, self.hf.max_batch_size):
            left = max(left, ended + self.hf.refill_wait_fraction * seconds - now)
        return left

    def _worker(self) -> None:
        while (job := self._next_job()) is not None:
            if isinstance(job, _Command):
                self._run_command(job)
            else:
                started = time.monotonic()
                try:
                    self._run_batch(job)
                finally:
                    ended = time.monotonic()
                    with self._cond:
                        self._running = []
                        self._last_batch = (len(job), ended - started, ended)

    @staticmethod
    def _run_command(command: _Command) -> None:
        try:
            result = command.run()
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting coroutine
            command.loop.call_soon_threadsafe(_set_exception, command.future, exc)
        else:
            command.loop.call_soon_threadsafe(_set_result, command.future, result)

    def _run_batch(self, rows: list[_Request]) -> None:
        import torch
        from transformers import GenerationConfig, StoppingCriteriaList

        for row in rows:
            if row.adapter is not None and row.adapter not in self._adapters:  # unloaded while it waited
                row.fail(model_not_found(row.adapter))
        rows = [r for r in rows if not r.done]
        if not rows:
            return
        self.batch_sizes.append(len(rows))
        pad = self.tokenizer.pad_token_id
        device = next(self._model.parameters()).device
        params = rows[0].params
        try:
            shared, prefix_cache = self._shared_prefix(rows) if self.hf.prefix_cache else (0, None)
        except Exception as exc:  # noqa: BLE001 - reported to each waiting client, the worker lives on
            log.exception("prefix prefill failed")
            for row in rows:
                row.fail(APIError(500, f"generation failed: {type(exc).__name__}: {exc}", "generation_failed"))
            return
        self.prefix_hits.append(shared)
        # Each row: [shared prefix | padding | its own tokens]; with no shared prefix that is left padding.
        width = shared + max(len(r.token_ids) - shared for r in rows)
        input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
        attention = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            own = row.token_ids[shared:]
            input_ids[i, :shared] = torch.tensor(row.token_ids[:shared], dtype=torch.long)
            input_ids[i, width - len(own):] = torch.tensor(own, dtype=torch.long)
            attention[i, :shared] = 1
            attention[i, width - len(own):] = 1
        extra_cache = {}
        if prefix_cache is not None:
            cache = copy.deepcopy(prefix_cache)  # generate extends it; the stored one stays as it is
            cache.batch_repeat_interleave(len(rows))
            extra_cache = {"cache": cache}
        config = GenerationConfig(
            max_new_tokens=max(r.params.max_tokens for r in rows), do_sample=not params.greedy, num_beams=1,
            pad_token_id=pad, eos_token_id=sorted(self._eos_ids),
            **({} if params.greedy else {"temperature": params.temperature, "top_p": params.top_p, "top_k": 0}),
        )
        controller = _RowController(rows, self._decode_tokenizer, self._eos_ids)
        try:
            model, extra, scope = self._model_for(rows)
            if not params.greedy and params.seed is not None:
                torch.manual_seed(params.seed)
            with torch.inference_mode(), scope:
                model.generate(input_ids=input_ids.to(device), attention_mask=attention.to(device),
                               generation_config=config, stopping_criteria=StoppingCriteriaList([controller]),
                               **extra, **extra_cache)
        except Exception as exc:  # noqa: BLE001 - reported to each waiting client, the worker lives on
            log.exception("generation failed")
            for row in rows:
                row.fail(APIError(500, f"generation failed: {type(exc).__name__}: {exc}", "generation_failed"))
            return
        for row in rows:  # rows still open ran into max_new_tokens of the whole batch
            if not row.done and not row.cancelled.is_set():
                controller.finish(row, "length")
            row.done = True

    def _shared_prefix(self, rows: list[_Request]) -> tuple[int, Any]:
        """(length, KV cache of batch size 1) of a prompt prefix every row starts with, or (0, None).

        A cached prefix is reused when every row starts with it; otherwise the longest common prefix of the
        rows and of the last prompt seen (so even one-row batches learn the system prompt) is prefilled and
        cached. Only for batches on one adapter: LoRA changes the keys and values.
        """
        import torch
        from transformers import DynamicCache

        adapter = rows[0].adapter
        if any(r.adapter != adapter for r in rows):
            return 0, None
        room = min(len(r.token_ids) for r in rows) - 1  # every row keeps at least one token of its own
        best = None
        for key in self._prefix_cache:
            ids = key[1]
            if key[0] == adapter and len(ids) <= room and (best is None or len(ids) > len(best[1])):
                if all(tuple(r.token_ids[: len(ids)]) == ids for r in rows):
                    best = key
        last = self._last_prompt.get(adapter)
        self._last_prompt[adapter] = rows[0].token_ids
        if best is not None:
            self._prefix_cache.move_to_end(best)
            return len(best[1]), self._prefix_cache[best]
        others = [r.token_ids for r in rows[1:]] + ([last] if last is not None else [])
        shared = room
        for ids in others:
            shared = min(shared, _common_prefix_length(rows[0].token_ids, ids))
        if not others or shared < self.hf.min_prefix_tokens:
            return 0, None
        prefix = tuple(rows[0].token_ids[:shared])
        cache = DynamicCache(config=self._model.config)
        model, extra, scope = self._model_for(rows[:1])
        with torch.inference_mode(), scope:
            model(input_ids=torch.tensor([prefix], device=next(self._model.parameters()).device), cache=cache,
                  use_cache=True, logits_to_keep=1, **extra)
        self._prefix_cache[(adapter, prefix)] = cache
        while len(self._prefix_cache) > self.hf.prefix_cache_entries:
            self._prefix_cache.popitem(last=False)
        return shared, cache

    def _model_for(self, rows: list[_Request]) -> tuple[Any, dict[str, Any], Any]:
        """(model to call, extra generate kwargs, context manager) for a batch's adapters."""
        if self._peft is None:
            return self._model, {}, contextlib.nullcontext()
        names = [r.adapter for r in rows]
        if all(n is None for n in names):
            return self._peft, {}, self._peft.disable_adapter()
        if self.hf.mixed_adapter_batches:
            return self._peft, {"adapter_names": [n or BASE_ADAPTER for n in names]}, contextlib.nullcontext()
        self._peft.set_adapter(names[0])  # one adapter per batch (the group key saw to it)
        return self._peft, {}, contextlib.nullcontext()


def _common_prefix_length(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def _set_result(future: asyncio.Future, value: Any) -> None:
    if not future.done():
        future.set_result(value)


def _set_exception(future: asyncio.Future, exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


@register_backend("hf")
def make_hf_backend(settings: Any) -> HFBackend:
    return HFBackend(settings)
