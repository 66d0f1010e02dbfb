"""``call_tier`` implementations: ``(tier, prompt, n) -> n completions``, plus an optional batched form.

* :class:`HFCaller` runs a local model (``backend: hf``) exactly as ``srl-rlvr eval --mode full`` does:
  the full-problem prompt, the ``<think>`` prefill when the model was trained with it, greedy for one
  completion and temperature sampling for several, through :func:`srl_rlvr.eval.generation.generate`.
* :class:`ReplayCaller` answers from completions recorded earlier (an eval's predictions.jsonl), so
  the route eval and the cascade can be rerun without the models.
* :class:`BackendCaller` dispatches on ``tier.backend``.

A completion is a ``str`` or an object with ``.text`` and ``.num_tokens`` (the eval's ``Generation``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from srl_rlvr.errors import UserInputError
from srl_rlvr.routing.targets import Tier, estimate_tokens


@dataclass(frozen=True)
class Completion:
    text: str
    num_tokens: int


class HFCaller:
    """Local Hugging Face models, loaded once per model; see the module docstring."""

    def __init__(self, max_new_tokens: int = 256, batch_size: int = 16, temperature: float = 1.0,
                 bf16: bool | None = None, seed: int = 0):
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size
        self.temperature = temperature
        self.bf16 = bf16
        self.seed = seed
        self._loaded: dict[str, tuple[Any, Any, bool]] = {}

    def _model(self, tier: Tier) -> tuple[Any, Any, bool]:
        if tier.model is None:
            raise UserInputError(f"tier {tier.name!r}: backend 'hf' needs a 'model'")
        if tier.model not in self._loaded:
            import torch

            from srl_rlvr.eval.harness import model_think_prefill
            from srl_rlvr.models import load_model_and_tokenizer

            model, tokenizer = load_model_and_tokenizer(tier.model,
                                                        device="cuda" if torch.cuda.is_available() else None)
            self._loaded[tier.model] = (model, tokenizer, model_think_prefill(tier.model))
        return self._loaded[tier.model]

    def batch(self, tier: Tier, prompts: Sequence[str], n: int) -> list[list[Completion]]:
        import torch

        from srl_rlvr.eval import generation
        from srl_rlvr.eval.generation import DecodeSettings
        from srl_rlvr.prompts import full_problem_messages

        model, tokenizer, prefill = self._model(tier)
        bf16 = generation.resolve_bf16(self.bf16, next(model.parameters()).device.type)
        settings = DecodeSettings(sample=n > 1, num_samples=n, temperature=self.temperature,
                                  max_new_tokens=self.max_new_tokens, batch_size=max(self.batch_size, n), bf16=bf16,
                                  think_prefill=prefill)
        torch.manual_seed(self.seed)
        outputs = generation.generate(model, tokenizer, [full_problem_messages(p) for p in prompts], settings,
                                      desc=f"{tier.name} n={n}")
        return [[Completion(g.text, g.num_tokens) for g in gens] for gens in outputs]

    def __call__(self, tier: Tier, prompt: str, n: int) -> list[Completion]:
        return self.batch(tier, [prompt], n)[0]


class ReplayCaller:
    """Answers ``(tier, prompt, n)`` with the first ``n`` recorded completions of that tier on that prompt.

    ``recorded[tier name][prompt]`` is a list of completions; asking for more than were recorded, or for
    a prompt never recorded, raises KeyError (a replay must never invent an answer).
    """

    def __init__(self, recorded: Mapping[str, Mapping[str, Sequence[Any]]]):
        self.recorded = recorded

    def __call__(self, tier: Tier, prompt: str, n: int) -> list[Any]:
        outputs = self.recorded[tier.name][prompt]
        if len(outputs) < n:
            raise KeyError(f"tier {tier.name!r}: {n} completions asked, {len(outputs)} recorded for this prompt")
        return list(outputs[:n])

    def batch(self, tier: Tier, prompts: Sequence[str], n: int) -> list[list[Any]]:
        return [self(tier, p, n) for p in prompts]


class BackendCaller:
    """Dispatch to the caller registered for ``tier.backend``."""

    def __init__(self, callers: Mapping[str, Any]):
        self.callers = dict(callers)

    def _for(self, tier: Tier) -> Any:
        caller = self.callers.get(tier.backend)
        if caller is None:
            raise UserInputError(f"tier {tier.name!r}: backend {tier.backend!r} cannot be called here "
                                 f"(callable: {', '.join(sorted(self.callers))}); give the tier cached 'predictions'")
        return caller

    def __call__(self, tier: Tier, prompt: str, n: int) -> list[Any]:
        return list(self._for(tier)(tier, prompt, n))

    def batch(self, tier: Tier, prompts: Sequence[str], n: int) -> list[list[Any]]:
        caller = self._for(tier)
        if hasattr(caller, "batch"):
            return caller.batch(tier, prompts, n)
        return [list(caller(tier, p, n)) for p in prompts]


def as_completion(output: Any) -> Completion:
    if isinstance(output, Completion):
        return output
    if isinstance(output, str):
        return Completion(output, estimate_tokens(output))
    return Completion(str(output.text), int(getattr(output, "num_tokens", None) or estimate_tokens(str(output.text))))
