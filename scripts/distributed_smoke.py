"""Two SRL steps in several processes (gloo on CPU): the code path of multi-GPU and multi-node training.

    OMP_NUM_THREADS=1 python -m torch.distributed.run --nproc_per_node 2 --master_port 29511 \
        scripts/distributed_smoke.py --out /tmp/smoke.json --workdir /tmp/smoke

(torchrun is what ``accelerate launch`` runs for multi-GPU and multi-node jobs; on CPU, ``accelerate launch
--cpu --num_processes 2`` starts one process unless MPI is set up, so call torchrun directly.)

Half the prompts get a constant reward, so dynamic sampling drops their groups and must agree across
ranks on refill rounds (``_global_min``): a disagreement would hang a collective, not pass silently.
Rank 0 writes a JSON summary: the world size seen, global_step, whether parameters moved, whether the
ranks still hold identical parameters (DDP kept them in sync), and the dynamic sampling logs.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer

from srl_rlvr.data.demo import make_demo_task
from srl_rlvr.data.schema import Trajectory
from srl_rlvr.data.srl import build_instances
from srl_rlvr.models import build_tiny_model
from srl_rlvr.rewards import get_reward_func
from srl_rlvr.training.srl_config import SRLConfig
from srl_rlvr.training.srl_trainer import SRLTrainer


def srl_dataset() -> Dataset:
    train, _ = make_demo_task(n_train=12, n_test=2, seed=3)
    rows = build_instances([Trajectory(**t) for t in train]).instances
    return Dataset.from_list([{"prompt": r["prompt"], "expert_step": r["expert_step"]} for r in rows])


def half_flat_reward(dataset: Dataset):
    """The lenient SRL reward, except a constant 1.0 on every other expert step (those groups get dropped)."""
    flat = set(dataset["expert_step"][::2])
    lenient = get_reward_func("srl_lenient")

    def srl_lenient_half_flat(completions, expert_step, **kwargs):
        scores = lenient(completions, expert_step=expert_step, **kwargs)
        return [1.0 if e in flat else s for s, e in zip(scores, expert_step)]

    return srl_lenient_half_flat


def param_checksum(model) -> torch.Tensor:
    return torch.stack([p.detach().double().sum() for p in model.parameters()]).sum()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="JSON summary written by rank 0")
    p.add_argument("--workdir", required=True)
    p.add_argument("--max-steps", type=int, default=2)
    a = p.parse_args()
    work = Path(a.workdir)
    # each rank builds its own copy (same seed, same weights): no rank reads a half-written folder. RANK comes
    # from torchrun; accelerate's state is left alone until TrainingArguments sets it up with use_cpu.
    model_dir = build_tiny_model(work / f"tiny-rank{os.environ.get('RANK', '0')}", seed=0)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    tok = AutoTokenizer.from_pretrained(model_dir)
    dataset = srl_dataset()
    args = SRLConfig(
        output_dir=str(work / "out"), per_device_train_batch_size=4, num_generations=4, max_completion_length=12,
        max_steps=a.max_steps, learning_rate=1e-2, logging_steps=1, report_to=[], save_strategy="no", use_cpu=True,
        bf16=False, gradient_checkpointing=False, reward_mode="lenient", max_refill_rounds=2, disable_tqdm=True,
        seed=0,
    )
    trainer = SRLTrainer(model=model, args=args, train_dataset=dataset, processing_class=tok,
                         reward_funcs=[half_flat_reward(dataset)])
    rounds = {"n": 0}
    scored_round = trainer._scored_round

    def counting_round(inputs):
        rounds["n"] += 1
        return scored_round(inputs)

    trainer._scored_round = counting_round
    before = {n: t.detach().clone() for n, t in model.named_parameters()}
    trainer.train()

    acc = trainer.accelerator
    changed = any(not torch.equal(before[n], t.detach()) for n, t in model.named_parameters())
    per_rank_rounds = acc.gather(torch.tensor([rounds["n"]])).tolist()
    checksums = acc.gather(param_checksum(model).reshape(1)).tolist()
    per_rank_changed = acc.gather(torch.tensor([int(changed)])).tolist()
    if acc.is_main_process:
        summary: dict[str, Any] = {
            "world_size": acc.num_processes,
            "distributed_type": str(acc.distributed_type),
            "backend": acc.state.backend,  # what accelerate asked torch.distributed for
            "process_group": torch.distributed.get_backend_config() if torch.distributed.is_initialized() else None,
            "global_step": trainer.state.global_step,
            "params_changed": bool(changed),
            "params_changed_per_rank": [bool(c) for c in per_rank_changed],
            "params_identical_across_ranks": len(set(checksums)) == 1,
            "scoring_rounds_per_rank": per_rank_rounds,
            "dynamic_sampling": [{k: v for k, v in h.items() if k.startswith("dynamic_sampling/")}
                                 for h in trainer.state.log_history if "dynamic_sampling/rounds" in h],
        }
        Path(a.out).write_text(json.dumps(summary, indent=2))
    acc.wait_for_everyone()
    if torch.distributed.is_initialized():  # gloo's threads torn down at exit instead aborted a rank once (SIGABRT)
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
