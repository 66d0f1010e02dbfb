"""Faster rollouts for GRPO on transformers (no vLLM): one prompt prefill per group, under autocast.

TRL's plain path left-pads the G copies of every prompt and prefills each copy; on a CPU the prefill
of SRL prompts (problem + earlier steps, ~150 tokens) costs more than decoding the short step. Here the
unique prompts are prefilled once, the KV cache is repeated G times, and sampling continues from it.
Outputs are sampled from the same distribution as TRL's path (a test checks greedy equality).
"""

from __future__ import annotations

import contextlib

import torch
from transformers import DynamicCache
from trl.models import unwrap_model_for_generation
from trl.trainer.utils import pad


def dedupe_prompts(prompt_ids: list[list[int]]) -> tuple[list[list[int]], list[int]]:
    """Unique prompts in first-seen order, and for every row the index of its unique prompt.

    >>> dedupe_prompts([[1, 2], [1, 2], [3], [1, 2]])
    ([[1, 2], [3]], [0, 0, 1, 0])
    """
    index: dict[tuple[int, ...], int] = {}
    unique: list[list[int]] = []
    rows = []
    for ids in prompt_ids:
        key = tuple(ids)
        if key not in index:
            index[key] = len(unique)
            unique.append(list(ids))
        rows.append(index[key])
    return unique, rows


def left_pad(prompt_ids: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    tensors = [torch.tensor(ids) for ids in prompt_ids]
    ids = pad(tensors, padding_value=pad_id, padding_side="left")
    mask = pad([torch.ones_like(t) for t in tensors], padding_value=0, padding_side="left")
    return ids, mask


@torch.no_grad()
def generate_shared_prefix(model, prompt_ids: list[list[int]], generation_config, pad_id: int, autocast=None) -> torch.Tensor:
    """Sample one completion per row of ``prompt_ids``; rows sharing a prompt share its prefill.

    Returns the generated ids (rows × new tokens), padded with ``pad_id`` after EOS like ``generate``.
    """
    unique, rows = dedupe_prompts(prompt_ids)
    ids, mask = left_pad(unique, pad_id)
    device = next(model.parameters()).device
    ids, mask = ids.to(device), mask.to(device)
    row_index = torch.tensor(rows, device=device)
    ctx = autocast if autocast is not None else contextlib.nullcontext()
    with ctx:
        cache = DynamicCache(config=model.config)
        if ids.size(1) > 1:
            # prefill all but the last prompt token; generate() feeds that one and samples from there
            prefix_mask = mask[:, :-1]
            position_ids = (prefix_mask.long().cumsum(-1) - 1).masked_fill(prefix_mask == 0, 0)
            model(input_ids=ids[:, :-1], attention_mask=prefix_mask, position_ids=position_ids,
                  cache=cache, use_cache=True, logits_to_keep=1)
            cache.batch_select_indices(row_index)
        out = model.generate(input_ids=ids.index_select(0, row_index), attention_mask=mask.index_select(0, row_index),
                             cache=cache, generation_config=generation_config)
    return out[:, ids.size(1):]


class FastGenerationMixin:
    """Mix into a GRPOTrainer subclass; active when ``args.shared_prefix_generation`` and the plain
    transformers path (no vLLM, no tools, text only) would run."""

    def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
        plain = not (self.use_vllm or self.use_transformers_continuous_batching or images or multimodal_fields or self.tools)
        if not (plain and self.args.shared_prefix_generation):
            return super()._generate_single_turn(prompt_ids, images, multimodal_fields, num_generations, has_tool_images)
        with (
            unwrap_model_for_generation(
                self.model_wrapped,
                self.accelerator,
                gather_deepspeed3_params=self.args.ds3_gather_for_generation,
                generation_kwargs=self.generation_kwargs,
                gradient_checkpointing_kwargs=self.args.gradient_checkpointing_kwargs,
            ) as unwrapped_model,
            self._dist.summon_full_params(self.model_wrapped, recurse=False),
        ):
            completion_ids = generate_shared_prefix(
                unwrapped_model, prompt_ids, self.generation_config, self._tokenizer.pad_token_id,
                autocast=self.accelerator.autocast(),
            )
        # keep everything up to and including the first EOS, as TRL does
        eos = torch.tensor(self.eos_token_ids, device=completion_ids.device)
        out = []
        for row in completion_ids.cpu():
            hits = torch.isin(row, eos.cpu()).nonzero()
            out.append(row[: int(hits[0]) + 1].tolist() if len(hits) else row.tolist())
        return out, None
