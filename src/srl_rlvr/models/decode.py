"""Decoding from a prefilled cache that drops finished rows from the batch, as generate's sampling loop does not.

transformers' ``generate`` keeps every row in the batch until the last one ends: a row that wrote EOS after
15 of 32 tokens is still computed, its output thrown away, for as long as the batch's longest row runs. At the
batch sizes of rollouts and eval (12-100 rows) a decode step on a CPU costs roughly in proportion to its rows,
so :func:`decode` removes finished rows from the batch and from the cache. A removal copies the cache, so rows
are removed once at least ``prune_fraction`` of the running rows have ended (or all of them).

The logits are processed as ``generate`` processes them for the settings :func:`supports` accepts: greedy, or
sampling with temperature, top-k, top-p and min-p, and ``min_new_tokens`` (EOS masked until then), in
generate's order. Anything else (beam search, repetition penalty, bad words, stop strings, ...) is not
supported; callers check :func:`supports` and run ``generate`` for it. Greedy output equals ``generate``'s
(a test checks); sampled output comes from the same distribution but not from the same random draws once a
row has been removed, since later draws are for fewer rows.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers.generation.logits_process import (
    LogitsProcessorList,
    MinPLogitsWarper,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

PRUNE_FRACTION = 0.125  # drop ended rows once they are 1/8 of the running batch: each drop copies the cache

# GenerationConfig fields this loop reads; every other field must be unset (None), see supports()
_HANDLED = {"max_new_tokens", "min_new_tokens", "do_sample", "temperature", "top_k", "top_p", "min_p",
            "pad_token_id", "bos_token_id", "eos_token_id"}
# fields that may be set to a value that changes nothing
_NEUTRAL = {"num_beams": 1, "num_return_sequences": 1, "repetition_penalty": 1.0, "typical_p": 1.0,
            "use_cache": True, "disable_compile": None, "max_length": None, "transformers_version": None}


def supports(config: Any) -> bool:
    """Whether :func:`decode` runs ``config`` exactly as ``generate`` would (see the module docstring)."""
    if not config.max_new_tokens:
        return False
    for key, value in vars(config).items():
        if value is None or key in _HANDLED or key.startswith("_"):
            continue
        if key in _NEUTRAL:
            neutral = _NEUTRAL[key]
            if neutral is not None and value != neutral:
                return False
            continue
        if key.startswith(("output_", "return_dict")) and not value:
            continue
        return False
    return True


def _warpers(config: Any) -> LogitsProcessorList:
    # generate's order (GenerationMixin._get_logits_processor): temperature, top-k, top-p, min-p
    warpers = LogitsProcessorList()
    if not config.do_sample:
        return warpers
    if config.temperature is not None and config.temperature != 1.0:
        warpers.append(TemperatureLogitsWarper(config.temperature))
    if config.top_k:
        warpers.append(TopKLogitsWarper(top_k=config.top_k, min_tokens_to_keep=1))
    if config.top_p is not None and config.top_p < 1.0:
        warpers.append(TopPLogitsWarper(top_p=config.top_p, min_tokens_to_keep=1))
    if config.min_p is not None:
        warpers.append(MinPLogitsWarper(min_p=config.min_p, min_tokens_to_keep=1))
    return warpers


def _eos_list(config: Any) -> list[int]:
    eos = config.eos_token_id
    if eos is None:
        return []
    return [eos] if isinstance(eos, int) else list(eos)


@torch.no_grad()
def decode(model: Any, cache: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, config: Any,
           prune_fraction: float = PRUNE_FRACTION) -> torch.Tensor:
    """Generate after a prefill: ``cache`` holds every column of ``input_ids`` but the last, which is fed
    first. ``attention_mask`` marks the real tokens (left or middle padding). Positions continue each row's
    ``cumsum(mask) - 1``, as ``generate`` numbers them.

    Returns rows × new tokens: each row's tokens up to and including its EOS, then ``pad_token_id``, as wide
    as the longest row (``generate``'s output without the prompt).
    """
    rows = input_ids.size(0)
    device = input_ids.device
    max_new = int(config.max_new_tokens)
    min_new = int(config.min_new_tokens or 0)
    pad = config.pad_token_id if config.pad_token_id is not None else 0
    eos = torch.tensor(_eos_list(config), dtype=torch.long, device=device)
    warpers = _warpers(config)
    out = torch.full((rows, max_new), pad, dtype=torch.long, device=device)
    active = torch.arange(rows, device=device)  # output row of each running batch row
    ended = torch.zeros(rows, dtype=torch.bool, device=device)  # running rows that wrote EOS, not yet dropped
    width = attention_mask.size(1)
    mask = torch.zeros((rows, width + max_new), dtype=attention_mask.dtype, device=device)
    mask[:, :width] = attention_mask
    position = attention_mask.long().sum(-1, keepdim=True) - 1
    feed = input_ids[:, -1:]
    steps = 0
    for t in range(max_new):
        logits = model(input_ids=feed, attention_mask=mask[:, : width + t], position_ids=position,
                       cache=cache, use_cache=True).logits[:, -1, :].float()
        if t < min_new and eos.numel():
            logits[:, eos] = -float("inf")
        if config.do_sample:
            scores = warpers(None, logits)
            token = torch.multinomial(torch.softmax(scores, dim=-1), num_samples=1).squeeze(1)
        else:
            token = logits.argmax(dim=-1)
        token = torch.where(ended, torch.full_like(token, pad), token)  # an ended row waits for its drop
        out[active, t] = token
        steps = t + 1
        if eos.numel():
            ended |= torch.isin(token, eos)
        n_ended = int(ended.sum())
        if n_ended == active.numel():
            break
        mask[:, width + t] = 1
        position = position + 1
        feed = token[:, None]
        if n_ended and n_ended >= prune_fraction * active.numel():
            keep = (~ended).nonzero().squeeze(1)
            cache.batch_select_indices(keep)
            active, mask, position, feed = active[keep], mask[keep], position[keep], feed[keep]
            ended = ended[keep]
    return out[:, :steps]
