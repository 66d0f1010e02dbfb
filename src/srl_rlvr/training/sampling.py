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

import hashlib
import json
from collections.abc import Iterator, Sequence
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


def sample_id(row: dict[str, Any]) -> str:
    """A training row's id: its ``id`` column, else a digest of its prompt and target (what resume compares)."""
    if row.get("id") is not None:
        return str(row["id"])
    key = {k: row.get(k) for k in ("prompt", "expert_step", "answer", "tests")}
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode("utf-8")).hexdigest()[:16]


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
    _refill_epoch: int = 0
    _refill_drawn: int = 0  # batches taken from the current refill iterator (checkpointed for exact resume)
    _last_rewards: torch.Tensor | None = None
    trained_samples: list[str] | None = None  # sample_id of every row trained on, in order (one per rollout)

    def refill_state(self) -> dict[str, int]:
        return {"epoch": self._refill_epoch, "drawn": self._refill_drawn}

    def load_refill_state(self, state: dict[str, int]) -> None:
        """Continue the refill stream where a checkpoint left it: same epoch seed, same position."""
        self._refill_epoch, self._refill_drawn = int(state["epoch"]), int(state["drawn"])
        self._refill_iter = None

    def _note_trained(self, rows: Sequence[dict[str, Any]]) -> None:
        if self.trained_samples is None:
            self.trained_samples = []
        self.trained_samples.extend(sample_id(r) for r in rows)

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):  # noqa: D401 - TRL hook
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        weights = self.reward_weights.to(rewards_per_func.device).unsqueeze(0)
        self._last_rewards = (rewards_per_func * weights).nansum(dim=1)  # gathered over all processes
        return rewards_per_func

    def _refill_batch(self) -> list[dict[str, Any]]:
        """The next generation batch of fresh prompts, from a second sampler with its own seed.

        The refill stream never touches the global RNG (building a DataLoader iterator draws a seed from it),
        so a run resumed from a checkpoint samples the same rollouts as one that was never stopped."""
        with torch.random.fork_rng(devices=[]):
            if self._refill_iter is None:
                self._refill_iter = iter(self._refill_dataloader())
                for _ in range(self._refill_drawn):  # resumed: skip what the checkpointed run already took
                    next(self._refill_iter)
            try:
                batch = next(self._refill_iter)
            except StopIteration:
                self._refill_epoch += 1
                self._refill_drawn = 0
                self._refill_iter = iter(self._refill_dataloader())
                batch = next(self._refill_iter)
        self._refill_drawn += 1
        return batch

    def _refill_dataloader(self):
        def sampler(dataset):
            return RepeatSampler(
                data_source=dataset,
                mini_repeat_count=self.num_generations,
                batch_size=self.args.generation_batch_size // self.num_generations,
                repeat_count=1,
                shuffle=True,
                seed=self.args.seed + 7919 * (1 + self._refill_epoch),
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
        self._round_kept_rows.extend(row for row, kept in zip(inputs, local.tolist()) if kept)
        return batch, local

    def _generate_and_score_completions(self, inputs):
        if not self.model.training:
            return super()._generate_and_score_completions(inputs)
        if not self.args.dynamic_sampling:
            self._note_trained(inputs)
            return super()._generate_and_score_completions(inputs)
        target = len(inputs)
        self._round_kept_rows: list[dict[str, Any]] = []
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
        self._note_trained(self._round_kept_rows[:n_local])  # the informative rows come first in ``merged``
        n_rows = max(1, self._global_max(n_local))
        # TRL splits the batch into steps_per_generation equal micro-batches and drops any remainder (an
        # empty micro-batch even crashes): round up with untrained rows, never lose an informative one
        chunks = max(1, int(getattr(self.args, "steps_per_generation", 1) or 1))
        n_rows = min(-(-n_rows // chunks) * chunks, len(merged["completion_mask"]))
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
