"""Measure SRL training throughput on this machine's CPU, for the cpu tier's ``throughput`` block.

Runs a few SRLTrainer steps of the embedded SmolLM2-135M with the cpu tier's batch settings and prints
completion tokens/s (generation only, and end to end), seconds per optimiser step, and the share of a
step that is not generation. The first step is warm-up (allocator, autocast caches) and is not counted.

    python scripts/measure_cpu_throughput.py                 # embedded SmolLM2-135M, ~3-6 min on 2 cores
    python scripts/measure_cpu_throughput.py --model tiny    # seconds; a smoke run of the script itself

Dynamic sampling is off by default, so every step generates exactly prompts x rollouts completions and
the figure is per rollout; the estimator applies refills separately (``throughput.refill_factor``).
The numbers depend on what else the machine is running: say so when you quote them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

from srl_rlvr.data.demo import make_demo_task
from srl_rlvr.data.schema import Trajectory
from srl_rlvr.data.srl import build_instances
from srl_rlvr.models import build_tiny_model, resolve_model
from srl_rlvr.training.srl_config import SRLConfig
from srl_rlvr.training.srl_trainer import SRLTrainer


class StepClock(TrainerCallback):
    """Wall time of every optimiser step."""

    def __init__(self) -> None:
        self.durations: list[float] = []
        self._start = 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        self._start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.durations.append(time.perf_counter() - self._start)


class GenerationMeter:
    """Wraps the trainer's rollout generator: (step index, seconds generating, completion tokens) per call."""

    def __init__(self, trainer: SRLTrainer, clock: StepClock) -> None:
        self.calls: list[tuple[int, float, int]] = []
        inner = trainer._generate_single_turn

        def timed(*args: Any, **kwargs: Any):
            start = time.perf_counter()
            out = inner(*args, **kwargs)
            completion_ids = out[0]
            # lengths up to and including EOS: what TRL's completion mask and completions/mean_length count
            tokens = sum(len(ids) for ids in completion_ids)
            self.calls.append((len(clock.durations), time.perf_counter() - start, tokens))
            return out

        trainer._generate_single_turn = timed


def srl_demo_dataset(n_train: int, seed: int) -> Dataset:
    train, _ = make_demo_task(n_train=n_train, n_test=2, seed=seed)
    rows = build_instances([Trajectory(**t) for t in train]).instances
    return Dataset.from_list([{"prompt": r["prompt"], "expert_step": r["expert_step"]} for r in rows])


def measure(a: argparse.Namespace) -> dict[str, Any]:
    out = Path(tempfile.mkdtemp(prefix="measure-cpu-"))
    model_path = str(build_tiny_model(out / "tiny")) if a.model == "tiny" else resolve_model(a.model)
    torch.manual_seed(a.seed)
    model = AutoModelForCausalLM.from_pretrained(model_path)
    tok = AutoTokenizer.from_pretrained(model_path)
    args = SRLConfig(
        output_dir=str(out / "run"), per_device_train_batch_size=a.prompts * a.rollouts, num_generations=a.rollouts,
        max_completion_length=a.max_completion_length, max_steps=a.steps, learning_rate=1e-6, logging_steps=1,
        report_to=[], save_strategy="no", use_cpu=True, seed=a.seed, disable_tqdm=True, temperature=1.0, beta=0.0,
        bf16=a.bf16, gradient_checkpointing=False, reward_mode="lenient", dynamic_sampling=a.dynamic_sampling,
    )
    clock = StepClock()
    load_before = os.getloadavg()[0]
    trainer = SRLTrainer(model=model, args=args, train_dataset=srl_demo_dataset(200, a.seed), processing_class=tok,
                         callbacks=[clock])
    meter = GenerationMeter(trainer, clock)
    trainer.train()
    timed_steps = clock.durations[1:]
    timed_calls = [(s, n) for step, s, n in meter.calls if step >= 1]  # step 0 is warm-up
    step_seconds = sum(timed_steps)
    gen_seconds = sum(s for s, _ in timed_calls)
    tokens = sum(n for _, n in timed_calls)
    rows = a.prompts * a.rollouts * len(timed_calls)  # completions generated in the timed steps
    return {
        "model": a.model, "prompts": a.prompts, "rollouts": a.rollouts,
        "max_completion_length": a.max_completion_length,
        "bf16": a.bf16, "dynamic_sampling": a.dynamic_sampling, "timed_steps": len(timed_steps),
        "completion_tokens": tokens, "mean_completion_tokens": tokens / rows,
        "generation_seconds": gen_seconds, "step_seconds": step_seconds,
        "seconds_per_step": step_seconds / len(timed_steps),
        "generation_tokens_per_s": tokens / gen_seconds, "end_to_end_tokens_per_s": tokens / step_seconds,
        "train_share": 1.0 - gen_seconds / step_seconds,
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],  # other work on the machine
        "torch_threads": torch.get_num_threads(), "cpus": os.cpu_count(), "cpu": _cpu_name(),
        "date": dt.date.today().isoformat(),
    }


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def throughput_yaml(r: dict[str, Any]) -> str:
    """The block to paste into tiers/cpu.yaml (keys the tier estimator reads, plus the run's context)."""
    return "\n".join([
        "throughput:",
        "  measured: true",
        f"  source: \"{r['cpus']} shared {r['cpu']} cores "
        f"(load average {r['load_average'][0]:g}-{r['load_average'][1]:g}), "
        f"{r['date']}, scripts/measure_cpu_throughput.py: {r['model']}, "
        f"{r['prompts']} prompts x {r['rollouts']} rollouts, "
        f"max_completion_length {r['max_completion_length']}, bf16 {str(r['bf16']).lower()}, "
        f"{r['timed_steps']} timed steps after 1 warm-up\"",
        f"  tokens_per_s: {r['generation_tokens_per_s']:.1f}        # completion tokens/s while generating",
        f"  train_share: {r['train_share']:.2f}          "
        "# share of step time not generating (logprobs, backward, optimiser)",
        f"  mean_completion_tokens: {r['mean_completion_tokens']:.1f}",
        f"  seconds_per_step: {r['seconds_per_step']:.1f}     # {r['prompts'] * r['rollouts']} rollouts per step",
        f"  end_to_end_tokens_per_s: {r['end_to_end_tokens_per_s']:.1f}",
        "  refill_factor: 1.0          # dynamic sampling off while measuring",
        "  price_per_hour: 0.0",
    ])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="smollm2-135m", help="model name/path, or 'tiny' for a smoke run")
    p.add_argument("--prompts", type=int, default=4, help="prompts per optimiser step")
    p.add_argument("--rollouts", type=int, default=4, help="rollouts per prompt (num_generations)")
    p.add_argument("--max-completion-length", type=int, default=48)
    p.add_argument("--steps", type=int, default=3, help="optimiser steps (the first is warm-up)")
    p.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--dynamic-sampling", action=argparse.BooleanOptionalAction, default=False)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="also write the results here")
    a = p.parse_args()
    if a.steps < 2:
        p.error("--steps must be >= 2 (the first is warm-up)")
    r = measure(a)
    print(f"{r['model']}: {r['prompts']} prompts x {r['rollouts']} rollouts, "
          f"<= {r['max_completion_length']} new tokens, "
          f"bf16={r['bf16']}, {r['timed_steps']} timed steps on {r['cpus']} CPUs ({r['torch_threads']} torch threads, "
          f"load average {r['load_average'][0]:g} before, {r['load_average'][1]:g} after)")
    print(f"  completion tokens/s (generation only): {r['generation_tokens_per_s']:.1f}")
    print(f"  completion tokens/s (end to end):      {r['end_to_end_tokens_per_s']:.1f}")
    print(f"  seconds/step: {r['seconds_per_step']:.1f}   training share of a step: {r['train_share']:.2f}   "
          f"mean completion tokens: {r['mean_completion_tokens']:.1f}")
    print(throughput_yaml(r))
    if a.json:
        Path(a.json).write_text(json.dumps(r, indent=2))


if __name__ == "__main__":
    main()
