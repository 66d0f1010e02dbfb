"""Serving a registry alias: ``--model models:/N@champion`` follows the alias as it moves.

    srl-rlvr serve --model models:/demo-math@champion --registry sqlite:////srv/registry.db
    srl-rlvr registry promote demo-math 3        # the server switches to version 3 within registry.poll_s

The server **watches** the registry (every ``registry.poll_s`` seconds, default 5; no admin call to
make). When the alias points at a new version the watcher loads it as a second backend, while the old
one keeps answering; it then swaps the name over in one step on the event loop (new requests go to the
new version), lets the old backend finish what it started, and closes it. No request in flight fails.
Adapters loaded on the old backend are loaded again on the new one. ``/v1/models`` shows the registry
name, version and alias of the base model. ``--lora NAME=models:/N@ALIAS`` resolves an adapter once, at
start (adapters are not watched).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from srl_rlvr.registry.base import parse_ref

log = logging.getLogger(__name__)
SCHEME = "models:/"


@dataclass
class RegistryRef:
    uri: str | None
    name: str
    alias: str
    version: str

    def card(self) -> dict[str, str]:
        return {"name": self.name, "version": self.version, "alias": self.alias}


def _open(uri: str | None):
    from srl_rlvr.registry.lifecycle import Registry

    return Registry.open(uri)


def resolve_model_uri(text: str, uri: str | None) -> tuple[str, RegistryRef]:
    """``models:/N@ALIAS`` (or ``N@VERSION``) → (the version's model folder, what it resolved to)."""
    name, ref = parse_ref(text)
    version = _open(uri).backend.resolve(name, ref)
    return version.source, RegistryRef(uri, name, ref, version.version)


def resolve_settings(settings: Any) -> tuple[Any, RegistryRef | None]:
    """Settings whose ``models:/`` references (base model, adapters) are replaced by folders."""
    uri = settings.registry.uri
    ref = None
    update: dict[str, Any] = {}
    if settings.model.startswith(SCHEME):
        path, ref = resolve_model_uri(settings.model, uri)
        update["model"] = path
        update["served_model_name"] = settings.served_model_name or ref.name
    adapters = {name: resolve_model_uri(path, uri)[0] if path.startswith(SCHEME) else path
                for name, path in settings.lora_adapters.items()}
    if adapters != settings.lora_adapters:
        update["lora_adapters"] = adapters
    return (settings.model_copy(update=update) if update else settings), ref


class AliasWatcher:
    """Polls the alias; on a move, loads the new version and swaps it in without failing a request."""

    def __init__(self, settings: Any, catalog: Any, ref: RegistryRef):
        self.settings, self.catalog, self.ref = settings, catalog, ref
        self.poll_s = settings.registry.poll_s
        self.swaps = 0
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="registry-alias-watcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def _run(self) -> None:
        backend = None
        while True:
            await asyncio.sleep(self.poll_s)
            try:
                if backend is None:
                    backend = await asyncio.to_thread(lambda: _open(self.ref.uri).backend)
                version = await asyncio.to_thread(backend.alias_version, self.ref.name, self.ref.alias)
                if version is not None and version != self.ref.version:
                    await self._swap(await asyncio.to_thread(backend.get, self.ref.name, version))
            except asyncio.CancelledError:
                raise
            except Exception:  # the registry being down must not take the server down; the old version serves
                log.exception("registry watch %s@%s failed; still serving version %s", self.ref.name,
                              self.ref.alias, self.ref.version)

    async def _swap(self, version: Any) -> None:
        from srl_rlvr.serving.backends import build_backend

        old = self.catalog.backends[0]
        new_settings = self.settings.model_copy(update={"model": version.source})
        new = build_backend(new_settings)
        new.registry = RegistryRef(self.ref.uri, self.ref.name, self.ref.alias, version.version).card()
        log.info("registry: %s@%s moved %s -> %s; loading %s", self.ref.name, self.ref.alias, self.ref.version,
                 version.version, version.source)
        await self.catalog.replace_backend(old, new)
        self.ref.version = version.version
        self.swaps += 1
        log.info("registry: now serving %s version %s", self.ref.name, version.version)
