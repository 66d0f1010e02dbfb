"""Completion tokens/s of our SRLTrainer against plain TRL GRPOTrainer, side by side, in one run.

Equal work on both sides: the same model, SRL prompts, reward (lenient SRL), batch, rollouts per prompt,
completion length, seed and number of optimiser steps. Dynamic sampling is off for ours (it would
generate more), so each side generates and trains on exactly batch x steps completions. Only the
implementation differs:

* plain  — GRPOTrainer with TRL's defaults (activation checkpointing on, bf16 mixed precision);
* ours   — SRLTrainer: one prompt prefill shared by each group's rollouts, sampling under autocast,
           no activation checkpointing (a 135M model fits easily).

    python bench/train_throughput.py                 # embedded SmolLM2-135M, 3 steps each
    python bench/train_throughput.py --model tiny    # seconds; a smoke run of the script itself

The first optimiser step of each side is warm-up and is not counted.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
from trl import GRPOConfig, GRPOTrainer

from srl_rlvr.data.demo import make_demo_task
from srl_rlvr.data.schema import Trajectory
from srl_rlvr.data.srl import build_instances
from srl_rlvr.models import build_tiny_model, resolve_model
from srl_rlvr.rewards import get_reward_func
from srl_rlvr.training.srl_config import SRLConfig
from srl_rlvr.training.srl_trainer import SRLTrainer


class StepClock(TrainerCallback):
    def __init__(self):
        self.stamps: list[float] = []

    def on_step_end(self, args, state, control, **kwargs):
        self.stamps.append(time.perf_counter())


def run(side: str, model_path: str, dataset: Dataset, a: argparse.Namespace, out: Path) -> dict:
    torch.manual_seed(a.seed)
    model = AutoModelForCausalLM.from_pretrained(model_path)
    tok = AutoTokenizer.from_pretrained(model_path)
    common = dict(
        output_dir=str(out / side), per_device_train_batch_size=a.prompts * a.rollouts, num_generations=a.rollouts,
        max_completion_length=a.max_completion_length, max_steps=a.steps, learning_rate=1e-6, logging_steps=1,
        report_to=[], save_strategy="no", use_cpu=not torch.cuda.is_available(), seed=a.seed, disable_tqdm=True,
        temperature=1.0, beta=0.0,
    )
    clock = StepClock()
    if side == "plain":
        trainer = GRPOTrainer(model=model, reward_funcs=[get_reward_func("srl_lenient")], args=GRPOConfig(**common),
                              train_dataset=dataset, processing_class=tok, callbacks=[clock])
    else:
        args = SRLConfig(**common, reward_mode="lenient", dynamic_sampling=False, gradient_checkpointing=False)
        trainer = SRLTrainer(model=model, args=args, train_dataset=dataset, processing_class=tok, callbacks=[clock])
    start = time.perf_counter()
    trainer.train()
    logs = [h for h in trainer.state.log_history if "completions/mean_length" in h]
    rows = a.prompts * a.rollouts
    tokens = sum(h["completions/mean_length"] * rows for h in logs[1:])
    seconds = clock.stamps[-1] - clock.stamps[0]
    return {"side": side, "tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / seconds,
            "total_seconds": time.perf_counter() - start}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="smollm2-135m", help="model name/path, or 'tiny' for a smoke run")
    p.add_argument("--prompts", type=int, default=4, help="prompts per optimiser step")
    p.add_argument("--rollouts", type=int, default=8)
    p.add_argument("--max-completion-length", type=int, default=64)
    p.add_argument("--steps", type=int, default=3, help="optimiser steps per side (the first is warm-up)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="also write the results here")
    a = p.parse_args()
    out = Path(tempfile.mkdtemp(prefix="bench-train-"))
    model_path = str(build_tiny_model(out / "tiny")) if a.model == "tiny" else resolve_model(a.model)
    train, _ = make_demo_task(n_train=200, n_test=10, seed=a.seed)
    rows = build_instances([Trajectory(**t) for t in train]).instances
    dataset = Dataset.from_list([{"prompt": r["prompt"], "expert_step": r["expert_step"]} for r in rows])
    results = [run(side, model_path, dataset, a, out) for side in ("plain", "ours")]
    print(f"model {a.model}: {a.prompts} prompts x {a.rollouts} rollouts, <= {a.max_completion_length} new tokens, "
          f"{a.steps - 1} timed steps per side")
    for r in results:
        print(f"  {r['side']:<6} {r['tokens']:8.0f} completion tokens in {r['seconds']:7.1f} s = {r['tokens_per_s']:7.1f} tok/s")
    ratio = results[1]["tokens_per_s"] / results[0]["tokens_per_s"]
    print(f"ours/plain completion tokens/s: {ratio:.2f}x")
    if a.json:
        Path(a.json).write_text(json.dumps({"results": results, "ratio": ratio, "args": vars(a)}, indent=2))


if __name__ == "__main__":
    main()
