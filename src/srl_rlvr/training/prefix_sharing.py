"""Shared-prefix log-probs for GRPO training: each group's prompt goes through the model once.

GRPO scores G completions of the same prompt. TRL's ``_get_per_token_logps_and_entropies`` runs every
(prompt + completion) row through the model, so the prompt is processed G times, forward and backward.
SRL prompts (problem + expert steps so far) are long and steps are short, so on a CPU most of a step's
compute is that repeated prompt. Here the unique prompts (minus their last token) are run once, their KV
cache is indexed out to the G rows, and only [last prompt token + completion] is run per row. Gradients
flow back through the shared cache into the single prompt pass, so loss and gradients equal TRL's (RoPE
makes the position offset of left padding irrelevant; a test checks log-probs and gradients match).

Used only where it is exact and safe: one process (DDP cannot take two forward calls per backward),
text-only inputs and no MoE aux loss; otherwise TRL's own path runs.
"""

from __future__ import annotations

import torch
from transformers import DynamicCache


class SharedPrefixLogpsMixin:
    """Mix into a GRPOTrainer subclass; active when ``args.shared_prefix_training``."""

    def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep, batch_size=None,
                                           compute_entropy=False, compute_aux_loss=False, **multimodal):
        fallback = (
            not getattr(self.args, "shared_prefix_training", False)
            or compute_aux_loss
            or self.accelerator.num_processes > 1
            or any(v is not None for v in multimodal.values())
            or input_ids.size(1) - logits_to_keep < 2
        )
        if not fallback:
            prompt_len = input_ids.size(1) - logits_to_keep
            unique, inverse = torch.unique(input_ids[:, :prompt_len], dim=0, return_inverse=True)
            fallback = unique.size(0) == input_ids.size(0)  # nothing to share
        if fallback:
            return super()._get_per_token_logps_and_entropies(
                model, input_ids, attention_mask, logits_to_keep, batch_size=batch_size,
                compute_entropy=compute_entropy, compute_aux_loss=compute_aux_loss, **multimodal)
        return self._shared_prefix_logps(model, input_ids, attention_mask, logits_to_keep, unique, inverse, compute_entropy)

    def _shared_prefix_logps(self, model, input_ids, attention_mask, logits_to_keep, unique, inverse, compute_entropy):
        prompt_len = input_ids.size(1) - logits_to_keep
        first_row = torch.zeros(unique.size(0), dtype=torch.long, device=input_ids.device)
        first_row.scatter_(0, inverse.flip(0), torch.arange(input_ids.size(0) - 1, -1, -1, device=input_ids.device))
        prefix_mask = attention_mask[first_row, : prompt_len - 1]
        n = input_ids.size(0)
        with self.accelerator.autocast():
            cache = DynamicCache(config=self.accelerator.unwrap_model(model).config)
            model(input_ids=unique[:, :-1], attention_mask=prefix_mask, cache=cache, use_cache=True, logits_to_keep=1,
                  position_ids=torch.arange(prompt_len - 1, device=input_ids.device).expand(unique.size(0), -1))
            cache.batch_select_indices(inverse)
            suffix = input_ids[:, prompt_len - 1 :]
            labels = suffix.masked_fill(attention_mask[:, prompt_len - 1 :] == 0, -100)
            labels[:, 0] = -100  # the last prompt token is context, not a scored completion token
            positions = torch.arange(prompt_len - 1, input_ids.size(1), device=input_ids.device).expand(n, -1)
            outputs = model(input_ids=suffix, attention_mask=attention_mask, cache=cache, position_ids=positions,
                            labels=labels, fused_lm_head=True)
        logps = outputs.log_probs[:, -logits_to_keep:]
        entropies = outputs.entropy[:, -logits_to_keep:] if compute_entropy else None
        return logps, entropies, None
