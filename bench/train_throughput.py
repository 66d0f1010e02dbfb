"""Completion tokens/s of our SRLTrainer against plain TRL GRPOTrainer, interleaved and repeated, in one run.

    python bench/train_throughput.py --steps 3 --prompts 4 --rollouts 4 --max-completion-length 48 --repeats 3
    python bench/train_throughput.py --model tiny --steps 2 --repeats 2    # seconds; a smoke run of the script

Fair by construction: both sides get the same model (weights loaded in float32), SRL prompts, reward
function (lenient SRL, passed explicitly to both, so ours does not add its weight-0 format metric), and
the same config values for everything they share - batch, rollouts per prompt, completion length,
temperature, seed, learning rate, beta, bf16 mixed precision (``--bf16``) and activation checkpointing
(``--gradient-checkpointing``, off by default; TRL's own default is on). Dynamic sampling is off for ours
(it would generate more), so each side generates and trains on exactly batch x steps completions.

Before any timing the script builds one trainer per side, prints a table of their effective settings
(config fields, generation config, reward functions and weights, model dtype, mixed precision) and exits
non-zero if anything differs other than the implementation itself: ours shares each group's prompt
prefill in generation and in the log-prob pass and samples under the configured autocast
(``shared_prefix_generation`` / ``shared_prefix_training``). Every timed trainer is checked against that
table again, and the activation checkpointing actually active in the first step is checked as well. Ours'
training log-probs must also equal TRL's (float32, train mode, the chosen checkpointing) before anything is
timed: with ``--gradient-checkpointing on`` they do not today (checkpointed decoder layers drop the prompt KV
cache that ``shared_prefix_training`` reuses), so that mode fails until the trainer falls back there.

Each repeat trains both sides in fresh trainers, alternating which side goes first (plain, ours; ours,
plain; ...) so drift in machine load cancels. The first optimiser step of each run is warm-up and is not
timed; completion tokens are the logged mean completion length x rows of every timed step. The script
prints each repeat's tok/s per side and ratio ours/plain, then the median ratio with its min and max;
``--json PATH`` writes all of it, with the settings table and the arguments.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
from transformers.trainer_callback import PrinterCallback
from trl import GRPOConfig, GRPOTrainer

from srl_rlvr.data.demo import make_demo_task
from srl_rlvr.data.schema import Trajectory
from srl_rlvr.data.srl import build_instances
from srl_rlvr.models import build_tiny_model, resolve_model
from srl_rlvr.pipelines.config import native_bf16
from srl_rlvr.rewards import get_reward_func
from srl_rlvr.training.srl_config import SRLConfig
from srl_rlvr.training.srl_trainer import SRLTrainer

SIDES = ("plain", "ours")
# config fields that necessarily differ per side and do not touch the work done
PER_SIDE = {"output_dir", "logging_dir", "run_name"}
# ours-only fields that are the implementation being measured
IMPLEMENTATION = {"shared_prefix_generation", "shared_prefix_training"}
# ours-only fields and the value plain TRL effectively has (it has no such feature); ours must match
OURS_ONLY_AS_PLAIN = {"dynamic_sampling": False, "think_prefill": None, "guide_rollouts": 0}
# ours-only fields that do nothing once dynamic sampling is off and the reward functions are passed in
INERT = {"dynamic_sampling_epsilon", "max_refill_rounds", "reward_mode"}
# the rows always shown in the table (any other differing setting is shown too)
SHOWN = (
    "args.activation_checkpointing", "args.gradient_checkpointing", "args.activation_checkpointing_kwargs",
    "args.bf16", "args.fp16", "model.dtype", "accelerator.mixed_precision", "accelerator.device",
    "args.temperature", "args.top_p", "args.top_k", "args.min_p", "args.repetition_penalty",
    "args.max_completion_length", "generation.max_new_tokens", "generation.do_sample",
    "args.per_device_train_batch_size", "args.num_generations", "args.generation_batch_size",
    "args.steps_per_generation", "args.gradient_accumulation_steps", "args.num_iterations", "args.max_steps",
    "args.seed", "args.learning_rate", "args.beta", "args.loss_type", "args.scale_rewards",
    "args.use_vllm", "args.use_transformers_continuous_batching", "args.torch_compile", "args.use_cpu",
    "trainer.reward_funcs", "trainer.reward_weights", "trainer.train_rows", "model.class", "model.parameters",
    "args.dynamic_sampling", "args.think_prefill", "args.shared_prefix_generation", "args.shared_prefix_training",
)


class StepClock(TrainerCallback):
    """Wall time at the end of every optimiser step, and whether activation checkpointing was on in the first."""

    def __init__(self):
        self.stamps: list[float] = []
        self.gradient_checkpointing: bool | None = None

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        if self.gradient_checkpointing is None and model is not None:
            flag = getattr(model, "is_activation_checkpointing", None)
            if flag is None:
                flag = getattr(model, "is_gradient_checkpointing", False)
            self.gradient_checkpointing = bool(flag)

    def on_step_end(self, args, state, control, **kwargs):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.stamps.append(time.perf_counter())


def _plain(value: Any) -> Any:
    """A JSON-able, comparable form of a setting."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in sorted(value.items())}
    return str(value)


def build(side: str, model_path: str, dataset: Dataset, a: argparse.Namespace, out: Path, tag: str):
    torch.manual_seed(a.seed)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(model_path)
    checkpointing = a.gradient_checkpointing == "on"
    common = dict(
        output_dir=str(out / tag / side), per_device_train_batch_size=a.prompts * a.rollouts,
        num_generations=a.rollouts, max_completion_length=a.max_completion_length, max_steps=a.steps,
        learning_rate=a.lr, beta=a.beta, temperature=a.temperature, seed=a.seed,
        bf16=a.bf16 == "on" or (a.bf16 == "auto" and native_bf16(not torch.cuda.is_available())), fp16=False,
        # transformers 5 calls it activation_checkpointing; gradient_checkpointing is its alias (TRL defaults it on)
        activation_checkpointing=checkpointing, gradient_checkpointing=checkpointing,
        logging_steps=1, report_to=[], save_strategy="no", use_cpu=not torch.cuda.is_available(), disable_tqdm=True,
    )
    reward_funcs = [get_reward_func("srl_lenient")]
    clock = StepClock()
    if side == "plain":
        trainer = GRPOTrainer(model=model, reward_funcs=reward_funcs, args=GRPOConfig(**common),
                              train_dataset=dataset, processing_class=tok, callbacks=[clock])
    else:
        args = SRLConfig(**common, dynamic_sampling=False)
        trainer = SRLTrainer(model=model, args=args, train_dataset=dataset, processing_class=tok, callbacks=[clock],
                             reward_funcs=reward_funcs)
    trainer.remove_callback(PrinterCallback)  # the per-step log dicts; the logs stay in trainer.state
    return trainer, clock


def settings(trainer) -> dict[str, Any]:
    """The effective settings of a built (not yet trained) trainer, flattened to ``group.name``."""
    s: dict[str, Any] = {f"args.{k}": _plain(v) for k, v in trainer.args.to_dict().items() if k not in PER_SIDE}
    s.update({f"generation.{k}": _plain(v) for k, v in trainer.generation_config.to_diff_dict().items()})
    model = trainer.model
    s["model.class"] = type(model).__name__
    s["model.dtype"] = str(next(model.parameters()).dtype)
    s["model.parameters"] = sum(p.numel() for p in model.parameters())
    s["accelerator.mixed_precision"] = str(trainer.accelerator.mixed_precision)
    s["accelerator.device"] = str(trainer.accelerator.device)
    s["trainer.reward_funcs"] = [getattr(f, "__name__", type(f).__name__) for f in trainer.reward_funcs]
    s["trainer.reward_weights"] = _plain(trainer.reward_weights.tolist())
    s["trainer.train_rows"] = len(trainer.train_dataset)
    return s


def compare(plain: dict[str, Any], ours: dict[str, Any]) -> list[tuple[str, Any, Any, str]]:
    """Rows (setting, plain, ours, verdict) with verdict 'same', 'impl', 'inert' or 'DIFF'."""
    rows = []
    for key in sorted(set(plain) | set(ours), key=lambda k: (k not in SHOWN, SHOWN.index(k) if k in SHOWN else 0, k)):
        name = key.split(".", 1)[1]
        if key.startswith("args.") and key not in plain and name in IMPLEMENTATION:
            rows.append((key, "-", ours[key], "impl"))
        elif key.startswith("args.") and key not in plain and name in INERT:
            rows.append((key, "-", ours[key], "inert"))
        elif key.startswith("args.") and key not in plain and name in OURS_ONLY_AS_PLAIN:
            want = OURS_ONLY_AS_PLAIN[name]
            rows.append((key, f"({want})", ours[key], "same" if ours[key] == want else "DIFF"))
        else:
            p, o = plain.get(key, "<absent>"), ours.get(key, "<absent>")
            rows.append((key, p, o, "same" if p == o else "DIFF"))
    return rows


def print_table(rows: list[tuple[str, Any, Any, str]]) -> None:
    def cell(v: Any) -> str:
        text = json.dumps(v) if not isinstance(v, str) else v
        return text if len(text) <= 40 else text[:37] + "..."

    shown = [r for r in rows if r[0] in SHOWN or r[3] == "DIFF"]
    print(f"effective settings ({len(shown)} of {len(rows)} shown; every one is compared):")
    width = max(len(r[0]) for r in shown)
    print(f"  {'setting':<{width}} {'plain':<40} {'ours':<40} verdict")
    for key, p, o, verdict in shown:
        print(f"  {key:<{width}} {cell(p):<40} {cell(o):<40} {verdict}")


def check_same_logps(model_path: str, dataset: Dataset, a: argparse.Namespace, out: Path) -> float:
    """Largest |log-prob| gap between ours' shared-prefix pass and TRL's own, in float32, on a train-mode model
    with activation checkpointing as asked for: ours must compute the same thing, or its speed is not comparable."""
    fp32 = argparse.Namespace(**{**vars(a), "bf16": "off"})
    trainer, _clock = build("ours", model_path, dataset, fp32, out, "logps-check")
    model = trainer.model
    if a.gradient_checkpointing == "on":  # as Trainer.train does
        model.activation_checkpointing_enable(
            activation_checkpointing_kwargs=trainer.args.activation_checkpointing_kwargs)
    model.train()
    g = torch.Generator().manual_seed(a.seed)
    vocab = model.config.vocab_size
    prompts = torch.randint(3, vocab, (2, 24), generator=g).repeat_interleave(a.rollouts, 0)
    completions = torch.randint(3, vocab, (prompts.size(0), 8), generator=g)
    device = next(model.parameters()).device
    ids = torch.cat([prompts, completions], 1).to(device)
    mask = torch.ones_like(ids)
    # with grad enabled, as in compute_loss: checkpointed layers behave differently under no_grad
    ours, _, _ = trainer._get_per_token_logps_and_entropies(model, ids, mask, completions.size(1))
    trl, _, _ = GRPOTrainer._get_per_token_logps_and_entropies(trainer, model, ids, mask, completions.size(1))
    gap = float((ours.detach().float() - trl.detach().float()).abs().max())
    del trainer, _clock, model
    release()
    return gap


def fail(message: str) -> None:
    print(f"FAIL: {message}", file=sys.stderr)
    sys.exit(2)


def run(trainer, clock: StepClock, side: str, a: argparse.Namespace) -> dict:
    start = time.perf_counter()
    trainer.train()
    total = time.perf_counter() - start
    if clock.gradient_checkpointing != (a.gradient_checkpointing == "on"):
        fail(f"{side}: activation checkpointing was {clock.gradient_checkpointing} during training, "
             f"but --gradient-checkpointing {a.gradient_checkpointing} was asked for")
    logs = [h for h in trainer.state.log_history if "completions/mean_length" in h]
    if len(logs) != a.steps or len(clock.stamps) != a.steps:
        fail(f"{side}: expected {a.steps} logged optimiser steps, got {len(logs)} logs and {len(clock.stamps)} steps")
    rows = a.prompts * a.rollouts
    tokens = sum(h["completions/mean_length"] * rows for h in logs[1:])
    seconds = clock.stamps[-1] - clock.stamps[0]
    return {"side": side, "tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / seconds,
            "total_seconds": total, "gradient_checkpointing_active": clock.gradient_checkpointing}


def release() -> None:
    """Free the last trainer (the caller drops its references first), so runs do not share memory pressure."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="smollm2-135m", help="model name/path, or 'tiny' for a smoke run")
    p.add_argument("--prompts", type=int, default=4, help="prompts per optimiser step")
    p.add_argument("--rollouts", type=int, default=8, help="rollouts per prompt (num_generations)")
    p.add_argument("--max-completion-length", type=int, default=64)
    p.add_argument("--steps", type=int, default=3, help="optimiser steps per run (the first is warm-up)")
    p.add_argument("--repeats", type=int, default=3, help="runs per side, interleaved, order alternating")
    p.add_argument("--gradient-checkpointing", choices=("off", "on"), default="off",
                   help="activation checkpointing, the same on both sides (TRL's own default is on)")
    p.add_argument("--bf16", choices=("off", "on", "auto"), default="auto",
                   help="bf16 mixed precision on both sides; auto: on where the hardware runs bf16 natively")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--lr", type=float, default=1e-6)
    p.add_argument("--beta", type=float, default=0.0, help="KL coefficient (0: no reference model)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="also write everything here")
    a = p.parse_args()
    if a.repeats < 1:
        p.error(f"--repeats must be >= 1, got {a.repeats}")
    if a.steps < 2:
        p.error(f"--steps must be >= 2 (one warm-up step and at least one timed step), got {a.steps}")
    out = Path(tempfile.mkdtemp(prefix="bench-train-"))
    model_path = str(build_tiny_model(out / "tiny")) if a.model == "tiny" else resolve_model(a.model)
    train, _ = make_demo_task(n_train=200, n_test=10, seed=a.seed)
    rows = build_instances([Trajectory(**t) for t in train]).instances
    dataset = Dataset.from_list([{"prompt": r["prompt"], "expert_step": r["expert_step"]} for r in rows])

    reference = {}
    for side in SIDES:
        trainer, _clock = build(side, model_path, dataset, a, out, "preflight")
        reference[side] = settings(trainer)
        del trainer, _clock
        release()
    table = compare(reference["plain"], reference["ours"])
    print_table(table)
    diffs = [r for r in table if r[3] == "DIFF"]
    if diffs:
        fail("the two sides differ in more than the implementation: "
             + "; ".join(f"{k}: plain={json.dumps(p)} ours={json.dumps(o)}" for k, p, o, _ in diffs))
    gap = check_same_logps(model_path, dataset, a, out)
    print(f"ours' training log-probs vs TRL's (float32, train mode, gradient checkpointing "
          f"{a.gradient_checkpointing}): max |gap| {gap:.2e}")
    if gap > 1e-3:
        fail(f"with --gradient-checkpointing {a.gradient_checkpointing} ours' shared-prefix log-probs differ from "
             f"TRL's by up to {gap:.3f} nats, so the two sides would not do the same work (checkpointed decoder "
             "layers drop the prompt's KV cache that shared_prefix_training relies on); not timing it. "
             "Until SharedPrefixLogpsMixin falls back under checkpointing, use --gradient-checkpointing off")

    repeats = []
    for i in range(a.repeats):
        order = SIDES if i % 2 == 0 else SIDES[::-1]
        results = {}
        for side in order:
            trainer, clock = build(side, model_path, dataset, a, out, f"repeat{i}")
            if settings(trainer) != reference[side]:
                fail(f"{side} trainer of repeat {i + 1} has other settings than the checked one")
            results[side] = run(trainer, clock, side, a)
            del trainer, clock
            release()
        ratio = results["ours"]["tokens_per_s"] / results["plain"]["tokens_per_s"]
        repeats.append({"repeat": i + 1, "order": list(order), **results, "ratio": ratio})
        print(f"repeat {i + 1}/{a.repeats} ({' then '.join(order)}): "
              f"plain {results['plain']['tokens_per_s']:.1f} tok/s ({results['plain']['tokens']:.0f} tok in "
              f"{results['plain']['seconds']:.1f} s), ours {results['ours']['tokens_per_s']:.1f} tok/s "
              f"({results['ours']['tokens']:.0f} tok in {results['ours']['seconds']:.1f} s), "
              f"ours/plain {ratio:.2f}x", flush=True)

    ratios = [r["ratio"] for r in repeats]
    summary = {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios), "n": len(ratios)}
    print(f"model {a.model}: {a.prompts} prompts x {a.rollouts} rollouts, <= {a.max_completion_length} new tokens, "
          f"{a.steps - 1} timed step(s) per run, gradient checkpointing {a.gradient_checkpointing} on both sides, "
          f"bf16 {a.bf16}")
    print(f"ours/plain completion tokens/s over {len(ratios)} repeat(s): median {summary['median']:.2f}x "
          f"(min {summary['min']:.2f}x, max {summary['max']:.2f}x)")
    if a.json:
        Path(a.json).write_text(json.dumps({
            "args": vars(a), "settings": {"plain": reference["plain"], "ours": reference["ours"]},
            "comparison": [{"setting": k, "plain": p, "ours": o, "verdict": v} for k, p, o, v in table],
            "logps_gap": gap, "repeats": repeats, "ratio": summary,
        }, indent=2))
        print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
