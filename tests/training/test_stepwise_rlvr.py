"""Trajectory RLVR (prompt_mode 'stepwise'): rollouts built as eval builds them, every call trained with its
trajectory's advantage, and no call of a flat group reaching the optimiser (decoded at compute_loss)."""

from __future__ import annotations

import pytest
import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer

from srl_rlvr.errors import UserInputError
from srl_rlvr.prompts import render_generation_prompt, srl_step_messages
from srl_rlvr.training import trajectory
from srl_rlvr.training.rlvr_config import RLVRConfig
from srl_rlvr.training.rlvr_trainer import RLVRTrainer
from srl_rlvr.training.trajectory import call_batch, group_advantages, roll_out

MARK = "FLATMARK"
STEPS = 3


@pytest.fixture()
def tok(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


def scripted_sampler(tok, steps_by_problem: dict[str, list[str]]):
    """A sampler that writes, for the problem in each prompt, its next scripted step (with EOS); records prompts."""
    seen: list[str] = []

    def sample(prompt_ids):
        out = []
        for ids in prompt_ids:
            text = tok.decode(ids)
            seen.append(text)
            problem = next(p for p in steps_by_problem if p in text)
            k = text.count("Step ") + 1  # earlier steps are listed as "Step i: ..."
            out.append(tok(steps_by_problem[problem][k - 1], add_special_tokens=False)["input_ids"]
                       + [tok.eos_token_id])
        return out

    return sample, seen


def test_roll_out_reprompts_with_the_models_own_steps_and_stops_at_the_answer(tok):
    script = {"Ann has 3 bags": ["3 * 4 = 12 pens.", "12 + 5 = 17 pens. The answer is 17.", "never reached"],
              "Bo has 9 cards": ["9 - 2 = 7.", "7 + 1 = 8.", "8 + 1 = 9."]}
    sample, seen = scripted_sampler(tok, script)
    problems = ["Ann has 3 bags of 4 pens and buys 5. Pens?", "Bo has 9 cards and loses 2. Cards?"]
    out = roll_out(sample, tok, problems, ["17", "7"], "empty", max_calls=3)
    ann, bo = out
    assert ann.steps == ["3 * 4 = 12 pens.", "12 + 5 = 17 pens. The answer is 17."] and ann.done
    assert ann.reward == 1.0
    assert len(bo.calls) == 3 and not bo.done and bo.reward == 0.0  # 3 calls, never an answer: wrong
    # call 2's prompt is eval's step prompt with the model's own step 1, prefill included
    expected = render_generation_prompt(tok, srl_step_messages(problems[0], ["3 * 4 = 12 pens."], 2), "empty")
    assert tok.decode(ann.calls[1][0]) == expected
    assert ann.calls[1][1][-1] == tok.eos_token_id
    assert len(seen) == 5  # 2 + 2 + 1: the ended rollout is not called again


def test_group_advantages_follow_trl():
    rewards = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0])
    adv = group_advantages(rewards, 4, "group")
    groups = rewards.view(2, 4)
    expected = ((groups - groups.mean(1, keepdim=True)) / (groups.std(1, keepdim=True) + 1e-4)).flatten()
    assert torch.allclose(adv, expected)
    assert adv[:4].sum().abs() < 1e-5 and adv[0] > 0 > adv[1]
    with pytest.raises(ValueError, match="scale_rewards"):
        group_advantages(rewards, 4, "weird")


def test_call_batch_one_row_per_call_with_its_trajectorys_advantage():
    a = trajectory.Trajectory(0, calls=[([1, 2, 3], [7, 8]), ([1, 2, 3, 4], [9])])
    b = trajectory.Trajectory(1, calls=[([5], [6, 6, 6])])
    out = call_batch([a, b], [0.5, -0.5], pad_id=0, multiple_of=2)
    assert out["advantages"].tolist() == [0.5, 0.5, -0.5, 0.0]  # padded to 4 rows, the pad row has 0
    assert out["prompt_ids"].tolist()[2] == [0, 0, 0, 5] and out["prompt_mask"].tolist()[2] == [0, 0, 0, 1]
    assert out["completion_ids"].tolist()[1] == [9, 0, 0] and out["completion_mask"].tolist()[1] == [1, 0, 0]
    assert out["completion_mask"][3].sum() == 0  # the pad row trains on nothing
    assert int(out["num_items_in_batch"]) == 2 + 1 + 3


def _dataset(n: int) -> Dataset:
    rows = []
    for i in range(n):
        mark = f"{MARK} " if i % 2 == 0 else ""
        problem = f"{mark}Problem {i}: Cy has {i + 2} apples and eats 1. How many apples?"
        rows.append({"prompt": srl_step_messages(problem, [], 1), "problem": problem, "answer": str(i + 1)})
    return Dataset.from_list(rows)


def _train(tiny_model_dir, grpo_kwargs, monkeypatch, **config):
    """A real RLVRTrainer on the tiny model with a reward under the test's control: 0 for every trajectory of
    a marked problem (flat), 1 and 0 alternating otherwise; returns the trainer and every optimiser batch's
    decoded prompts of the rows that train."""
    counter = iter(range(10**6))

    def reward(solution, answer):
        return 0.0 if answer in flat_answers else float(next(counter) % 2)

    ds = _dataset(8)
    flat_answers = {r["answer"] for r in ds if MARK in r["problem"]}
    monkeypatch.setattr(trajectory, "math_answer_reward", reward)
    model, tok = AutoModelForCausalLM.from_pretrained(tiny_model_dir), AutoTokenizer.from_pretrained(tiny_model_dir)
    args = RLVRConfig(**grpo_kwargs(max_steps=STEPS, max_completion_length=6), prompt_mode="stepwise",
                      stepwise_max_calls=2, **config)
    trainer = RLVRTrainer(model=model, args=args, train_dataset=ds, processing_class=tok)
    batches: list[list[str]] = []
    original = trainer.compute_loss

    def capturing(model, inputs, *a, **kw):
        ids, mask = inputs["prompt_ids"], inputs["prompt_mask"].bool()
        trained = inputs["completion_mask"].sum(1) > 0
        batches.append([tok.decode(r[m].tolist()) for r, m, t in zip(ids, mask, trained) if t])
        return original(model, inputs, *a, **kw)

    trainer.compute_loss = capturing
    trainer.train()
    return trainer, batches


def test_flat_trajectory_groups_never_reach_the_optimiser(tiny_model_dir, grpo_kwargs, monkeypatch):
    trainer, batches = _train(tiny_model_dir, grpo_kwargs, monkeypatch, max_refill_rounds=8)
    logs = [h for h in trainer.state.log_history if "rlvr/calls_per_trajectory" in h]
    assert len(batches) == STEPS == len(logs)
    seen = [p for b in batches for p in b]
    assert seen and not [p for p in seen if MARK in p], "a call of a flat group reached the optimiser"
    assert all("Problem " in p for p in seen)
    assert any(h["dynamic_sampling/rounds"] > 1 for h in logs)  # flat groups were drawn, dropped and refilled
    assert all(1 <= h["rlvr/calls_per_trajectory"] <= 2 for h in logs)
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in logs)


def test_capture_sees_flat_trajectory_groups_without_dynamic_sampling(tiny_model_dir, grpo_kwargs, monkeypatch):
    _, batches = _train(tiny_model_dir, grpo_kwargs, monkeypatch, dynamic_sampling=False)
    assert any(MARK in p for b in batches for p in b), "the control must see flat groups"


def test_stepwise_refuses_what_it_does_not_compute(tiny_model_dir, grpo_kwargs):
    model, tok = AutoModelForCausalLM.from_pretrained(tiny_model_dir), AutoTokenizer.from_pretrained(tiny_model_dir)
    args = RLVRConfig(**grpo_kwargs(), prompt_mode="stepwise", beta=0.1)
    with pytest.raises(ValueError, match="beta 0"):
        RLVRTrainer(model=model, args=args, train_dataset=_dataset(4), processing_class=tok)
    with pytest.raises(ValueError, match="stepwise_max_calls"):
        RLVRConfig(**grpo_kwargs(), prompt_mode="stepwise", stepwise_max_calls=0)


def test_step_reward_separates_an_all_wrong_group_and_charges_for_stopping_early(tok):
    """With every answer wrong the answer reward is flat; the step term still ranks the trajectory that
    follows the expert's steps above the one that stops after one step with a guess."""
    expert = ["After doubling, he has 10 * 2 = 20 coins.", "After giving 2 away, he has 20 - 2 = 18 coins.",
              "After doubling, he has 18 * 2 = 36 coins. The answer is 36."]
    follows = ["After doubling, he has 10 * 2 = 20 coins.", "After giving 2 away, he has 20 - 2 = 18 coins.",
               "After doubling, he has 18 * 2 = 38 coins. The answer is 38."]  # one slip: wrong answer
    stops = ["After doubling, he has 10 * 2 = 20 coins. The answer is 20."]
    problems = ["Lucas has 10 coins and doubles them", "Lucas has 10 coins, doubles, gives"]
    sample, _ = scripted_sampler(tok, {problems[0]: follows, problems[1]: stops + ["unused", "unused"]})
    long, short = roll_out(sample, tok, problems, ["36", "36"], "empty", max_calls=3,
                           expert_steps=[expert, expert], step_weight=1.0)
    assert long.answer_reward == short.answer_reward == 0.0
    assert len(short.calls) == 1 and short.step_score < 1 / 3  # two expert steps skipped score 0
    assert long.step_score > 0.95 and long.reward == pytest.approx(long.step_score)
    assert long.reward > short.reward + 0.5
    plain = roll_out(scripted_sampler(tok, {problems[0]: follows})[0], tok, problems[:1], ["36"], "empty", 3)
    assert plain[0].reward == 0.0 and plain[0].step_score == 0.0  # weight 0: the answer reward alone
    with pytest.raises(ValueError, match="expert steps"):
        roll_out(sample, tok, problems, ["36", "36"], "empty", 3, step_weight=1.0)


def test_step_reward_is_refused_outside_stepwise(tmp_path):
    with pytest.raises(ValueError, match="only to prompt_mode 'stepwise'"):
        RLVRConfig(output_dir=str(tmp_path), prompt_mode="final_step", stepwise_step_reward=1.0, use_cpu=True)
    with pytest.raises(ValueError, match=">= 0"):
        RLVRConfig(output_dir=str(tmp_path), prompt_mode="stepwise", stepwise_step_reward=-1.0, use_cpu=True)


def test_step_reward_trains_and_logs_its_terms_and_needs_the_expert_steps(tiny_model_dir, grpo_kwargs):
    model, tok = AutoModelForCausalLM.from_pretrained(tiny_model_dir), AutoTokenizer.from_pretrained(tiny_model_dir)
    args = RLVRConfig(**grpo_kwargs(max_steps=1, max_completion_length=6), prompt_mode="stepwise",
                      stepwise_max_calls=2, stepwise_step_reward=0.5)
    with pytest.raises(UserInputError, match="expert_steps"):
        RLVRTrainer(model=model, args=args, train_dataset=_dataset(4), processing_class=tok)
    ds = _dataset(4).map(lambda r: {"expert_steps": ["Cy eats 1 apple.", "The answer is 1."]})
    trainer = RLVRTrainer(model=model, args=args, train_dataset=ds, processing_class=tok)
    trainer.train()
    log = next(h for h in trainer.state.log_history if "rlvr/step_score" in h)
    assert 0.0 <= log["rlvr/answer_reward"] <= 1.0 and 0.0 <= log["rlvr/step_score"] <= 1.0
    assert torch.isfinite(torch.tensor(log["loss"]))
