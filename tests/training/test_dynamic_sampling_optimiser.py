"""Dynamic sampling, end to end: a prompt group whose rewards are flat (std <= epsilon) never reaches the optimiser.

A real SRLTrainer on the tiny model trains a few steps with a reward under the test's control: constant for
every prompt whose text carries MARK, spread out (0, 1, 2, 3 within each group) for every other prompt. What
reaches the optimiser is captured at ``compute_loss`` and its ``prompt_ids`` are decoded back to text with the
tokenizer, so the check does not trust any of the trainer's own bookkeeping. With dynamic sampling off the same
capture does see flat prompts, which shows the capture (and the test) can fail.
"""

from __future__ import annotations

import pytest
import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer

from srl_rlvr.training.srl_config import SRLConfig
from srl_rlvr.training.srl_trainer import SRLTrainer

MARK = "FLATMARK"
STEPS = 3


def flat_if_marked(scored: list[bool]):
    """A reward: 0.0 for every completion of a marked prompt, i % 4 otherwise (a group's rows are consecutive,
    so each unmarked group gets 0, 1, 2, 3); records for every row it scores whether the row was marked."""

    def reward(prompts, completions, **_):
        marked = [MARK in str(p) for p in prompts]
        scored.extend(marked)
        return [0.0 if m else float(i % 4) for i, m in enumerate(marked)]

    return reward


@pytest.fixture()
def marked_dataset(srl_rows) -> Dataset:
    """The SRL rows with MARK put at the start of every other row's user message."""
    rows = []
    for i, r in enumerate(srl_rows):
        prompt = [dict(m) for m in r["prompt"]]
        if i % 2 == 0:
            user = next(m for m in prompt if m["role"] == "user")
            user["content"] = f"{MARK} {user['content']}"
        rows.append({"prompt": prompt, "expert_step": r["expert_step"]})
    return Dataset.from_list(rows)


def _train_and_capture(tiny_model_dir, dataset, grpo_kwargs, **config):
    """Train STEPS steps; return the trainer, the decoded prompts of every optimiser batch, the prompts of the
    refill rounds, and for every generated row whether it was marked (flat)."""
    model, tok = AutoModelForCausalLM.from_pretrained(tiny_model_dir), AutoTokenizer.from_pretrained(tiny_model_dir)
    args = SRLConfig(**grpo_kwargs(max_steps=STEPS), **config)
    scored: list[bool] = []
    trainer = SRLTrainer(model=model, args=args, train_dataset=dataset, processing_class=tok,
                         reward_funcs=[flat_if_marked(scored)])
    optimiser_batches: list[list[str]] = []
    refill_prompts: list[str] = []

    original_loss = trainer.compute_loss

    def capturing_loss(model, inputs, *args, **kwargs):
        # the rows the loss can learn from: a row whose completion mask is all zero trains on nothing
        ids, mask = inputs["prompt_ids"], inputs["prompt_mask"].bool()
        trained = inputs["completion_mask"].sum(1) > 0
        optimiser_batches.append([tok.decode(row[m].tolist()) for row, m, t in zip(ids, mask, trained) if t])
        return original_loss(model, inputs, *args, **kwargs)

    original_refill = trainer._refill_batch

    def recording_refill():
        batch = original_refill()
        refill_prompts.extend(tok.apply_chat_template(x["prompt"], tokenize=False, add_generation_prompt=True)
                              for x in batch)
        return batch

    trainer.compute_loss = capturing_loss
    trainer._refill_batch = recording_refill
    trainer.train()
    return trainer, optimiser_batches, refill_prompts, scored


def _rendered(dataset, tok) -> tuple[set[str], set[str]]:
    texts = [tok.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in dataset["prompt"]]
    return {t for t in texts if MARK in t}, {t for t in texts if MARK not in t}


def test_flat_groups_never_reach_the_optimiser(tiny_model_dir, marked_dataset, grpo_kwargs):
    trainer, batches, refill_prompts, scored = _train_and_capture(
        tiny_model_dir, marked_dataset, grpo_kwargs, dynamic_sampling=True, max_refill_rounds=12)
    flat, informative = _rendered(marked_dataset, trainer.processing_class)
    logs = [h for h in trainer.state.log_history if "dynamic_sampling/rounds" in h]
    assert len(batches) == STEPS == len(logs)
    # precondition: the refill budget sufficed, so the batch never had to be topped up with dropped groups
    assert all(h["dynamic_sampling/short_of_target"] == 0 for h in logs), logs

    seen = [p for batch in batches for p in batch]
    assert all(len(b) == trainer.args.per_device_train_batch_size for b in batches)
    leaked = [p for p in seen if MARK in p]
    assert not leaked, f"{len(leaked)} rows of flat groups reached the optimiser"
    assert seen and all(p in informative for p in seen), "a decoded prompt is not one of the dataset's prompts"
    # refilled: flat groups were generated (and dropped), more rows were generated than trained on,
    # and prompts of refill rounds were trained on
    assert any(scored), "no flat group was generated, so nothing was tested"
    assert len(scored) > STEPS * trainer.args.per_device_train_batch_size
    assert any(h["dynamic_sampling/rounds"] > 1 for h in logs)
    assert set(seen) & set(refill_prompts), "no prompt of a refill round reached the optimiser"


def test_capture_sees_flat_groups_without_dynamic_sampling(tiny_model_dir, marked_dataset, grpo_kwargs):
    """The control: the same run with dynamic sampling off does train on flat groups, and the capture sees them."""
    trainer, batches, refill_prompts, scored = _train_and_capture(
        tiny_model_dir, marked_dataset, grpo_kwargs, dynamic_sampling=False)
    flat, informative = _rendered(marked_dataset, trainer.processing_class)
    seen = [p for batch in batches for p in batch]
    assert len(batches) == STEPS and not refill_prompts
    assert len(scored) == STEPS * trainer.args.per_device_train_batch_size
    assert all(p in flat | informative for p in seen)
    assert any(p in flat for p in seen), "with dynamic sampling off, flat groups must reach the optimiser"
    assert any(p in informative for p in seen)


def test_spent_refill_budget_shrinks_the_batch_instead_of_adding_flat_groups(tiny_model_dir, marked_dataset,
                                                                              grpo_kwargs):
    """One generation round only: the flat groups it drew are not used to top the batch up."""
    trainer, batches, refill_prompts, scored = _train_and_capture(
        tiny_model_dir, marked_dataset, grpo_kwargs, dynamic_sampling=True, max_refill_rounds=1)
    logs = [h for h in trainer.state.log_history if "dynamic_sampling/rounds" in h]
    seen = [p for batch in batches for p in batch]
    assert not refill_prompts and any(scored), "precondition: flat groups were drawn and no refill ran"
    assert not [p for p in seen if MARK in p], "flat groups topped up the batch"
    full = trainer.args.per_device_train_batch_size
    assert any(len(b) < full for b in batches)
    for batch, log in zip(batches, logs):
        assert len(batch) == round(full * (1 - log["dynamic_sampling/short_of_target"]))
        assert torch.isfinite(torch.tensor(log["loss"]))  # a step with nothing to learn must not make NaN
