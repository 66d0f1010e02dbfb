"""Batched chat generation for evaluation: left padding, length-sorted batches, results in input order.

Everything the harness generates goes through :func:`generate`, so tests can replace this one function
with canned completions and check the scoring alone.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from tqdm import tqdm

from srl_rlvr.core.memory import release_free_memory
from srl_rlvr.prompts import render_generation_prompt, with_prefill

Messages = list[dict[str, Any]]


@dataclass(frozen=True)
class Generation:
    """One completion: its text (with the prefilled ``<think>`` put back in front, if any) and how many
    tokens the model generated (final eos not counted)."""

    text: str
    num_tokens: int


@dataclass(frozen=True)
class DecodeSettings:
    """How to decode. ``sample=False`` is greedy; ``sample=True`` is plain temperature sampling
    (top-k and top-p off, as in TRL's GRPO defaults), ``num_samples`` completions per prompt."""

    sample: bool = False
    num_samples: int = 1
    temperature: float = 1.0
    max_new_tokens: int = 256
    batch_size: int = 16  # sequences generated at once (prompts per batch = batch_size // num_samples)
    bf16: bool = False  # autocast matmuls to bfloat16
    think_prefill: bool | str = False  # end the prompt with "<think>" ("empty": "<think></think>"), as trained


def cpu_supports_bf16() -> bool:
    """Whether this CPU has native bfloat16 matmul (AVX512-BF16 / AMX); emulated bf16 would be slower."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch build without oneDNN
        return False


def resolve_bf16(requested: bool | None, device_type: str) -> bool:
    """``None`` means: use bf16 autocast where the hardware runs it natively."""
    if requested is not None:
        return requested
    import torch

    if device_type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device_type == "cpu" and cpu_supports_bf16()


@contextlib.contextmanager
def _autocast(device_type: str, enabled: bool) -> Iterator[None]:
    import torch

    if not enabled:
        yield
        return
    with torch.autocast(device_type=device_type, dtype=torch.bfloat16):
        yield


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    ids = {tokenizer.eos_token_id}
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if isinstance(configured, int):
        ids.add(configured)
    elif configured:
        ids.update(configured)
    return {i for i in ids if i is not None}


def _trim_at_eos(token_ids: list[int], eos_ids: set[int]) -> list[int]:
    for i, token in enumerate(token_ids):
        if token in eos_ids:
            return token_ids[:i]
    return token_ids


def _hf_generation_kwargs(settings: DecodeSettings, pad_token_id: int) -> dict[str, Any]:
    # one row per sample: generate() below repeats each prompt num_samples times (no num_return_sequences)
    kwargs: dict[str, Any] = {"max_new_tokens": settings.max_new_tokens, "pad_token_id": pad_token_id, "num_beams": 1}
    if settings.sample:
        kwargs.update(do_sample=True, temperature=settings.temperature, top_k=0, top_p=1.0)
    else:
        kwargs.update(do_sample=False)
    return kwargs


def generate(
    model: Any, tokenizer: Any, prompts: Sequence[Messages], settings: DecodeSettings, desc: str = "generate"
) -> list[list[Generation]]:
    """Generate ``settings.num_samples`` completions for each chat prompt; ``result[i]`` belongs to ``prompts[i]``.

    Prompts are rendered with the tokenizer's chat template (``add_generation_prompt=True``, plus
    ``<think>`` when ``settings.think_prefill``; see :func:`srl_rlvr.prompts.render_generation_prompt`), sorted by
    token length so each batch pads little, and generated from one shared prefill of the batch's common
    prefix (srl_rlvr.training.generation.generate_shared_prefix). Seeding is the caller's job: this function
    draws from torch's RNG in a fixed order, so the same seed and inputs give the same samples.
    """
    import torch
    from transformers import GenerationConfig

    from srl_rlvr.training.generation import generate_shared_prefix

    if settings.num_samples > 1 and not settings.sample:
        raise ValueError("greedy decoding gives one completion per prompt; set sample=True for num_samples > 1")
    texts = [render_generation_prompt(tokenizer, p, settings.think_prefill) for p in prompts]
    # The chat template already holds the special tokens, so don't let the tokenizer add a BOS again.
    prompt_ids = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    order = sorted(range(len(texts)), key=lambda i: (len(prompt_ids[i]), i))
    per_batch = max(1, settings.batch_size // settings.num_samples)
    device = next(model.parameters()).device
    eos_ids = _eos_ids(model, tokenizer)
    config = GenerationConfig(**_hf_generation_kwargs(settings, tokenizer.pad_token_id), eos_token_id=sorted(eos_ids))
    results: list[list[Generation]] = [[] for _ in texts]

    batches = [order[i : i + per_batch] for i in range(0, len(order), per_batch)]
    for batch in tqdm(batches, desc=desc, unit="batch", disable=not batches):
        # The same decoding as model.generate, but the prompts' common prefix (the system prompt) and each
        # prompt's samples share one prefill (srl_rlvr.training.generation; a test checks equality).
        rows = [prompt_ids[i] for i in batch for _ in range(settings.num_samples)]
        with torch.inference_mode():
            out = generate_shared_prefix(model, rows, config, tokenizer.pad_token_id,
                                         autocast=_autocast(device.type, settings.bf16))
        # the num_samples rows of one prompt are adjacent
        for row, token_ids in enumerate(out.tolist()):
            kept = _trim_at_eos(token_ids, eos_ids)
            text = tokenizer.decode(kept, skip_special_tokens=True)
            text = with_prefill(text, settings.think_prefill)
            results[batch[row // settings.num_samples]].append(Generation(text, len(kept)))
        del out
        release_free_memory()  # the batch's cache and activations are free: give them back (core/memory.py)
    return results
