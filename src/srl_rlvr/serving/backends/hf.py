"""The ``hf`` backend: transformers + PEFT in this process, with concurrent requests batched together.

One worker thread owns the model. Requests queue up and a scheduler turns them into forward passes:

* ``continuous`` (the default, ``hf_continuous.py``): requests join the running batch between decode
  steps and leave it when they end, so a short request is not held up by a long one;
* ``static`` (``hf_static.py``): the waiting requests that can share a ``generate`` call run as one batch
  until its longest row ends. Kept for comparison (``bench/serve_load.py --scenario long-short``).

Either way any mix of base and LoRA adapters shares a batch (peft's ``adapter_names=``), and each row ends
at its own ``max_tokens``, eos or stop string.

Prompts that share a prefix (the system prompt and problem layout every SRL prompt starts with) have that
prefix prefilled once: its KV cache is kept (per adapter, least recently used dropped) and repeated over
the batch's rows, which then hold ``[prefix | padding | own suffix]``; the attention mask and the position
ids computed from it make each row exactly what it would be unpadded. On a CPU, prefill of ~170-token
prompts costs as much as decoding 50 tokens, so this roughly halves the work of a batch.

LoRA load/unload/replace run on the same worker thread, between forward passes and in arrival order, so
a swap never touches a forward pass in flight: requests on other adapters or the base model are unaffected.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import copy
import logging
import re
import threading
from collections.abc import AsyncIterator, Callable
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
)
from srl_rlvr.serving.backends.hf_continuous import ContinuousScheduler
from srl_rlvr.serving.backends.hf_rows import (
    Command,
    Request,
    common_prefix_length,
    generation_failed,
    set_exception,
)
from srl_rlvr.serving.backends.hf_static import StaticScheduler
from srl_rlvr.serving.errors import APIError, model_not_found

log = logging.getLogger("srl_rlvr.serving")
BASE_ADAPTER = "__base__"  # peft's name for "no adapter" in a mixed batch
_STAGING_SUFFIX = "__replacing"  # the name an in-place replacement is loaded under first
_LORA_KEY = re.compile(r"^base_model\.model\.(.+)\.lora_([AB])\.weight$")


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
        self._pending: list[Request | Command] = []
        self._running: list[Request] = []
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.batch_sizes: collections.deque[int] = collections.deque(maxlen=10_000)  # rows per prefill (batch start)
        self.prefix_hits: collections.deque[int] = collections.deque(maxlen=10_000)  # shared tokens per batch
        self._prefix_cache: collections.OrderedDict[tuple[str | None, tuple[int, ...]], Any] = (
            collections.OrderedDict())
        self._last_prompt: dict[str | None, list[int]] = {}
        self.scheduler = (ContinuousScheduler if self.hf.scheduler == "continuous" else StaticScheduler)(self)

    @property
    def model_root(self) -> str:
        return self._root

    # --- lifecycle ---------------------------------------------------------------------------------
    async def start(self) -> None:
        if self._model is None:
            await asyncio.to_thread(self._load_base)
        if isinstance(self.scheduler, ContinuousScheduler):
            self.scheduler.check_model(self._model)
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
            if isinstance(item, Request):
                item.fail(error)
            else:
                item.loop.call_soon_threadsafe(set_exception, item.future, error)

    # --- requests ----------------------------------------------------------------------------------
    async def generate(self, adapter: str | None, prompt: Prompt,
                       params: SamplingParams) -> AsyncIterator[GenerationEvent]:
        if prompt.token_ids is None:
            raise ValueError("the hf backend needs a rendered prompt (token_ids)")
        if adapter is not None and adapter not in self._adapters:
            raise model_not_found(adapter)
        request = Request(adapter, list(prompt.token_ids), params, asyncio.get_running_loop())
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
            waiting = [r.adapter for r in self._pending if isinstance(r, Request)]
        names = {None, *self._adapters, *running, *waiting}
        return {n: (running.count(n), waiting.count(n)) for n in names}

    # --- adapters ----------------------------------------------------------------------------------
    async def load_adapter(self, name: str, path: str) -> AdapterInfo:
        _check_adapter_name(name)
        return await self._on_worker(lambda: self._load_adapter_now(name, path))

    async def unload_adapter(self, name: str) -> None:
        await self._on_worker(lambda: self._unload_adapter_now(name), touches=name)

    async def replace_adapter(self, name: str, path: str) -> AdapterInfo:
        """One worker command, so a barrier: requests queued before it finish on the old weights, the ones
        after it get the new ones, and none sees ``name`` missing (no unload-then-load window)."""
        _check_adapter_name(name)
        return await self._on_worker(lambda: self._replace_adapter_now(name, path), touches=name)

    async def _on_worker(self, run: Callable[[], Any], touches: str | None = None) -> Any:
        loop = asyncio.get_running_loop()
        command = Command(run, loop, loop.create_future(), touches)
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
        staged = f"{name}{_STAGING_SUFFIX}"
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
    def _worker(self) -> None:
        # The scheduler handles a failed forward pass itself; this catches a bug in the scheduler, so that
        # it costs the requests it held a 500 instead of leaving every later request waiting forever.
        while True:
            try:
                self.scheduler.run()
                return
            except Exception as exc:  # noqa: BLE001
                log.exception("the hf scheduler failed; failing its requests and starting it again")
                error = generation_failed(exc)
                with self._cond:
                    held, self._running = self._running, []
                for row in held:
                    row.fail(error)
                self.scheduler = type(self.scheduler)(self)

    def start_rows(self, rows: list[Request]) -> list[Request]:
        """The rows of a new batch (or of newcomers to one) that can start; counted in ``batch_sizes``."""
        for row in rows:
            if row.adapter is not None and row.adapter not in self._adapters:  # unloaded while it waited
                row.fail(model_not_found(row.adapter))
        rows = [r for r in rows if not r.done]
        if rows:
            self.batch_sizes.append(len(rows))
        return rows

    def _drop_cancelled_locked(self) -> None:
        self._pending = [r for r in self._pending if not (isinstance(r, Request) and r.cancelled.is_set())]

    @property
    def device(self) -> Any:
        return next(self._model.parameters()).device

    def layout(self, rows: list[Request], shared: int) -> tuple[Any, Any]:
        """(input ids, attention mask) of rows laid out as [shared prefix | padding | own tokens]; with no
        shared prefix that is plain left padding."""
        import torch

        width = shared + max(len(r.token_ids) - shared for r in rows)
        input_ids = torch.full((len(rows), width), self.tokenizer.pad_token_id, dtype=torch.long)
        attention = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            own = row.token_ids[shared:]
            input_ids[i, :shared] = torch.tensor(row.token_ids[:shared], dtype=torch.long)
            input_ids[i, width - len(own):] = torch.tensor(own, dtype=torch.long)
            attention[i, :shared] = 1
            attention[i, width - len(own):] = 1
        return input_ids, attention

    def shared_prefix(self, rows: list[Request]) -> tuple[int, Any]:
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
            shared = min(shared, common_prefix_length(rows[0].token_ids, ids))
        if not others or shared < self.hf.min_prefix_tokens:
            return 0, None
        prefix = tuple(rows[0].token_ids[:shared])
        cache = DynamicCache(config=self._model.config)
        model, extra, scope = self.model_for(rows[:1])
        with torch.inference_mode(), scope:
            model(input_ids=torch.tensor([prefix], device=next(self._model.parameters()).device), cache=cache,
                  use_cache=True, logits_to_keep=1, **extra)
        self._prefix_cache[(adapter, prefix)] = cache
        while len(self._prefix_cache) > self.hf.prefix_cache_entries:
            self._prefix_cache.popitem(last=False)
        return shared, cache

    def model_for(self, rows: list[Request]) -> tuple[Any, dict[str, Any], Any]:
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


def _check_adapter_name(name: str) -> None:
    if name == BASE_ADAPTER or name.endswith(_STAGING_SUFFIX):
        raise APIError(400, f"'{name}' is reserved on the hf backend ('{BASE_ADAPTER}' means the base model in a "
                       f"mixed batch; '*{_STAGING_SUFFIX}' is used while replacing)", "invalid_lora_name", "lora_name")


@register_backend("hf")
def make_hf_backend(settings: Any) -> HFBackend:
    return HFBackend(settings)
