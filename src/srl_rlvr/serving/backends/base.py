"""What every serving backend provides: streamed generation for a base model or one of its LoRA adapters.

Routes never talk to a model directly; they ask the catalog (``serving/catalog.py``) which backend and
adapter a model name means and call :meth:`Backend.generate`, which yields :class:`TextDelta` events and
ends with one :class:`Finished`.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from srl_rlvr.serving.errors import APIError

if TYPE_CHECKING:
    from srl_rlvr.serving.settings import ServeSettings


GREEDY_BELOW = 1e-5


@dataclass(frozen=True)
class SamplingParams:
    max_tokens: int
    temperature: float = 1.0  # 0 means greedy
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None

    @property
    def greedy(self) -> bool:
        # As vLLM: below 1e-5 it is greedy (logits / 1e-40 overflow float32 and sampling would fail).
        return self.temperature < GREEDY_BELOW


@dataclass(frozen=True)
class Prompt:
    """A rendered prompt (``text`` and its ``token_ids``, when the backend has a local tokenizer) or chat
    ``messages`` for a backend whose upstream applies its own chat template."""

    text: str | None = None
    token_ids: tuple[int, ...] | None = None
    messages: tuple[dict[str, Any], ...] | None = None


@dataclass(frozen=True)
class TextDelta:
    text: str
    reasoning: bool = False  # already separated as reasoning by the upstream (its reasoning_content)


@dataclass(frozen=True)
class Finished:
    finish_reason: str  # "stop" | "length"
    prompt_tokens: int
    completion_tokens: int


GenerationEvent = TextDelta | Finished


@dataclass(frozen=True)
class AdapterInfo:
    name: str
    path: str
    created: int = field(default_factory=lambda: int(time.time()))


class Backend(ABC):
    """One base model and the LoRA adapters loaded onto it."""

    name: str = "?"  # registry name

    def __init__(self, settings: ServeSettings):
        self.settings = settings
        self.created = int(time.time())
        self._adapters: dict[str, AdapterInfo] = {}

    @property
    def served_name(self) -> str:
        return self.settings.base_name

    # True: chat prompts are rendered here with ``tokenizer`` (the SRL format and its <think> prefill need
    # this); False: they go upstream as chat messages.
    renders_prompts: bool = False
    # True: the model runs in (or for) this server (hf in process, vllm beside it), so a route tier naming
    # that model or one of its adapters is answered by this backend instead of starting another.
    serves_local_model: bool = False
    # The local tokenizer, when the backend renders chat prompts itself (the SRL format needs this); None
    # when prompts go upstream as chat messages.
    tokenizer: Any = None
    # Context length in tokens, when known (prompt + max_tokens beyond it is a 400).
    max_model_len: int | None = None
    # False: the events replay an answer generated elsewhere (a routed request), whose generation was
    # already counted in the metrics where it ran; counting the replay too would count it twice.
    metered: bool = True

    @property
    def model_root(self) -> str:
        """Where the base model lives (a folder, for the stage manifest); shown as ``root`` in /v1/models."""
        return self.settings.model

    # start/close are optional lifecycle hooks, not abstract: a backend with nothing to load or release
    # (test fakes, replaying backends) keeps these no-ops.
    async def start(self) -> None:  # noqa: B027
        """Load or connect; called once from the app's lifespan."""

    async def close(self) -> None:  # noqa: B027
        """Release what ``start`` took."""

    @abstractmethod
    def generate(self, adapter: str | None, prompt: Prompt, params: SamplingParams) -> AsyncIterator[GenerationEvent]:
        """Stream one completion; ``adapter`` None means the base model. Closing the iterator early cancels it."""

    def adapters(self) -> dict[str, AdapterInfo]:
        return dict(self._adapters)

    async def load_adapter(self, name: str, path: str) -> AdapterInfo:
        raise APIError(400, f"the '{self.name}' backend cannot load LoRA adapters", "adapters_not_supported")

    async def unload_adapter(self, name: str) -> None:
        raise APIError(400, f"the '{self.name}' backend cannot unload LoRA adapters", "adapters_not_supported")

    async def replace_adapter(self, name: str, path: str) -> AdapterInfo:
        """Swap adapter ``name`` for the one at ``path`` with no moment in which ``name`` is missing."""
        raise APIError(400, f"the '{self.name}' backend cannot replace the loaded adapter '{name}' in place; load "
                            "the new one under another name and move clients to it", "adapter_exists", "lora_name")

    def load_snapshot(self) -> dict[str | None, tuple[int, int]]:
        """(running, waiting) requests per adapter (None: the base model)."""
        return {}
