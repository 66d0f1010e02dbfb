"""Serving backends, registered by name (``backend:`` in serve.yaml / ``--backend``).

* ``hf``: transformers + PEFT in this process; concurrent requests are batched (``hf.py``).
* ``vllm``: launches or proxies a vLLM OpenAI server started with ``--enable-lora`` (``vllm.py``).
* ``openai``: any upstream OpenAI-compatible endpoint, e.g. a big model or a teacher (``openai_upstream.py``).

A backend module registers itself with :func:`register_backend`; modules are imported only when their
name is asked for, so the ``openai`` backend never imports torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from srl_rlvr.core.names import NameTable
from srl_rlvr.serving.backends.base import (
    AdapterInfo,
    Backend,
    Finished,
    GenerationEvent,
    Prompt,
    SamplingParams,
    TextDelta,
)

if TYPE_CHECKING:
    from srl_rlvr.serving.settings import ServeSettings

BackendFactory = Callable[["ServeSettings"], Backend]
_BUILTIN_MODULES = {
    "hf": "srl_rlvr.serving.backends.hf",
    "vllm": "srl_rlvr.serving.backends.vllm",
    "openai": "srl_rlvr.serving.backends.openai_upstream",
}
# Built-in backends register on first use (importing hf.py loads torch); a second registration of a name
# is refused, so a plugin can never silently replace a backend.
BACKENDS: NameTable[BackendFactory] = NameTable(
    "serving backend", lazy={name: (lambda module=module: importlib.import_module(module))
                             for name, module in _BUILTIN_MODULES.items()})


def register_backend(name: str) -> Callable[[BackendFactory], BackendFactory]:
    return BACKENDS.register(name)


def backend_names() -> list[str]:
    return BACKENDS.names()


def get_backend_factory(name: str) -> BackendFactory:
    return BACKENDS.get(name)


def build_backend(settings: ServeSettings) -> Backend:
    """The backend ``settings.backend`` names, constructed but not started (no model loaded yet)."""
    return get_backend_factory(settings.backend)(settings)


__all__ = [
    "BACKENDS", "AdapterInfo", "Backend", "Finished", "GenerationEvent", "Prompt", "SamplingParams", "TextDelta",
    "backend_names", "build_backend", "get_backend_factory", "register_backend",
]
