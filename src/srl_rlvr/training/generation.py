"""Faster rollouts for GRPO on transformers (no vLLM): one prompt prefill per group, under autocast.

TRL's plain path left-pads the G copies of every prompt and prefills each copy; on a CPU the prefill
of SRL prompts (problem + earlier steps, ~150 tokens) costs more than decoding the short step. Here the
unique prompts are prefilled once, the KV cache is repeated G times, and sampling continues from it.
Outputs are sampled from the same distribution as TRL's path (a test checks greedy equality).

Second level: the unique prompts of a batch all start with the same chat-template system message (~95 of
~150 tokens for SRL). When they share at least ``MIN_COMMON_PREFIX`` tokens, that common prefix is prefilled
once (batch 1), its cache repeated to the unique prompts, and only each prompt's own remainder is prefilled.
Rows are laid out ``[common prefix | padding | own tokens]``; the padding is masked and the positions are
those of the unpadded prompt (``cumsum(mask) - 1``, which is also how ``generate`` numbers the tokens it
feeds), so every row is computed exactly as if it were alone.
"""

from __future__ import annotations

import contextlib

import torch
from transformers import DynamicCache
from trl.models import unwrap_model_for_generation

from srl_rlvr.models import decode
from srl_rlvr.models.kv_cache import preallocated_cache


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


MIN_COMMON_PREFIX = 16  # below this, one more forward call costs more than the tokens it saves


def common_prefix_length(seqs: list[list[int]]) -> int:
    """Length of the longest prefix all of ``seqs`` start with.

    >>> common_prefix_length([[1, 2, 3], [1, 2, 4, 5], [1, 2]])
    2
    """
    n = min(len(s) for s in seqs)
    first = seqs[0]
    for other in seqs[1:]:
        k = 0
        while k < n and other[k] == first[k]:
            k += 1
        n = k
    return n


def prefix_pad(prompt_ids: list[list[int]], pad_id: int, shared: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows laid out ``[first `shared` tokens | padding | the rest]``, all as wide as the longest row.

    With ``shared=0`` this is left padding.

    >>> prefix_pad([[7, 8, 1], [7, 8, 2, 3]], 0, 2)[0].tolist()
    [[7, 8, 0, 1], [7, 8, 2, 3]]
    """
    width = max(len(p) for p in prompt_ids)
    ids = torch.full((len(prompt_ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompt_ids), width), dtype=torch.long)
    for i, p in enumerate(prompt_ids):
        own = len(p) - shared
        ids[i, :shared] = torch.tensor(p[:shared], dtype=torch.long)
        ids[i, width - own :] = torch.tensor(p[shared:], dtype=torch.long)
        mask[i, :shared] = 1
        mask[i, width - own :] = 1
    return ids, mask


def shared_prompt_prefix(unique: list[list[int]], min_tokens: int = MIN_COMMON_PREFIX) -> int:
    """Tokens of the common prefix worth prefilling once for all ``unique`` prompts (0: not worth it).

    Every prompt keeps at least its last token out of it: ``generate`` feeds that one itself.
    """
    if len(unique) < 2:
        return 0
    shared = min(common_prefix_length(unique), min(len(p) for p in unique) - 1)
    return shared if shared >= min_tokens else 0


@torch.no_grad()
def generate_shared_prefix(model, prompt_ids: list[list[int]], generation_config, pad_id: int, autocast=None,
                           min_common_prefix: int = MIN_COMMON_PREFIX, preallocate: bool = True,
                           drop_ended: bool = True) -> torch.Tensor:
    """Sample one completion per row of ``prompt_ids``; rows sharing a prompt share its prefill, and the
    unique prompts share the prefill of their common prefix when it is ``min_common_prefix`` tokens or more.
    With ``preallocate`` the decode cache has room for every new token from the start
    (:mod:`srl_rlvr.models.kv_cache`), the same values without a copy of the whole cache per token. With
    ``drop_ended`` rows leave the batch when they end (:mod:`srl_rlvr.models.decode`), for every generation
    config that module supports; otherwise ``model.generate`` decodes.

    Returns the generated ids (rows × new tokens), padded with ``pad_id`` after EOS like ``generate``.
    """
    unique, rows = dedupe_prompts(prompt_ids)
    shared = shared_prompt_prefix(unique, min_common_prefix)
    ids, mask = prefix_pad(unique, pad_id, shared)
    device = next(model.parameters()).device
    ids, mask = ids.to(device), mask.to(device)
    row_index = torch.tensor(rows, device=device)
    ctx = autocast if autocast is not None else contextlib.nullcontext()
    with ctx:
        cache = DynamicCache(config=model.config)
        if shared:  # the common prefix once, batch 1, positions 0..shared-1
            model(input_ids=ids[:1, :shared], position_ids=torch.arange(shared, device=device)[None],
                  cache=cache, use_cache=True, logits_to_keep=1)
            cache.batch_repeat_interleave(len(unique))
        if ids.size(1) - 1 > shared:
            # prefill each prompt's own tokens but the last; generate() feeds that one and samples from there
            ctx_mask = mask[:, :-1]
            position_ids = (ctx_mask.long().cumsum(-1) - 1).masked_fill(ctx_mask == 0, 0)
            model(input_ids=ids[:, shared:-1], attention_mask=ctx_mask, position_ids=position_ids[:, shared:],
                  cache=cache, use_cache=True, logits_to_keep=1)
        cache.batch_select_indices(row_index)
        if preallocate and cache.layers and all(layer.is_initialized for layer in cache.layers):
            # decode writes in place instead of torch.cat-ing the whole cache every step
            cache = preallocated_cache([(layer.keys, layer.values) for layer in cache.layers],
                                       room=int(generation_config.max_new_tokens or 0) + 1)
        row_ids, row_mask = ids.index_select(0, row_index), mask.index_select(0, row_index)
        if drop_ended and decode.supports(generation_config):
            return decode.decode(model, cache, row_ids, row_mask, generation_config)
        # generate numbers the tokens it feeds cumsum(attention_mask) - 1: the positions used above, padding skipped
        out = model.generate(input_ids=row_ids, attention_mask=row_mask, cache=cache,
                             generation_config=generation_config)
    return out[:, ids.size(1):]


class FastGenerationMixin:
    """Mix into a GRPOTrainer subclass; active when ``args.shared_prefix_generation`` and the plain
    transformers path (no vLLM, no tools, text only) would run."""

    def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
        plain = not (self.use_vllm or self.use_transformers_continuous_batching or images or multimodal_fields
                     or self.tools)
        if not (plain and self.args.shared_prefix_generation):
            return super()._generate_single_turn(prompt_ids, images, multimodal_fields, num_generations,
                                                 has_tool_images)
        return self._sample_shared_prefix(prompt_ids), None

    def _sample_shared_prefix(self, prompt_ids: list[list[int]]) -> list[list[int]]:
        """One completion per row with the trainer's generation config, each kept up to and including its
        first EOS, as TRL keeps them."""
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
        eos = torch.tensor(self.eos_token_ids)
        out = []
        for row in completion_ids.cpu():
            hits = torch.isin(row, eos).nonzero()
            out.append(row[: int(hits[0]) + 1].tolist() if len(hits) else row.tolist())
        return out
