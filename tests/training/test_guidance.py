"""Expert-guided rollouts (``guide_rollouts``): the last rollouts of every group are the expert step, in every
generation round (refills included), and what reaches the optimiser carries them."""

from __future__ import annotations

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from srl_rlvr.rewards.trl_batch import completion_text
from srl_rlvr.training.guidance import guide_completion
from srl_rlvr.training.srl_config import SRLConfig
from srl_rlvr.training.srl_trainer import SRLTrainer


def _recording_reward(seen: list[tuple[str, str]]):
    """A reward spread within every group (so no group is flat) that records (completion, expert_step)."""

    def reward(completions, expert_step, **_):
        seen.extend(zip(map(completion_text, completions), expert_step))
        return [float(i % 4) for i in range(len(completions))]

    return reward


def _train(tiny_model_dir, srl_dataset, stage_kwargs, **config):
    model, tok = AutoModelForCausalLM.from_pretrained(tiny_model_dir), AutoTokenizer.from_pretrained(tiny_model_dir)
    seen: list[tuple[str, str]] = []
    args = SRLConfig(**stage_kwargs(max_steps=2, max_completion_length=48, **config))
    trainer = SRLTrainer(model=model, args=args, train_dataset=srl_dataset, processing_class=tok,
                         reward_funcs=[_recording_reward(seen)])
    trained: list[str] = []
    original_loss = trainer.compute_loss

    def capturing_loss(model, inputs, *a, **kw):
        ids, mask = inputs["completion_ids"], inputs["completion_mask"].bool()
        trained.extend(tok.decode(row[m].tolist(), skip_special_tokens=True) for row, m in zip(ids, mask))
        return original_loss(model, inputs, *a, **kw)

    trainer.compute_loss = capturing_loss
    trainer.train()
    return trainer, seen, trained


@pytest.mark.parametrize("prefill", ["empty", True])
def test_last_rollout_of_every_group_is_the_expert_step(tiny_model_dir, srl_dataset, stage_kwargs, prefill):
    trainer, seen, trained = _train(tiny_model_dir, srl_dataset, stage_kwargs, guide_rollouts=1,
                                    think_prefill=prefill, max_refill_rounds=2)
    assert len(seen) == 2 * 8 and trainer.guided_completions == 4  # 2 steps x 2 groups, one guide each
    for start in range(0, len(seen), 4):
        group = seen[start : start + 4]
        expert = group[0][1]
        assert {e for _, e in group} == {expert}  # one prompt per block of 4
        # what the model would have written after the prefill: prefill + it = "<think></think>" + the expert step
        assert group[3][0] == guide_completion(expert, prefill)
        assert all(c != guide_completion(expert, prefill) for c, _ in group[:3])  # the model's own tries
    guided = {guide_completion(e, prefill) for _, e in seen}
    assert guided & set(trained)  # the guide rows reach the optimiser


def test_without_guidance_no_rollout_is_the_expert_step(tiny_model_dir, srl_dataset, stage_kwargs):
    trainer, seen, _ = _train(tiny_model_dir, srl_dataset, stage_kwargs, think_prefill="empty")
    assert trainer.guided_completions == 0
    assert all(c != guide_completion(e, "empty") for c, e in seen)


def test_refill_rounds_are_guided_too(tiny_model_dir, srl_dataset, stage_kwargs):
    """A reward flat on every first round forces a refill; the refill's groups carry the guide as well."""
    model, tok = AutoModelForCausalLM.from_pretrained(tiny_model_dir), AutoTokenizer.from_pretrained(tiny_model_dir)
    calls: list[list[tuple[str, str]]] = []

    def flat_then_spread(completions, expert_step, **_):
        calls.append(list(zip(map(completion_text, completions), expert_step)))
        flat = len(calls) % 2 == 1  # per step: the first round flat (all dropped), its refill spread
        return [0.0 if flat else float(i % 4) for i in range(len(completions))]

    args = SRLConfig(**stage_kwargs(max_steps=1, max_completion_length=48, max_refill_rounds=2,
                                    think_prefill="empty", guide_rollouts=1))
    trainer = SRLTrainer(model=model, args=args, train_dataset=srl_dataset, processing_class=tok,
                         reward_funcs=[flat_then_spread])
    trainer.train()
    assert len(calls) == 2  # the first round and one refill
    for rows in calls:
        for start in range(0, len(rows), 4):
            completion, expert = rows[start + 3]
            assert completion == guide_completion(expert, "empty")


def test_guides_must_leave_a_sampled_rollout(stage_kwargs):
    with pytest.raises(ValueError, match="guide_rollouts"):
        SRLConfig(**stage_kwargs(guide_rollouts=4))
    with pytest.raises(ValueError, match="guide_rollouts"):
        SRLConfig(**stage_kwargs(guide_rollouts=-1))
