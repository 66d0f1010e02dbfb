"""Fault drills: every kind of fault, injected for real into `srl-rlvr train srl` on the tiny model.

Each drill runs the CLI in a subprocess (signals and kill -9 need a process of their own) and checks what
the user sees: the exit code, the files left behind, and, after ``--resume``, a run that ends where an
uninterrupted one ends. Resume is exact: on one CPU thread the final weights are bitwise equal to the
uninterrupted run's (tolerance 0) and the same samples were trained on (same multiset of sample ids).
The settings make dynamic sampling refill after every resume point, so the refill sampler's checkpointed
position is exercised (without it the resumed run trains on other prompts).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from srl_rlvr.data.srl import write_jsonl
from srl_rlvr.ops.checkpoints import COMPLETE, STAGING, scan, verify_checkpoint
from srl_rlvr.ops.failures import EXIT_DISK_FULL, EXIT_PREEMPTED, read_recoveries

MAX_STEPS = 6
CONFIG = """\
tracking: {mlflow: false}
srl:
  reward_mode: lenient
  num_generations: 2
  per_device_train_batch_size: 4
  max_completion_length: 16
  dynamic_sampling_epsilon: 0.03      # drops some groups: refill rounds run before and after step 3
  max_refill_rounds: 3
  learning_rate: 1.0e-2
  logging_steps: 1
  save_strategy: steps
  save_steps: 2
  save_total_limit: 2
  use_cpu: true
  bf16: false
  gradient_checkpointing: false
  report_to: []
  seed: 0
"""
QUIET = {"PYTHONUNBUFFERED": "1", "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def setup(tiny_model_dir, tmp_path_factory):
    from srl_rlvr.data.demo import make_demo_task
    from srl_rlvr.data.schema import Trajectory
    from srl_rlvr.data.srl import build_instances

    root = tmp_path_factory.mktemp("drills")
    train, _ = make_demo_task(n_train=12, n_test=2, seed=3)
    write_jsonl(root / "srl.jsonl", build_instances([Trajectory(**t) for t in train]).instances)
    (root / "srl.yaml").write_text(CONFIG)
    return {"root": root, "model": tiny_model_dir}


def train(setup, out: Path, *extra: str, env: dict | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "srl_rlvr.cli.main", "train", "srl", "--model", str(setup["model"]),
               "--data", str(setup["root"] / "srl.jsonl"), "--out", str(out), "--config",
               str(setup["root"] / "srl.yaml"), "--set", f"max_steps={MAX_STEPS}", *extra]
    return subprocess.run(command, capture_output=True, text=True, env={**os.environ, **QUIET, **(env or {})},
                          timeout=600)


def weights(out: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(out / "final" / "model.safetensors"))


def samples(out: Path) -> Counter:
    return Counter(json.loads((out / "trained_samples.json").read_text()))


def history(out: Path) -> list[dict]:
    return json.loads((out / "log_history.json").read_text())


@pytest.fixture(scope="module")
def uninterrupted(setup):
    out = setup["root"] / "uninterrupted"
    done = train(setup, out)
    assert done.returncode == 0, done.stdout + done.stderr
    rounds = [e["dynamic_sampling/rounds"] for e in history(out) if "reward" in e]
    # refills on both sides of the resume points, or the drills would not test the refill sampler's state
    assert max(rounds[:3]) > 1 and max(rounds[3:]) > 1, rounds
    return out


def assert_same_as_uninterrupted(out: Path, reference: Path) -> None:
    import torch

    mine, theirs = weights(out), weights(reference)
    assert mine.keys() == theirs.keys()
    different = [k for k in mine if not torch.equal(mine[k], theirs[k])]
    assert not different, f"resumed weights differ from the uninterrupted run's in {different[:3]}"
    assert samples(out) == samples(reference)
    assert sum(samples(out).values()) > 0


def assert_resumes_to_the_end(setup, out: Path, expect_from: str) -> subprocess.CompletedProcess:
    resumed = train(setup, out, "--resume")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"resume srl from {expect_from}" in resumed.stdout, resumed.stdout
    manifest = json.loads((out / "final" / "srl_rlvr_stage.json").read_text())
    assert manifest["global_step"] == MAX_STEPS
    return resumed


def test_sigterm_saves_a_complete_checkpoint_exits_75_and_resumes_exactly(setup, uninterrupted):
    out = setup["root"] / "sigterm"
    stopped = train(setup, out, "--inject-fault", "sigterm@3")
    assert stopped.returncode == EXIT_PREEMPTED, stopped.stdout + stopped.stderr
    assert "--resume" in stopped.stderr and "Traceback" not in stopped.stderr
    assert verify_checkpoint(out / "checkpoint-3") is None  # saved at the step boundary, not at save_steps
    assert not (out / "final").exists()
    assert_resumes_to_the_end(setup, out, "checkpoint-3")
    assert_same_as_uninterrupted(out, uninterrupted)
    assert [r["reason"] for r in read_recoveries(out)] == ["sigterm"]  # kept across the two processes


def test_kill_9_in_the_middle_of_a_save_leaves_no_checkpoint_that_looks_finished(setup, uninterrupted):
    out = setup["root"] / "kill"
    killed = train(setup, out, "--inject-fault", "kill@4")
    assert killed.returncode == -9, killed.stdout + killed.stderr
    assert (out / STAGING / "checkpoint-4").is_dir(), "the kill should land mid-save, in the staging folder"
    assert not (out / "checkpoint-4").exists()
    assert [s.step for s in scan(out) if s.valid] == [2]
    assert_resumes_to_the_end(setup, out, "checkpoint-2")
    assert not (out / STAGING).exists()
    assert_same_as_uninterrupted(out, uninterrupted)


def test_disk_full_is_one_line_leaves_nothing_half_written_and_resumes(setup, uninterrupted):
    out = setup["root"] / "enospc"
    full = train(setup, out, "--inject-fault", "enospc@4")
    assert full.returncode == EXIT_DISK_FULL, full.stdout + full.stderr
    errors = [line for line in full.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "disk full" in errors[0] and "--resume" in errors[0], full.stderr
    assert "Traceback" not in full.stderr
    assert not (out / STAGING).exists() and not (out / "checkpoint-4").exists()
    assert_resumes_to_the_end(setup, out, "checkpoint-2")
    assert_same_as_uninterrupted(out, uninterrupted)


def test_nan_rolls_back_halves_the_learning_rate_skips_the_batch_and_finishes(setup, uninterrupted):
    out = setup["root"] / "nan"
    done = train(setup, out, "--inject-fault", "nan@3")
    assert done.returncode == 0, done.stdout + done.stderr
    recoveries = read_recoveries(out)
    assert [(r["reason"], r["step"]) for r in recoveries] == [("nan", 3)]
    assert "rolled back to checkpoint-2" in recoveries[0]["action"]
    log = history(out)
    assert any(e.get("recovery") == "nan" for e in log), "log_history.json must show the rollback"
    trained = [e for e in log if "reward" in e]
    assert [e["step"] for e in trained] == [1, 2, 4, 5, 6]  # the batch of step 3 was skipped
    lr = {e["step"]: e["learning_rate"] for e in trained}
    before = {e["step"]: e["learning_rate"] for e in history(uninterrupted) if "reward" in e}
    assert lr[2] == pytest.approx(before[2]) and lr[4] == pytest.approx(before[4] * 0.5)  # the same schedule, halved
    assert json.loads((out / "final" / "srl_rlvr_stage.json").read_text())["global_step"] == MAX_STEPS
    statuses = scan(out)  # checks every tensor of every saved checkpoint is finite
    assert statuses and all(s.valid for s in statuses), [(s.path.name, s.reason) for s in statuses]
    assert 'srl_rlvr_training_recoveries_total{reason="nan",stage="srl"} 1.0' in (out / "metrics.prom").read_text()


def test_nan_that_keeps_coming_back_stops_with_a_clear_message(setup):
    out = setup["root"] / "nan-always"
    done = train(setup, out, "--set", "failures.nan_retries=0", "--inject-fault", "nan@3")
    assert done.returncode != 0
    assert "still non-finite after 0 rollback(s)" in done.stderr and "Traceback" not in done.stderr
    assert [s.step for s in scan(out) if s.valid] == [2]  # nothing non-finite was saved


def test_out_of_memory_halves_the_batch_keeps_the_effective_batch_and_finishes(setup):
    out = setup["root"] / "oom"
    done = train(setup, out, "--inject-fault", "oom@3")
    assert done.returncode == 0, done.stdout + done.stderr
    recoveries = read_recoveries(out)
    assert [(r["reason"], r["step"]) for r in recoveries] == [("oom", 3)]
    assert "per-device batch -> 2, gradient accumulation x2" in recoveries[0]["action"]
    trained = [e for e in history(out) if "reward" in e]
    assert [e["step"] for e in trained] == list(range(1, MAX_STEPS + 1))
    # the same effective batch: still 4 rollouts (2 prompts x 2) generated per round after the halving
    assert all(e["dynamic_sampling/generated_per_kept"] == e["dynamic_sampling/rounds"] for e in trained)


def test_a_corrupted_checkpoint_fails_verify_and_resume_takes_the_previous_one(setup):
    out = setup["root"] / "corrupt"
    stopped = train(setup, out, "--inject-fault", "sigterm@5")
    assert stopped.returncode == EXIT_PREEMPTED, stopped.stdout + stopped.stderr
    newest = out / "checkpoint-5"
    weights_file = newest / "model.safetensors"
    data = bytearray(weights_file.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte, in a tensor, not the header
    weights_file.write_bytes(bytes(data))
    verify = subprocess.run([sys.executable, "-m", "srl_rlvr.cli.main", "checkpoints", "verify", str(out)],
                            capture_output=True, text=True, env={**os.environ, **QUIET}, timeout=120)
    assert verify.returncode == 1
    assert "checkpoint-5" in verify.stdout + verify.stderr and "model.safetensors" in verify.stdout + verify.stderr
    resumed = assert_resumes_to_the_end(setup, out, "checkpoint-4")
    assert "skipping checkpoint-5: model.safetensors: sha256 mismatch" in resumed.stdout


def test_a_marker_from_another_config_is_never_resumed(setup):
    out = setup["root"] / "other-config"
    stopped = train(setup, out, "--inject-fault", "sigterm@3")
    assert stopped.returncode == EXIT_PREEMPTED
    marker = json.loads((out / "checkpoint-3" / COMPLETE).read_text())
    assert len(marker["config_hash"]) == 16
    changed = train(setup, out, "--resume", "--set", "learning_rate=0.005")
    assert changed.returncode == 0, changed.stdout + changed.stderr
    assert "saved by a different config" in changed.stdout and "resume srl from" not in changed.stdout


def test_resume_downloads_the_newest_checkpoint_from_s3_when_the_local_folder_is_gone(setup, uninterrupted,
                                                                                 s3_endpoint, bucket):
    import shutil

    env = {"AWS_ENDPOINT_URL": s3_endpoint}  # the credentials come from the aws_env fixture
    remote = ("--set", f"checkpoints.remote=s3://{bucket}/runs")
    out = setup["root"] / "remote"
    stopped = train(setup, out, *remote, "--inject-fault", "sigterm@3", env=env)
    assert stopped.returncode == EXIT_PREEMPTED, stopped.stdout + stopped.stderr
    shutil.rmtree(out)  # the node and its disk are gone
    resumed = train(setup, out, *remote, "--resume", env=env)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resume srl from checkpoint-3 (downloaded)" in resumed.stdout, resumed.stdout
    assert_same_as_uninterrupted(out, uninterrupted)


def test_recoveries_are_mlflow_tags_on_the_stage_run(setup, tmp_path):
    """The recovery is tagged on the MLflow run of the stage (an SQLite store, as users run it)."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = setup["root"] / "nan-mlflow"
    done = train(setup, out, "--set", "tracking.mlflow=true", "--set", f"tracking.tracking_uri={uri}",
                 "--set", "report_to=[mlflow]", "--inject-fault", "nan@3")
    assert done.returncode == 0, done.stdout + done.stderr
    client = MlflowClient(tracking_uri=uri)
    runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
    assert len(runs) == 1, "the retry must log into the same run, not open a second one"
    tags = runs[0].data.tags
    assert tags["srl_rlvr.recoveries"] == "1" and tags["srl_rlvr.recoveries.nan"] == "1"
    assert json.loads(tags["srl_rlvr.recoveries.detail"])[0]["step"] == 3
