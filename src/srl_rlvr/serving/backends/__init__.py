"""Serving backends, registered by name (``backend:`` in serve.yaml / ``--backend``).

* ``hf``: transformers + PEFT in this process; concurrent requests are batched (``hf.py``).
* ``vllm``: launches or proxies a vLLM OpenAI server started with ``--enable-lora`` (``vllm.py``).
* ``openai``: any upstream OpenAI-compatible endpoint, e.g. a big model or a teacher (``openai_upstream.py``).

A backend module registers itself with :func:`register_backend`; modules are imported only when their
name is asked for, so the ``openai`` backend never imports torch.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from srl_rlvr.errors import UserInputError
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
BACKENDS: dict[str, BackendFactory] = {}
_BUILTIN_MODULES = {
    "hf": "srl_rlvr.serving.backends.hf",
    "vllm": "srl_rlvr.serving.backends.vllm",
    "openai": "srl_rlvr.serving.backends.openai_upstream",
}


def register_backend(name: str) -> Callable[[BackendFactory], BackendFactory]:
    def decorator(factory: BackendFactory) -> BackendFactory:
        BACKENDS[name] = factory
        return factory

    return decorator


def backend_names() -> list[str]:
    return sorted({*BACKENDS, *_BUILTIN_MODULES})


def get_backend_factory(name: str) -> BackendFactory:
    if name not in BACKENDS and name in _BUILTIN_MODULES:
        importlib.import_module(_BUILTIN_MODULES[name])
    if name not in BACKENDS:
        close = difflib.get_close_matches(name, backend_names(), n=1, cutoff=0.5)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise UserInputError(f"unknown serving backend '{name}'{hint}; choose from {', '.join(backend_names())}")
    return BACKENDS[name]


def build_backend(settings: ServeSettings) -> Backend:
    """The backend ``settings.backend`` names, constructed but not started (no model loaded yet)."""
    return get_backend_factory(settings.backend)(settings)


__all__ = [
    "BACKENDS", "AdapterInfo", "Backend", "Finished", "GenerationEvent", "Prompt", "SamplingParams", "TextDelta",
    "backend_names", "build_backend", "get_backend_factory", "register_backend",
]
