"""SRLTrainer trains (parameters move), and dynamic sampling really drops and refills flat groups."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

from srl_rlvr.training.generation import generate_shared_prefix
from srl_rlvr.training.srl_config import SRLConfig
from srl_rlvr.training.srl_trainer import SRLTrainer, prefilled


def _load(tiny_model_dir):
    return AutoModelForCausalLM.from_pretrained(tiny_model_dir), AutoTokenizer.from_pretrained(tiny_model_dir)


def test_srl_trainer_updates_parameters_and_logs_sampling(tiny_model_dir, srl_dataset, grpo_kwargs):
    model, tok = _load(tiny_model_dir)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    args = SRLConfig(**grpo_kwargs(), reward_mode="lenient")
    trainer = SRLTrainer(model=model, args=args, train_dataset=srl_dataset, processing_class=tok)
    trainer.train()
    changed = [n for n, p in model.named_parameters() if not torch.equal(before[n], p.detach())]
    assert changed, "no parameter moved"
    logs = [h for h in trainer.state.log_history if "dynamic_sampling/rounds" in h]
    assert logs and all(1 <= h["dynamic_sampling/rounds"] <= args.max_refill_rounds for h in logs)
    assert trainer.state.global_step == 2


def test_flat_groups_are_dropped_and_refilled(tiny_model_dir, srl_dataset, grpo_kwargs):
    """A reward that is constant on half the prompts: those groups must never reach the optimiser."""
    flat = set(srl_dataset["expert_step"][::2])
    seen_batches = []

    def reward(completions, expert_step, **_):
        return [1.0 if e in flat else float(len(c[0]["content"]) % 5) for c, e in zip(completions, expert_step)]

    model, tok = _load(tiny_model_dir)
    args = SRLConfig(**grpo_kwargs(max_steps=1), max_refill_rounds=6)
    trainer = SRLTrainer(model=model, args=args, train_dataset=srl_dataset, processing_class=tok,
                         reward_funcs=[reward])
    original = trainer._generate_and_score_completions

    def spy(inputs):
        out = original(inputs)
        seen_batches.append(out)
        return out

    trainer._generate_and_score_completions = spy
    trainer.train()
    batch = seen_batches[0]
    rounds = trainer.state.log_history[0]["dynamic_sampling/rounds"]
    assert rounds > 1, "half the groups were flat, so a refill round must have run"
    n_rows = batch["advantages"].numel()
    short = trainer.state.log_history[0]["dynamic_sampling/short_of_target"]
    assert n_rows == round(args.per_device_train_batch_size * (1 - short))  # never topped up with flat groups
    # every group that reached the optimiser is informative (a row of it may still sit at the group mean)
    groups = batch["advantages"].view(-1, args.num_generations)
    assert bool((groups.abs().amax(dim=1) > 0).all()), groups


def test_shared_prefix_generation_matches_plain_generate(tiny_model_dir):
    model, tok = _load(tiny_model_dir)
    prompts = [tok("Mia has 3 apples and 4 pears")["input_ids"], tok("Tom has 5")["input_ids"]]
    rows = [prompts[0], prompts[0], prompts[1], prompts[0]]
    cfg = GenerationConfig(max_new_tokens=8, do_sample=False, pad_token_id=tok.pad_token_id,
                           eos_token_id=tok.eos_token_id)
    ours = generate_shared_prefix(model, rows, cfg, tok.pad_token_id)
    for i, ids in enumerate(rows):
        plain = model.generate(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                               generation_config=cfg)[0, len(ids):]
        assert ours[i, : plain.numel()].tolist() == plain.tolist()


def test_think_prefill_is_scored_with_its_tag(tiny_model_dir, srl_rows, grpo_kwargs, tmp_path):
    """With think_prefill the prompt ends in <think> and every reward call sees '<think>' + completion."""
    from srl_rlvr.data.srl import write_jsonl
    from srl_rlvr.training.stages import build_srl_trainer

    seen = []

    def reward(completions, **_):
        seen.extend(completions)
        return [float(len(c) % 3) for c in completions]

    write_jsonl(tmp_path / "srl.jsonl", srl_rows)
    args = SRLConfig(**grpo_kwargs(max_steps=1), think_prefill=True, max_refill_rounds=1)
    trainer = build_srl_trainer(str(tiny_model_dir), tmp_path / "srl.jsonl", args)
    assert trainer.train_dataset[0]["prompt"].endswith("<|im_start|>assistant\n<think>")
    from srl_rlvr.training.srl_trainer import prefilled

    # the trainer's own wrapper around a recording reward; the weight-0 format metric stays second
    trainer.reward_funcs = [prefilled(reward), trainer.reward_funcs[1]]
    trainer.train()
    assert seen and all(c.startswith("<think>") for c in seen)


def test_empty_think_prefill_prompts_and_scores_the_closed_monologue(tiny_model_dir, srl_rows, grpo_kwargs, tmp_path):
    """think_prefill: empty ends the prompt with '<think></think>'; rewards see it in front of the step, and
    the stage manifest records it so RLVR, eval and serving prompt the model the same way."""
    from srl_rlvr.data.srl import write_jsonl
    from srl_rlvr.eval.harness import model_think_prefill
    from srl_rlvr.training.stages import build_srl_trainer, train_srl

    write_jsonl(tmp_path / "srl.jsonl", srl_rows)
    args = SRLConfig(**grpo_kwargs(max_steps=1), think_prefill="empty", max_refill_rounds=1)
    trainer = build_srl_trainer(str(tiny_model_dir), tmp_path / "srl.jsonl", args)
    assert trainer.train_dataset[0]["prompt"].endswith("<|im_start|>assistant\n<think></think>")
    seen = []

    def reward(completions, **_):
        seen.extend(completions)
        return [float(len(c) % 3) for c in completions]

    trainer.reward_funcs = [prefilled(reward, "empty"), trainer.reward_funcs[1]]
    trainer.train()
    assert seen and all(c.startswith("<think></think>") for c in seen)
    out = tmp_path / "run"
    train_srl(str(tiny_model_dir), tmp_path / "srl.jsonl",
              SRLConfig(**grpo_kwargs(max_steps=1, output_dir=str(out)), think_prefill="empty", max_refill_rounds=1))
    assert model_think_prefill(str(out / "final")) == "empty"


def test_think_prefill_rejects_unknown_values(grpo_kwargs):
    with pytest.raises(ValueError, match="think_prefill must be true, false or 'empty'"):
        SRLConfig(**grpo_kwargs(max_steps=1), think_prefill="open")


def test_a_shrunk_batch_with_gradient_accumulation_trains_every_informative_row(tiny_model_dir, srl_dataset,
                                                                                grpo_kwargs):
    """Flat groups dropped with no refill left, and 2 micro-batches per generation: TRL splits the batch in
    equal parts and drops a remainder, so the batch is padded with untrained rows; none is lost or empty."""
    flat = set(srl_dataset["expert_step"][::2])

    def reward(completions, expert_step, **_):
        return [1.0 if e in flat else float(len(c[0]["content"]) % 5) for c, e in zip(completions, expert_step)]

    model, tok = _load(tiny_model_dir)
    args = SRLConfig(**grpo_kwargs(max_steps=2, per_device_train_batch_size=3, gradient_accumulation_steps=2,
                                   num_generations=2), max_refill_rounds=1)
    trainer = SRLTrainer(model=model, args=args, train_dataset=srl_dataset, processing_class=tok,
                         reward_funcs=[reward])
    trained_rows = []
    original = trainer.compute_loss

    def spy(model, inputs, *a, **kw):
        trained_rows.append(int(inputs["completion_mask"].any(dim=1).sum()))
        assert inputs["completion_mask"].size(0) > 0, "an empty micro-batch"
        return original(model, inputs, *a, **kw)

    trainer.compute_loss = spy
    trainer.train()
    assert len(trained_rows) == 4  # 2 steps x 2 micro-batches
    assert sum(trained_rows) == len(trainer.trained_samples)  # every informative row reached the loss
