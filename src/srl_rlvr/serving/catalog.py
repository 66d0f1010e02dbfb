"""Model names → where a request goes. The one place routes resolve the ``model`` field.

A name is the base model's served name or a loaded LoRA adapter's name (a :class:`Target`). *Virtual*
names are added through :meth:`ModelCatalog.add_virtual`: a :class:`VirtualModel` picks a concrete target
per request and may add response headers (the router and the cascade: ``serving/routed_models.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from srl_rlvr.errors import UserInputError
from srl_rlvr.serving.backends.base import AdapterInfo, Backend
from srl_rlvr.serving.errors import APIError, model_not_found
from srl_rlvr.serving.settings import ServeSettings
from srl_rlvr.serving.think_format import ThinkFormat, resolve_think_format


@dataclass(frozen=True)
class Target:
    """A concrete model to generate with: a backend, and an adapter on it (None: its base model)."""

    name: str  # the name responses report in "model"
    backend: Backend
    adapter: str | None
    think: ThinkFormat

    @property
    def labels(self) -> tuple[str, str]:
        """Metric labels (model_name, lora_name)."""
        return self.backend.served_name, self.adapter or ""


class VirtualModel(Protocol):
    """A model name that stands for a choice among targets (for example a router)."""

    async def select(self, body: Any, catalog: ModelCatalog, api_key: str | None) -> tuple[Target, dict[str, str]]:
        """The target for this request body (``api_key``: the caller's verified key, for budgets), plus headers
        to add to the response."""


class VirtualModelSource(Protocol):
    def resolve(self, name: str) -> VirtualModel | None:
        """The virtual model ``name`` means, or None when it is not one of ours."""

    def cards(self) -> list[dict[str, Any]]:
        """``/v1/models`` entries for the virtual names worth listing."""


class ModelCatalog:
    def __init__(self, settings: ServeSettings, backends: list[Backend]):
        self.settings = settings
        self.backends = list(backends)
        self._think: dict[tuple[int, str | None], ThinkFormat] = {}
        self._virtual: list[VirtualModelSource] = []
        for backend in self.backends:
            self._check_think_settings(backend)

    # --- lifecycle ---------------------------------------------------------------------------------
    async def start(self) -> None:
        for backend in self.backends:
            await backend.start()
            self._think[(id(backend), None)] = self._think_format(backend, backend.model_root)
        for name, path in self.settings.lora_adapters.items():
            await self.load_adapter(name, path)

    async def close(self) -> None:
        for backend in reversed(self.backends):
            await backend.close()

    def add_backend(self, backend: Backend) -> None:
        """Another backend whose names become servable (started by :meth:`start`, so add it first)."""
        self._check_think_settings(backend)
        self.backends.append(backend)

    def add_virtual(self, source: VirtualModelSource) -> None:
        self._virtual.append(source)

    async def replace_backend(self, old: Backend, new: Backend, grace_s: float = 1.0, drain_s: float = 600.0) -> None:
        """Serve ``new`` where ``old`` served, with no failed request: start ``new`` (and the adapters ``old``
        had) while ``old`` still answers, swap in one step on the event loop, then close ``old`` once what it
        started is finished (``grace_s`` covers a request that picked ``old`` but has not queued yet)."""
        import asyncio

        self._check_think_settings(new)
        await new.start()
        self._think[(id(new), None)] = self._think_format(new, new.model_root)
        for name, info in old.adapters().items():
            await new.load_adapter(name, info.path)
            self._think[(id(new), name)] = self._think_format(new, info.path)
        self.backends[self.backends.index(old)] = new  # from here on every new request resolves to ``new``
        await asyncio.sleep(grace_s)
        waited = 0.0
        while any(r or w for r, w in old.load_snapshot().values()) and waited < drain_s:
            await asyncio.sleep(0.05)
            waited += 0.05
        await old.close()
        for key in [k for k in self._think if k[0] == id(old)]:
            del self._think[key]

    # --- resolution --------------------------------------------------------------------------------
    def target(self, name: str) -> Target:
        for backend in self.backends:
            if name == backend.served_name:
                return Target(name, backend, None, self._think[(id(backend), None)])
            if name in backend.adapters():
                think = self._think.get((id(backend), name))
                if think is not None:  # None: mid-load, not servable yet
                    return Target(name, backend, name, think)
        raise model_not_found(name)

    async def select(self, name: str, body: Any, api_key: str | None = None) -> tuple[Target, dict[str, str]]:
        for source in self._virtual:
            virtual = source.resolve(name)
            if virtual is not None:
                return await virtual.select(body, self, api_key)
        return self.target(name), {}

    def names(self) -> set[str]:
        out = set()
        for backend in self.backends:
            out.add(backend.served_name)
            out.update(backend.adapters())
        return out

    def cards(self) -> list[dict[str, Any]]:
        cards = []
        for backend in self.backends:
            card = _card(backend.served_name, backend.created, backend.model_root, None, backend.max_model_len)
            if getattr(backend, "registry", None):  # served from the model registry: name, version, alias
                card["registry"] = dict(backend.registry)
            cards.append(card)
            for info in backend.adapters().values():
                cards.append(_card(info.name, info.created, info.path, backend.served_name, backend.max_model_len))
        for source in self._virtual:
            cards.extend(source.cards())
        return cards

    # --- adapters ----------------------------------------------------------------------------------
    async def load_adapter(self, name: str, path: str) -> AdapterInfo:
        if not name or name != name.strip():
            raise APIError(400, "lora_name must be a non-empty name without surrounding spaces", param="lora_name")
        holder = next((b for b in self.backends if name in b.adapters()), None)
        if holder is not None:  # the same name again: swap in place (requests in flight keep the old weights)
            try:
                think = self._think_format(holder, path)
            except UserInputError as exc:
                raise APIError(400, str(exc), "invalid_lora_path", "lora_path") from None
            info = await holder.replace_adapter(name, path)
            self._think[(id(holder), name)] = think
            return info
        if name in self.names() or any(s.resolve(name) for s in self._virtual):
            raise APIError(400, f"'{name}' is already a served model name; pick another lora_name.", "name_taken",
                           "lora_name")
        backend = self.backends[0]
        try:
            think = self._think_format(backend, path)
        except UserInputError as exc:
            raise APIError(400, str(exc), "invalid_lora_path", "lora_path") from None
        self._think[(id(backend), name)] = think
        try:
            return await backend.load_adapter(name, path)
        except BaseException:
            if name not in backend.adapters():
                self._think.pop((id(backend), name), None)
            raise

    async def unload_adapter(self, name: str) -> None:
        for backend in self.backends:
            if name in backend.adapters():
                await backend.unload_adapter(name)
                self._think.pop((id(backend), name), None)
                return
        raise APIError(404, f"The lora adapter '{name}' cannot be found.", "model_not_found", "lora_name")

    # --- load --------------------------------------------------------------------------------------
    def load_snapshot(self) -> dict[tuple[str, str], tuple[int, int]]:
        out: dict[tuple[str, str], tuple[int, int]] = {}
        for backend in self.backends:
            out[(backend.served_name, "")] = (0, 0)
            for adapter, counts in backend.load_snapshot().items():
                out[(backend.served_name, adapter or "")] = counts
        return out

    def waiting(self) -> int:
        return sum(waiting for _, waiting in self.load_snapshot().values())

    # --- think format ------------------------------------------------------------------------------
    def _check_think_settings(self, backend: Backend) -> None:
        if self.settings.think.prefill in (True, "empty") and not backend.renders_prompts:
            raise UserInputError(f"think.prefill: the '{backend.name}' backend sends chat messages upstream, so it "
                                 "cannot prefill '<think>' (use hf or vllm, or prefill: auto)")

    def _think_format(self, backend: Backend, folder: str) -> ThinkFormat:
        think = self.settings.think
        fmt = resolve_think_format(folder, think.prefill, think.split)
        if fmt.prefill and not backend.renders_prompts:  # "auto" found a manifest, but we cannot prefill here
            fmt = ThinkFormat(prefill=False, split=fmt.split)
        return fmt


def _card(name: str, created: int, root: str, parent: str | None, max_model_len: int | None) -> dict[str, Any]:
    card = {"id": name, "object": "model", "created": created, "owned_by": "srl-rlvr", "root": root, "parent": parent}
    if max_model_len is not None:
        card["max_model_len"] = max_model_len
    return card
