"""Dynamic sampling with refill (SRL paper Sec. 3.3; DAPO), on top of TRL's GRPOTrainer.

A prompt group whose rewards all (nearly) agree has zero advantage and teaches nothing, so it is dropped
and more prompts are generated until the optimiser batch is full again or ``max_refill_rounds`` is spent.
TRL has no such feature (TRL issue #3708), and overriding a method TRL does not have is a silent no-op,
so this mixin overrides ``_generate_and_score_completions``, which TRL's ``_prepare_inputs`` really calls,
and a test asserts that it runs.

Decisions made globally (from rewards gathered across processes) so every rank does the same number of
refill rounds; each rank keeps its own rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from trl.trainer.utils import RepeatSampler

# Tensors padded on the left (prompts) or on the right (completions) when batches of different lengths meet.
LEFT_PADDED = ("prompt_ids", "prompt_mask")
RIGHT_PADDED = (
    "completion_ids",
    "completion_mask",
    "old_per_token_logps",
    "sampling_per_token_logps",
    "ref_per_token_logps",
    "importance_sampling_ratio",
    "tool_mask",
)


def group_reward_std(rewards: torch.Tensor, num_generations: int) -> torch.Tensor:
    """Population std of each group's rewards, repeated per row.

    >>> group_reward_std(torch.tensor([1.0, 1.0, 0.0, 1.0]), 2).tolist()
    [0.0, 0.0, 0.5, 0.5]
    """
    groups = rewards.view(-1, num_generations)
    return groups.std(dim=1, unbiased=False).repeat_interleave(num_generations)


def informative_rows(rewards: torch.Tensor, num_generations: int, epsilon: float) -> torch.Tensor:
    """Rows whose group's reward std is above ``epsilon`` (std ≤ ε: dropped).

    >>> informative_rows(torch.tensor([1.0, 1.0, 0.0, 1.0]), 2, 0.0).tolist()
    [False, False, True, True]
    """
    return group_reward_std(rewards, num_generations) > epsilon


def _pad_to(t: torch.Tensor, length: int, left: bool, value: float) -> torch.Tensor:
    missing = length - t.size(1)
    if missing <= 0:
        return t
    pad = torch.full((t.size(0), missing), value, dtype=t.dtype, device=t.device)
    return torch.cat([pad, t] if left else [t, pad], dim=1)


def select_rows(batch: dict[str, Any], index: torch.Tensor) -> dict[str, Any]:
    """The rows ``index`` of every per-row tensor in a TRL rollout batch; scalars pass through."""
    out = {}
    for key, value in batch.items():
        if isinstance(value, torch.Tensor) and value.dim() >= 1 and key != "num_items_in_batch":
            out[key] = value.index_select(0, index.to(value.device))
        else:
            out[key] = value
    return out


def concat_rollouts(batches: list[dict[str, Any]], pad_token_id: int) -> dict[str, Any]:
    """Concatenate rollout batches along rows, re-padding sequences to a common length."""
    if len(batches) == 1:
        return batches[0]
    out: dict[str, Any] = {}
    for key, first in batches[0].items():
        values = [b[key] for b in batches]
        if not isinstance(first, torch.Tensor) or key == "num_items_in_batch":
            out[key] = first
        elif first.dim() == 1:
            out[key] = torch.cat(values)
        else:
            length = max(v.size(1) for v in values)
            left = key in LEFT_PADDED
            if key not in LEFT_PADDED + RIGHT_PADDED:
                raise ValueError(f"dynamic sampling cannot merge rollout field {key!r}")
            fill = pad_token_id if key in ("prompt_ids", "completion_ids") else (1 if key == "tool_mask" else 0)
            out[key] = torch.cat([_pad_to(v, length, left, fill) for v in values])
    # completions that are padding on every row would only cost compute
    if "completion_mask" in out:
        keep = int(out["completion_mask"].sum(0).nonzero().max().item()) + 1 if out["completion_mask"].any() else 1
        for key in RIGHT_PADDED:
            if key in out:
                out[key] = out[key][:, :keep]
    return out


class DynamicSamplingMixin:
    """Mix into a GRPOTrainer subclass; reads ``dynamic_sampling``, ``dynamic_sampling_epsilon`` and
    ``max_refill_rounds`` from ``self.args``."""

    _refill_iter: Iterator | None = None
    _last_rewards: torch.Tensor | None = None

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):  # noqa: D401 - TRL hook
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        weights = self.reward_weights.to(rewards_per_func.device).unsqueeze(0)
        self._last_rewards = (rewards_per_func * weights).nansum(dim=1)  # gathered over all processes
        return rewards_per_func

    def _refill_batch(self) -> list[dict[str, Any]]:
        """The next generation batch of fresh prompts, from a second sampler with its own seed."""
        if self._refill_iter is None:
            self._refill_epoch = 0
            self._refill_iter = iter(self._refill_dataloader())
        try:
            return next(self._refill_iter)
        except StopIteration:
            self._refill_epoch += 1
            self._refill_iter = iter(self._refill_dataloader())
            return next(self._refill_iter)

    def _refill_dataloader(self):
        def sampler(dataset):
            return RepeatSampler(
                data_source=dataset,
                mini_repeat_count=self.num_generations,
                batch_size=self.args.generation_batch_size // self.num_generations,
                repeat_count=1,
                shuffle=True,
                seed=self.args.seed + 7919 * (1 + getattr(self, "_refill_epoch", 0)),
            )

        return self._get_dataloader(
            dataset=self.train_dataset,
            description="Refill",
            batch_size=self._train_batch_size * self.args.steps_per_generation,
            sampler_fn=sampler,
            is_training=True,
        )

    def _scored_round(self, inputs) -> tuple[dict[str, Any], torch.Tensor]:
        batch = super()._generate_and_score_completions(inputs)
        keep_all = informative_rows(self._last_rewards, self.num_generations, self.args.dynamic_sampling_epsilon)
        rank = self.accelerator.process_index
        local = keep_all[rank * len(inputs) : (rank + 1) * len(inputs)]
        return batch, local

    def _generate_and_score_completions(self, inputs):
        if not (self.model.training and self.args.dynamic_sampling):
            return super()._generate_and_score_completions(inputs)
        target = len(inputs)
        batch, keep = self._scored_round(inputs)
        kept = [select_rows(batch, keep.nonzero().flatten())]
        dropped = [select_rows(batch, (~keep).nonzero().flatten())]
        n_kept, rounds, generated = int(keep.sum()), 1, target
        first_fraction = self._global_mean(keep.float().mean())
        while self._global_min(n_kept) < target and rounds < self.args.max_refill_rounds:
            batch, keep = self._scored_round(self._refill_batch())
            kept.append(select_rows(batch, keep.nonzero().flatten()))
            dropped.append(select_rows(batch, (~keep).nonzero().flatten()))
            n_kept += int(keep.sum())
            rounds += 1
            generated += target
        pad_id = self.processing_class.pad_token_id if hasattr(self.processing_class, "pad_token_id") else 0
        merged = concat_rollouts([b for b in kept + dropped], pad_id)  # informative rows first
        short = max(0, target - n_kept)
        # The refill budget may run out: then the batch is smaller, never topped up with flat groups (zero
        # advantage, but their tokens would still dilute the loss normaliser and, with beta > 0, add KL).
        # Every rank must hold the same number of rows (TRL gathers per-row tensors), so a rank with fewer
        # informative rows than another pads with dropped rows whose completion mask is zeroed: they train on
        # nothing. With one process that only happens when nothing at all was informative (then one such row).
        n_local = min(n_kept, target)
        n_rows = max(1, self._global_max(n_local))
        merged = select_rows(merged, torch.arange(n_rows))
        if n_rows > n_local:
            untrained = torch.arange(n_rows, device=merged["completion_mask"].device) >= n_local
            merged["completion_mask"] = merged["completion_mask"].masked_fill(untrained[:, None], 0)
        # the loss normaliser must count only the tokens that are actually trained on
        mask = merged["completion_mask"] * merged["tool_mask"] if "tool_mask" in merged else merged["completion_mask"]
        merged["num_items_in_batch"] = self.accelerator.gather(mask.sum()).sum().clamp(min=1)
        metrics = self._metrics["train"]
        metrics["dynamic_sampling/informative_fraction"].append(first_fraction)
        metrics["dynamic_sampling/rounds"].append(float(rounds))
        metrics["dynamic_sampling/generated_per_kept"].append(generated / target)
        metrics["dynamic_sampling/short_of_target"].append(self._global_mean(torch.tensor(short / target)))
        return merged

    def _global_max(self, value: int) -> int:
        t = torch.tensor([value], device=self.accelerator.device)
        return int(self.accelerator.gather(t).max().item())

    def _global_min(self, value: int) -> int:
        t = torch.tensor([value], device=self.accelerator.device)
        return int(self.accelerator.gather(t).min().item())

    def _global_mean(self, value: torch.Tensor) -> float:
        return float(self.accelerator.gather(value.reshape(1).to(self.accelerator.device)).float().mean().item())
