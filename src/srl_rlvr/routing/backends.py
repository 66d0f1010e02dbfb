"""The backends a route target (a tier's ``backend:`` key) may name, in one :class:`NameTable`.

    srl-rlvr route eval --config configs/route-cpu.yaml --data data/demo/test.jsonl --out out/route_eval

Not the serving backends of :mod:`srl_rlvr.serving.backends` (what ``srl-rlvr serve --backend`` runs): a
route-target backend says how a tier is reached, and the server and the route eval read what it
declares here instead of testing its name:

* ``hf``: a local model (``model`` is required). The route eval runs it in this process
  (:class:`~srl_rlvr.routing.callers.HFCaller`); the server shares its own backend when the tier is the
  served model or a loaded adapter, else starts an hf serving backend for it.
* ``vllm``: the served model (or one of its adapters) of a ``--backend vllm`` server. The route eval
  reads its cached predictions.
* ``openai``: an OpenAI-compatible upstream (serve.yaml's ``openai:`` endpoint). The route eval reads
  its cached predictions.
* ``demo_solver``: the SIMULATED exact solver of the demo task (:mod:`srl_rlvr.data.demo.solver`), which
  answers in process, with no model.

A new backend registers with :func:`register_target_backend`; a taken name is refused, and an unknown
name is answered with the close matches:

    >>> TARGET_BACKENDS.get("demo_solver").in_process is not None
    True
    >>> TARGET_BACKENDS.get("vlm")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    srl_rlvr.errors.UserInputError: unknown route-target backend 'vlm' (did you mean 'vllm'?); known ...
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from srl_rlvr.core.names import NameTable
from srl_rlvr.routing.callers import HFCaller
from srl_rlvr.routing.calls import TierCaller


@dataclass(frozen=True)
class TargetBackend:
    """What the code that reaches a tier needs to know about the tier's backend."""

    name: str
    summary: str  # one line, for docs and error messages
    requires_model: bool = False  # a tier must set ``model`` (checked when the route config loads)
    # Answers in this process with no model (the demo solver): a factory of its ``call_tier``, used by the
    # route eval and by the server alike.
    in_process: Callable[[], TierCaller] | None = None
    # The route eval runs the tier's model in this process: factory(the route config's ``eval`` section)
    # -> ``call_tier``. Neither this nor ``in_process``: a served endpoint whose cached predictions it reads.
    local_model: Callable[[Any], TierCaller] | None = None
    # The server: a tier naming the served model (or one of its loaded adapters) is called through the
    # server's own backend.
    shares_served_model: bool = False
    # The server: the serving backend (its name in srl_rlvr.serving.backends) started for a tier it does
    # not serve itself; None: the tier must be the served model (or answers in process).
    serving_backend: str | None = None
    # The server: an OpenAI-compatible upstream from serve.yaml's ``openai:`` section; chat goes there as
    # messages (so no ``<think>`` prefill), and the tier's model defaults to ``openai.model``.
    upstream: bool = False

    @property
    def runs_in_route_eval(self) -> bool:
        """Whether ``srl-rlvr route eval`` can call the tier here (else it needs cached predictions)."""
        return self.in_process is not None or self.local_model is not None

    def route_eval_caller(self, eval_settings: Any) -> TierCaller | None:
        """The ``call_tier`` the route eval uses for this backend, or None when it cannot call it here."""
        if self.in_process is not None:
            return self.in_process()
        if self.local_model is not None:
            return self.local_model(eval_settings)
        return None


TARGET_BACKENDS: NameTable[TargetBackend] = NameTable("route-target backend")


def register_target_backend(backend: TargetBackend) -> TargetBackend:
    """Add ``backend`` to :data:`TARGET_BACKENDS` under its name (a taken name raises ValueError)."""
    return TARGET_BACKENDS.add(backend.name, backend)


def _hf_caller(eval_settings: Any) -> TierCaller:
    ev = eval_settings  # HFCaller imports torch only when it first loads a model
    return HFCaller(max_new_tokens=ev.max_new_tokens, batch_size=ev.batch_size, temperature=ev.temperature,
                    bf16=ev.bf16, seed=ev.seed)


register_target_backend(TargetBackend(
    "hf", "a local Hugging Face model or LoRA adapter folder", requires_model=True, local_model=_hf_caller,
    shares_served_model=True, serving_backend="hf"))
register_target_backend(TargetBackend(
    "vllm", "the served model (or an adapter) of a --backend vllm server", shares_served_model=True))
register_target_backend(TargetBackend(
    "openai", "an OpenAI-compatible upstream (serve.yaml's openai: endpoint)", serving_backend="openai",
    upstream=True))


__all__ = ["TARGET_BACKENDS", "TargetBackend", "register_target_backend"]


class DemoSolverCaller:
    """``call_tier`` for ``backend: demo_solver`` tiers: ``n`` copies of the (deterministic) solution."""

    def __call__(self, tier: Any, prompt: str, n: int) -> list[str]:
        from srl_rlvr.data.demo.solver import solve_demo_completion

        return [solve_demo_completion(prompt)] * n

    def batch(self, tier: Any, prompts: Sequence[str], n: int) -> list[list[str]]:
        return [self(tier, p, n) for p in prompts]


register_target_backend(TargetBackend(
    "demo_solver", "the SIMULATED exact solver of the demo task (answers in process, no model)",
    in_process=DemoSolverCaller))
