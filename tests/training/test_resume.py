"""kill -9 in the middle of `srl-rlvr train srl`, then `--resume` finishes from the last checkpoint."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from srl_rlvr.data.srl import write_jsonl
from srl_rlvr.ops.ledger import DONE, complete_checkpoints
from srl_rlvr.registry.manifest import STAGE_MANIFEST as MANIFEST

MAX_STEPS = 6
CONFIG = """\
tracking: {mlflow: false}
srl:
  reward_mode: lenient
  num_generations: 2
  per_device_train_batch_size: 4
  max_completion_length: 24           # a little slower per step, so the kill lands mid-run
  max_refill_rounds: 1
  learning_rate: 1.0e-2
  logging_steps: 1
  save_strategy: steps
  save_steps: 1
  save_total_limit: 2
  use_cpu: true
  bf16: false
  gradient_checkpointing: false
  report_to: []
  seed: 0
"""


def _command(model: Path, data: Path, out: Path, config: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "srl_rlvr.cli.main", "train", "srl", "--model", str(model), "--data", str(data),
            "--out", str(out), "--config", str(config), "--set", f"max_steps={MAX_STEPS}", *extra]


def _wait_for_checkpoint(proc: subprocess.Popen, out: Path, step: int, timeout_s: float = 150.0) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        done = [int(p.name.split("-")[-1]) for p in complete_checkpoints(out)] if out.is_dir() else []
        if done and max(done) >= step:
            return max(done)
        if proc.poll() is not None:
            raise AssertionError(f"training exited (rc {proc.returncode}) before checkpoint-{step}: "
                                 f"{proc.stdout.read()}")
        time.sleep(0.02)
    proc.kill()
    raise AssertionError(f"no checkpoint-{step} after {timeout_s}s")


def test_kill_9_then_resume_finishes_from_the_checkpoint(tiny_model_dir, srl_rows, tmp_path):
    data, out, config = tmp_path / "srl.jsonl", tmp_path / "run", tmp_path / "srl.yaml"
    write_jsonl(data, srl_rows)
    config.write_text(CONFIG)
    # One thread: two thrash on a loaded 2-core box and make this tiny model ~100x slower.
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1"}

    proc = subprocess.Popen(_command(tiny_model_dir, data, out, config), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)
    reached = _wait_for_checkpoint(proc, out, step=2)
    proc.kill()  # SIGKILL: no handler, no cleanup, like a lost node
    proc.wait(timeout=30)
    proc.stdout.close()
    assert proc.returncode == -9
    assert not (out / "final").exists() and not (out / DONE).exists(), "the killed run finished anyway"
    assert reached < MAX_STEPS

    resumed = subprocess.run(_command(tiny_model_dir, data, out, config, "--resume"), capture_output=True, text=True,
                             env=env, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    match = re.search(r"resume srl from checkpoint-(\d+)", resumed.stdout)
    assert match, resumed.stdout
    start = int(match.group(1))
    assert 2 <= start < MAX_STEPS
    assert f"(resumed from checkpoint-{start})" in resumed.stdout

    manifest = json.loads((out / "final" / MANIFEST).read_text())
    assert manifest["global_step"] == MAX_STEPS
    done = json.loads((out / DONE).read_text())
    assert done["global_step"] == MAX_STEPS and done["resumed_from"] == f"checkpoint-{start}"
    # The history carries the killed run's steps (restored from the checkpoint) and the resumed ones.
    history = json.loads((out / "log_history.json").read_text())
    assert [e["step"] for e in history if "reward" in e] == list(range(1, MAX_STEPS + 1))
    # ...but the resumed process trained (and logged) only the steps after the checkpoint.
    assert resumed.stdout.count("'reward':") == MAX_STEPS - start, resumed.stdout
