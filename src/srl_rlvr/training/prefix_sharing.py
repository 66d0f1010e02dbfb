"""Shared-prefix log-probs for GRPO training: each group's prompt goes through the model once.

GRPO scores G completions of the same prompt. TRL's ``_get_per_token_logps_and_entropies`` runs every
(prompt + completion) row through the model, so the prompt is processed G times, forward and backward.
SRL prompts (problem + expert steps so far) are long and steps are short, so on a CPU most of a step's
compute is that repeated prompt. Here the unique prompts (minus their last token) are run once, their KV
cache is indexed out to the G rows, and only [last prompt token + completion] is run per row.

Second level: the unique prompts of a batch all start with the same chat-template system message (~95 of
~150 tokens for SRL). When they share at least ``shared_prefix_min_common`` tokens, that common prefix runs
once (batch 1), its cache is repeated to the U unique prompts, and then only each prompt's remainder runs.
The layout per row is ``[common prefix | padding | remainder | last prompt token + completion]``: the
padding is masked (the causal mask of transformers is index based and the 2D mask applies per key, so a
gap in the middle is simply never attended) and the positions are those of the unpadded sequence (prefix
0..S-1, remainder S.., completion after), so every row is computed as if it were alone.

Gradients flow back through the shared caches into the single passes, so loss and gradients equal TRL's
(RoPE makes the position offset of TRL's left padding irrelevant; tests check log-probs and gradients).

Used only where it is exact and safe: one process (DDP cannot take several forward calls per backward),
text-only inputs, no MoE aux loss, and no activation checkpointing while gradients are on (checkpointed
layers drop the KV cache then, so completions would be scored without their prompt); otherwise TRL's own
path runs.
"""

from __future__ import annotations

import torch
from transformers import DynamicCache

from srl_rlvr.training.generation import MIN_COMMON_PREFIX


def activation_checkpointing_on(model) -> bool:
    """Whether a checkpointed layer would drop the KV cache in a forward call now (see transformers'
    ``GradientCheckpointingLayer``: checkpointing applies in train mode with gradients enabled)."""
    if not (model.training and torch.is_grad_enabled()):
        return False
    flag = getattr(model, "is_activation_checkpointing", None)  # transformers 5 (PEFT wrappers forward it)
    if isinstance(flag, bool):
        return flag
    return any(getattr(m, "gradient_checkpointing", False) for m in model.modules())


class SharedPrefixLogpsMixin:
    """Mix into a GRPOTrainer subclass; active when ``args.shared_prefix_training``."""

    shared_prefix_min_common = MIN_COMMON_PREFIX  # below this, the extra batch-1 pass is not worth it
    _shared_prefix_last: dict | None = None  # {"unique": U, "common": S} of the last shared-prefix call

    def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep, batch_size=None,
                                           compute_entropy=False, compute_aux_loss=False, **multimodal):
        fallback = (
            not getattr(self.args, "shared_prefix_training", False)
            or compute_aux_loss
            or self.accelerator.num_processes > 1
            or any(v is not None for v in multimodal.values())
            or input_ids.size(1) - logits_to_keep < 2
            or activation_checkpointing_on(self.accelerator.unwrap_model(model))
        )
        if not fallback:
            prompt_len = input_ids.size(1) - logits_to_keep
            unique, inverse = torch.unique(input_ids[:, :prompt_len], dim=0, return_inverse=True)
            fallback = unique.size(0) == input_ids.size(0)  # nothing to share
        if fallback:
            return super()._get_per_token_logps_and_entropies(
                model, input_ids, attention_mask, logits_to_keep, batch_size=batch_size,
                compute_entropy=compute_entropy, compute_aux_loss=compute_aux_loss, **multimodal)
        return self._shared_prefix_logps(model, input_ids, attention_mask, logits_to_keep, unique, inverse,
                                         compute_entropy)

    def _common_prompt_prefix(self, unique: torch.Tensor, lengths: torch.Tensor) -> int:
        """Tokens the real (unpadded) ``unique`` prompts all start with, if worth a pass of their own, else 0.

        Every prompt keeps its last token out of it (that one runs with the completions).
        """
        if unique.size(0) < 2:
            return 0
        room = int(lengths.min()) - 1
        if room < max(self.shared_prefix_min_common, 1):
            return 0
        starts = unique.size(1) - lengths  # left padding of each prompt
        real = unique.gather(1, starts[:, None] + torch.arange(room, device=unique.device))
        differs = (real != real[:1]).any(0)
        shared = int(differs.int().argmax()) if bool(differs.any()) else room
        return shared if shared >= self.shared_prefix_min_common else 0

    def _shared_prefix_logps(self, model, input_ids, attention_mask, logits_to_keep, unique, inverse, compute_entropy):
        device = input_ids.device
        prompt_len = input_ids.size(1) - logits_to_keep
        n, n_unique = input_ids.size(0), unique.size(0)
        first_row = torch.zeros(n_unique, dtype=torch.long, device=device)
        first_row.scatter_(0, inverse.flip(0), torch.arange(n - 1, -1, -1, device=device))
        lengths = attention_mask[first_row, :prompt_len].sum(-1)  # real tokens of each unique prompt
        shared = self._common_prompt_prefix(unique, lengths)
        self._shared_prefix_last = {"unique": n_unique, "common": shared}  # what ran (tests, debugging)
        # Context = every prompt but its last token, laid out [common prefix | padding | remainder]. The remainder
        # of unique prompt u sits where it already is in the left-padded prompt: columns prompt_len - lengths[u]
        # + shared onwards. Columns shared.. before that hold padding (or, for shorter prompts, prefix tokens
        # already in the shared pass): masked out, never attended. Positions count real tokens only.
        cols = torch.arange(shared, prompt_len - 1, device=device)
        own_start = prompt_len - lengths + shared  # (U,)
        rest_mask = (cols[None] >= own_start[:, None]).long()  # (U, prompt_len - 1 - shared)
        rest_pos = (cols[None] - (prompt_len - lengths)[:, None]).clamp(min=0)
        with self.accelerator.autocast():
            cache = DynamicCache(config=self.accelerator.unwrap_model(model).config)
            if shared:
                start = prompt_len - int(lengths[0])  # the prefix, from any one prompt, at positions 0..shared-1
                prefix_pos = torch.arange(shared, device=device)[None]
                model(input_ids=unique[:1, start : start + shared], position_ids=prefix_pos, cache=cache,
                      use_cache=True, logits_to_keep=1)
                cache.batch_repeat_interleave(n_unique)
            if cols.numel():
                ctx_mask = torch.cat([rest_mask.new_ones(n_unique, shared), rest_mask], dim=1)
                model(input_ids=unique[:, shared : prompt_len - 1], attention_mask=ctx_mask, position_ids=rest_pos,
                      cache=cache, use_cache=True, logits_to_keep=1)
            cache.batch_select_indices(inverse)
            suffix = input_ids[:, prompt_len - 1 :]
            suffix_mask = attention_mask[:, prompt_len - 1 :]
            labels = suffix.masked_fill(suffix_mask == 0, -100)
            labels[:, 0] = -100  # the last prompt token is context, not a scored completion token
            full_mask = torch.cat([suffix_mask.new_ones(n, shared), rest_mask[inverse].to(suffix_mask.dtype),
                                   suffix_mask], dim=1)
            positions = (lengths[inverse] - 1)[:, None] + torch.arange(suffix.size(1), device=device)
            outputs = model(input_ids=suffix, attention_mask=full_mask, cache=cache, position_ids=positions,
                            labels=labels, fused_lm_head=True)
        logps = outputs.log_probs[:, -logits_to_keep:]
        entropies = outputs.entropy[:, -logits_to_keep:] if compute_entropy else None
        return logps, entropies, None
