from __future__ import annotations

import pytest
from datasets import Dataset

from srl_rlvr.data.demo import make_demo_task
from srl_rlvr.data.schema import Trajectory
from srl_rlvr.data.srl import build_instances


@pytest.fixture(scope="session")
def srl_rows() -> list[dict]:
    train, _ = make_demo_task(n_train=12, n_test=2, seed=3)
    return build_instances([Trajectory(**t) for t in train]).instances


@pytest.fixture()
def srl_dataset(srl_rows) -> Dataset:
    return Dataset.from_list([{"prompt": r["prompt"], "expert_step": r["expert_step"]} for r in srl_rows])


@pytest.fixture()
def grpo_kwargs(tmp_path):
    """The smallest GRPO run that still exercises every code path on 2 CPU cores (call with overrides)."""

    def make(**over) -> dict:
        kw = dict(
            output_dir=str(tmp_path / "out"), per_device_train_batch_size=8, num_generations=4,
            max_completion_length=12, max_steps=2, learning_rate=1e-2, logging_steps=1, report_to=[],
            save_strategy="no", use_cpu=True, bf16=False, gradient_checkpointing=False, disable_tqdm=True, seed=0,
        )
        kw.update(over)
        return kw

    return make


@pytest.fixture()
def stage_kwargs(grpo_kwargs):
    """grpo_kwargs plus our config's knobs, with one generation round so tests stay quick."""

    def make(**over) -> dict:
        return grpo_kwargs(**{"max_refill_rounds": 1, **over})

    return make
