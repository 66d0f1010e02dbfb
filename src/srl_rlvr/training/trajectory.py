"""Trajectory RLVR (``prompt_mode: stepwise``): the model's own step-by-step solution, rewarded by its answer.

    srl-rlvr run configs/demo-cpu.yaml --out out/demo --set rlvr.prompt_mode=stepwise

A step-by-step model is judged the way eval runs it (``eval.mode: stepwise``): one call per step on the
SRL step prompt with *its own* earlier steps, until a step states the answer or ``stepwise_max_calls`` run
out. ``final_step`` RLVR trains a single call on the expert's earlier steps, so the two things that decide
a stepwise answer, when to stop and carrying one's own numbers forward, are never on its prompts
(docs/results.md: its share moved by ±20 points from seed to seed). Here each of a problem's
``num_generations`` rollouts is a whole sampled trajectory of 1..``stepwise_max_calls`` calls, exactly as
eval builds them; the math reward judges the trajectory's solution text as eval scores it; and every call's
completion tokens are trained with the trajectory's group-normalised advantage (the outcome reward shared
over turns, as multi-turn GRPO does). A call is one optimiser row: its own prompt, its own completion.

An answer reward alone only moves groups that are sometimes right, which on the demo are the one-operation
problems, so it teaches "stop after one step" (docs/results.md, T1 and T2). ``stepwise_step_reward: w``
adds w × the SRL step similarity of the whole trajectory against the expert's (:func:`step_score`): every
group gets a gradient, and skipping expert steps costs reward.

TRL's GRPOTrainer generates one completion per prompt (its multi-turn path continues one conversation;
this one re-prompts from scratch each step), so this mixin replaces ``_generate_and_score_completions`` in
that mode and builds the batch TRL's loss reads. Dynamic sampling applies per trajectory group: a group
whose trajectories all score the same is dropped and more problems are rolled out, up to
``max_refill_rounds``; no call of a flat group reaches the optimiser (a test decodes the batch). One process
only, ``beta: 0``, math reward: anything else is refused at start.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from trl.trainer.utils import pad

from srl_rlvr.eval.scoring import states_answer as ends_trajectory
from srl_rlvr.eval.scoring import step_text
from srl_rlvr.prompts import full_solution_text, render_generation_prompt, srl_step_messages, with_prefill
from srl_rlvr.rewards.math import math_answer_reward
from srl_rlvr.rewards.similarity import difflib_ratio
from srl_rlvr.training.sampling import informative_rows


@dataclass
class Trajectory:
    """One sampled stepwise rollout: every call's (prompt ids, completion ids), the steps it wrote, its reward."""

    item: int  # index of its row in the generation batch
    calls: list[tuple[list[int], list[int]]] = field(default_factory=list)
    steps: list[str] = field(default_factory=list)
    done: bool = False
    reward: float = 0.0
    answer_reward: float = 0.0
    step_score: float = 0.0

    @property
    def solution(self) -> str:
        return full_solution_text(self.steps)


def step_score(steps: list[str], expert_steps: list[str]) -> float:
    """The SRL step reward over a whole trajectory: difflib 2M/T of the model's step k against the expert's
    step k, summed and divided by the longer of the two, so a step missing (stopping early) or extra (not
    stopping) scores 0.

    >>> step_score(["a = 1", "b = 2"], ["a = 1", "b = 2"])
    1.0
    >>> step_score(["a = 1. The answer is 1."], ["a = 1", "b = 2", "c = 3"]) < 1 / 3
    True
    """
    if not expert_steps:
        raise ValueError("step_score needs the expert's steps")
    matched = sum(difflib_ratio(mine, theirs) for mine, theirs in zip(steps, expert_steps))
    return matched / max(len(steps), len(expert_steps))


def roll_out(sample, tokenizer, problems: list[str], answers: list[str], think_prefill: bool | str,
             max_calls: int, expert_steps: list[list[str]] | None = None,
             step_weight: float = 0.0) -> list[Trajectory]:
    """One trajectory per problem (repeat a problem for a group), the calls of all still-running rollouts
    batched together. ``sample(prompt_ids) -> completion ids`` draws one completion per row.

    The reward is the answer's (1 right, 0 not), plus ``step_weight`` × :func:`step_score` against
    ``expert_steps`` when the weight is not 0: a dense term that still tells trajectories apart when every
    answer in a group is wrong, and that costs a trajectory each expert step it skips."""
    if step_weight and expert_steps is None:
        raise ValueError("a step reward weight needs the expert steps of every problem")
    trajectories = [Trajectory(item=i) for i in range(len(problems))]
    for k in range(1, max_calls + 1):
        running = [t for t in trajectories if not t.done]
        if not running:
            break
        texts = [render_generation_prompt(tokenizer, srl_step_messages(problems[t.item], t.steps, k), think_prefill)
                 for t in running]
        prompt_ids = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts]
        for t, prompt, completion in zip(running, prompt_ids, sample(prompt_ids)):
            # eval reads the decoded text with the prefill put back (eval/generation.py)
            text = with_prefill(tokenizer.decode(completion, skip_special_tokens=True), think_prefill)
            step = step_text(text)
            t.calls.append((prompt, completion))
            t.steps.append(step)
            t.done = ends_trajectory(step)
    for t in trajectories:
        t.answer_reward = math_answer_reward(t.solution, answers[t.item])
        t.step_score = step_score(t.steps, expert_steps[t.item]) if step_weight else 0.0
        t.reward = t.answer_reward + step_weight * t.step_score
    return trajectories


def group_advantages(rewards: torch.Tensor, num_generations: int, scale_rewards: str) -> torch.Tensor:
    """TRL's GRPO advantages: reward minus its group's mean, divided by the group's (``group``) or the
    batch's (``batch``) unbiased std + 1e-4, or not divided (``none``).

    >>> group_advantages(torch.tensor([1.0, 0.0, 0.0, 0.0]), 2, "none").tolist()
    [0.5, -0.5, 0.0, 0.0]
    """
    groups = rewards.view(-1, num_generations)
    advantages = (groups - groups.mean(dim=1, keepdim=True)).flatten()
    if scale_rewards == "group":
        std = groups.std(dim=1).repeat_interleave(num_generations)
    elif scale_rewards == "batch":
        std = rewards.std().expand_as(rewards)
    elif scale_rewards == "none":
        return advantages
    else:
        raise ValueError(f"scale_rewards must be 'group', 'batch' or 'none', got {scale_rewards!r}")
    return advantages / (std + 1e-4)


def _padded(rows: list[list[int]], pad_id: int, side: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Ids and mask padded as TRL pads its own rollout batch (``trl.trainer.utils.pad``)."""
    tensors = [torch.tensor(r, dtype=torch.long) for r in rows]
    return (pad(tensors, padding_value=pad_id, padding_side=side),
            pad([torch.ones_like(t) for t in tensors], padding_value=0, padding_side=side))


def call_batch(trajectories: list[Trajectory], advantages: list[float], pad_id: int, multiple_of: int = 1,
               trained_rows: int | None = None) -> dict[str, torch.Tensor]:
    """TRL's rollout batch with one row per call: prompts left-padded, completions right-padded, each row
    carrying its trajectory's advantage. Rows are added, with their completion masked out, until the count is
    a multiple of ``multiple_of`` (TRL splits a generation batch into equal micro-batches); with
    ``trained_rows`` only the first that many rows keep their completion mask."""
    prompts, completions, row_advantages = [], [], []
    for t, advantage in zip(trajectories, advantages):
        for prompt, completion in t.calls:
            prompts.append(prompt)
            completions.append(completion)
            row_advantages.append(advantage)
    trained = len(prompts) if trained_rows is None else trained_rows
    while len(prompts) % multiple_of:
        prompts.append(prompts[0])
        completions.append(completions[0])
        row_advantages.append(0.0)
    prompt_ids, prompt_mask = _padded(prompts, pad_id, "left")
    completion_ids, completion_mask = _padded(completions, pad_id, "right")
    completion_mask[trained:] = 0
    return {"prompt_ids": prompt_ids, "prompt_mask": prompt_mask, "completion_ids": completion_ids,
            "completion_mask": completion_mask, "advantages": torch.tensor(row_advantages, dtype=torch.float32),
            "num_items_in_batch": completion_mask.sum().clamp(min=1)}


class StepwiseRolloutMixin:
    """Mix into RLVRTrainer before DynamicSamplingMixin (whose refill stream it uses) and after
    FastGenerationMixin (whose sampler it uses); active when ``args.prompt_mode == "stepwise"``."""

    def _check_stepwise(self) -> None:
        if self.args.prompt_mode != "stepwise":
            return
        refused = {"reward": (self.args.reward != "math", "a math reward (the trajectory's answer)"),
                   "beta": (self.beta != 0.0, "beta 0 (no KL term is computed for trajectory calls)"),
                   "processes": (self.accelerator.num_processes > 1, "one process"),
                   "use_vllm": (bool(self.use_vllm), "the transformers generation path")}
        problems = [f"{key}: needs {need}" for key, (bad, need) in refused.items() if bad]
        if problems:
            raise ValueError("rlvr prompt_mode 'stepwise' " + "; ".join(problems))

    def _generate_and_score_completions(self, inputs):
        if not (self.model.training and self.args.prompt_mode == "stepwise"):
            return super()._generate_and_score_completions(inputs)
        groups = self.num_generations
        target = len(inputs) // groups  # groups to train on
        kept: list[tuple[Trajectory, float, dict[str, Any]]] = []
        dropped: list[Trajectory] = []
        rounds, generated, first = 0, 0, None
        batch = inputs
        while True:
            trajectories = self._roll_out(batch)
            rewards = torch.tensor([t.reward for t in trajectories])
            advantages = group_advantages(rewards, groups, self.scale_rewards)
            keep = (informative_rows(rewards, groups, self.args.dynamic_sampling_epsilon)
                    if self.args.dynamic_sampling else torch.ones(len(trajectories), dtype=torch.bool))
            if first is None:
                first = (trajectories, rewards, keep)
            for t, a, k, row in zip(trajectories, advantages.tolist(), keep.tolist(), batch):
                if k:
                    kept.append((t, a, row))
                else:
                    dropped.append(t)
            rounds += 1
            generated += len(batch)
            if len(kept) >= target * groups or rounds >= max(1, self.args.max_refill_rounds) \
                    or not self.args.dynamic_sampling:
                break
            batch = self._refill_batch()
        kept = kept[: target * groups]  # whole groups: rows of a group are consecutive and kept together
        self._note_trained([row for _, _, row in kept])
        chunks = max(1, int(getattr(self.args, "steps_per_generation", 1) or 1))
        pad_id = self._tokenizer.pad_token_id
        if kept:
            out = call_batch([t for t, _, _ in kept], [a for _, a, _ in kept], pad_id, chunks)
        else:  # nothing informative: one row that trains on nothing (TRL needs a batch)
            out = call_batch(dropped[:1], [0.0], pad_id, chunks, trained_rows=0)
        out = {k: v.to(self.accelerator.device) for k, v in out.items()}
        self._log_stepwise(first, kept, rounds, generated, len(inputs), out)
        if self.args.gradient_accumulation_steps % (self.args.steps_per_generation * self.num_iterations):
            out["old_per_token_logps"] = self._old_logps(out)
        return out

    def _roll_out(self, rows: list[dict[str, Any]]) -> list[Trajectory]:
        weight = self.args.stepwise_step_reward
        return roll_out(self._sample_shared_prefix, self._tokenizer, [r["problem"] for r in rows],
                        [r["answer"] for r in rows], self.args.think_prefill or False, self.args.stepwise_max_calls,
                        expert_steps=[r["expert_steps"] for r in rows] if weight else None, step_weight=weight)

    @torch.no_grad()
    def _old_logps(self, out: dict[str, torch.Tensor]) -> torch.Tensor:
        ids = torch.cat([out["prompt_ids"], out["completion_ids"]], dim=1)
        mask = torch.cat([out["prompt_mask"], out["completion_mask"]], dim=1)
        logps, _, _ = self._get_per_token_logps_and_entropies(self.model, ids, mask, out["completion_ids"].size(1),
                                                              batch_size=self.args.per_device_train_batch_size)
        return logps

    def _log_stepwise(self, first, kept, rounds: int, generated: int, target: int, out) -> None:
        trajectories, rewards, keep = first
        metrics = self._metrics["train"]
        metrics["reward"].append(float(rewards.mean()))
        if self.args.stepwise_step_reward:  # without it the answer reward is "reward" itself
            metrics["rlvr/answer_reward"].append(sum(t.answer_reward for t in trajectories) / len(trajectories))
            metrics["rlvr/step_score"].append(sum(t.step_score for t in trajectories) / len(trajectories))
        metrics["reward_std"].append(float(rewards.view(-1, self.num_generations).std(dim=1).mean()))
        metrics["rlvr/calls_per_trajectory"].append(sum(len(t.calls) for t in trajectories) / len(trajectories))
        metrics["rlvr/stated_answer"].append(sum(t.done for t in trajectories) / len(trajectories))
        trained = out["completion_mask"].sum(1)
        metrics["completions/mean_length"].append(float(trained[trained > 0].float().mean()) if (trained > 0).any()
                                                  else 0.0)
        metrics["rlvr/calls_trained"].append(float((trained > 0).sum()))
        metrics["dynamic_sampling/informative_fraction"].append(float(keep.float().mean()))
        metrics["dynamic_sampling/rounds"].append(float(rounds))
        metrics["dynamic_sampling/generated_per_kept"].append(generated / target)
        metrics["dynamic_sampling/short_of_target"].append(max(0, target - len(kept)) / target)
