"""The checkpoint manager on hand-made checkpoints: what counts as valid, what rotation keeps, the policies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from srl_rlvr.errors import UserInputError
from srl_rlvr.ops.checkpoints import (
    COMPLETE,
    MARKER_TMP,
    STAGING,
    CheckpointSettings,
    commit,
    newest_valid,
    rotate,
    verify_checkpoint,
    write_marker,
)
from srl_rlvr.ops.failures import (
    FailurePolicy,
    FaultPlan,
    TransientFailure,
    backoff_delays,
    retry_transient,
)


def make_checkpoint(out: Path, step: int, reward: float = 0.0, value: float = 1.0) -> Path:
    import torch
    from safetensors.torch import save_file

    staged = out / STAGING / f"checkpoint-{step}"
    staged.mkdir(parents=True)
    (staged / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    save_file({"w": torch.full((2, 2), value)}, str(staged / "model.safetensors"))
    return commit(staged, out, "hash", {"reward": reward})


def test_a_committed_checkpoint_is_valid_and_leaves_no_staging(tmp_path):
    path = make_checkpoint(tmp_path, 2)
    assert verify_checkpoint(path) is None
    assert not (tmp_path / STAGING).exists()
    marker = json.loads((path / COMPLETE).read_text())
    assert marker["global_step"] == 2 and marker["config_hash"] == "hash" and "model.safetensors" in marker["files"]


@pytest.mark.parametrize("damage, reason", [
    (lambda p: (p / COMPLETE).unlink(), "COMPLETE marker missing"),
    (lambda p: (p / COMPLETE).write_text("{"), "unreadable marker"),
    (lambda p: (p / COMPLETE).write_text('{"global_step": 2, "files": []}'), "unreadable marker"),
    (lambda p: (p / "model.safetensors").write_bytes((p / "model.safetensors").read_bytes()[:-3]), "truncated"),
    (lambda p: (p / "extra.bin").write_text("x"), "extra.bin: not in the COMPLETE manifest"),
    (lambda p: (p / "trainer_state.json").unlink(), "trainer_state.json: missing"),
    # re-marked after the rewrite, so the hashes agree and the step check must catch it
    (lambda p: [(p / "trainer_state.json").write_text('{"global_step": null}'), write_marker(p, 2, "hash")],
     "says step None"),
])
def test_every_kind_of_damage_is_named(tmp_path, damage, reason):
    path = make_checkpoint(tmp_path, 2)
    damage(path)
    found = verify_checkpoint(path)
    assert found is not None and reason in found, found


def test_a_rewritten_trainer_state_is_caught_by_its_hash_and_a_step_mismatch_by_the_step(tmp_path):
    path = make_checkpoint(tmp_path, 2)
    (path / "trainer_state.json").write_text(json.dumps({"global_step": 3}))
    assert "trainer_state.json" in verify_checkpoint(path)
    write_marker(path, 2, "hash")  # a marker that agrees with the new file: now the step disagrees
    assert "trainer_state.json says step 3" in verify_checkpoint(path)


def test_non_finite_weights_are_never_valid_and_a_leftover_marker_tmp_is_ignored(tmp_path):
    path = make_checkpoint(tmp_path, 2, value=float("nan"))
    assert "tensor 'w' holds NaN or Inf" in verify_checkpoint(path)
    assert verify_checkpoint(path, check_finite=False) is None
    good = make_checkpoint(tmp_path, 4)
    (good / MARKER_TMP).write_text("{}")  # a marker write killed before its rename, then re-marked
    write_marker(good, 4, "hash")
    assert verify_checkpoint(good) is None


def test_newest_valid_skips_newer_bad_ones_and_other_configs(tmp_path, capsys):
    make_checkpoint(tmp_path, 2)
    bad = make_checkpoint(tmp_path, 4)
    (bad / "model.safetensors").write_bytes(b"0" * 10)
    assert newest_valid(tmp_path).name == "checkpoint-2"
    assert "skipping checkpoint-4: model.safetensors" in capsys.readouterr().out
    assert newest_valid(tmp_path, config_hash="other") is None


def test_rotation_keeps_the_newest_valid_and_the_best_and_never_deletes_newer_evidence(tmp_path):
    for step, reward in [(1, 0.1), (2, 0.9), (3, 0.2), (4, 0.3), (5, 0.4)]:
        make_checkpoint(tmp_path, step, reward)
    corrupt = make_checkpoint(tmp_path, 6)
    (corrupt / "model.safetensors").write_bytes(b"broken")
    removed = rotate(tmp_path, keep=1, best_metric="reward", greater_is_better=True)
    left = sorted(p.name for p in tmp_path.iterdir())
    # kept: the best (2), the newest valid (5), the newer invalid one (6); deleted: 1, 3, 4
    assert left == ["checkpoint-2", "checkpoint-5", "checkpoint-6"], left
    assert sorted(p.name for p in removed) == ["checkpoint-1", "checkpoint-3", "checkpoint-4"]


def test_rotation_with_keep_none_deletes_only_invalid_older_ones(tmp_path):
    make_checkpoint(tmp_path, 1)
    old_bad = make_checkpoint(tmp_path, 2)
    (old_bad / COMPLETE).unlink()
    make_checkpoint(tmp_path, 3)
    rotate(tmp_path, keep=None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-1", "checkpoint-3"]


def test_settings_and_policy_refuse_bad_values():
    with pytest.raises(ValueError, match="s3://"):
        CheckpointSettings(remote="/mnt/bucket")
    with pytest.raises(ValueError, match="keep"):
        CheckpointSettings(keep=0)
    with pytest.raises(ValueError, match="lr_factor"):
        FailurePolicy(lr_factor=0)


@pytest.mark.parametrize("text", ["nan", "nan@0", "boom@3", "oom@x", "@3"])
def test_inject_fault_refuses_what_it_cannot_do(text):
    with pytest.raises(UserInputError, match="KIND@STEP"):
        FaultPlan.parse(text)


def test_a_fault_fires_exactly_once():
    plan = FaultPlan.parse("sigterm@3")
    assert not plan.due("sigterm", 2) and not plan.due("nan", 3)
    assert plan.due("sigterm", 3) and not plan.due("sigterm", 3)


def test_transient_failures_are_retried_with_backoff_then_fail_clearly():
    policy = FailurePolicy(transient_retries=3, backoff_s=1.0, backoff_max_s=2.0)
    assert backoff_delays(policy) == [1.0, 2.0, 2.0]
    calls, waits = [], []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("reset")
        return "ok"

    assert retry_transient(flaky, "teacher", policy, lambda e: isinstance(e, ConnectionError), waits.append) == "ok"
    assert waits == [1.0, 2.0]

    def down():
        raise ConnectionError("refused")

    with pytest.raises(TransientFailure, match="teacher: still failing after 3 retries: refused"):
        retry_transient(down, "teacher", policy, lambda e: isinstance(e, ConnectionError), lambda s: None)

    def wrong():
        raise ValueError("a bug, not the network")

    with pytest.raises(ValueError):
        retry_transient(wrong, "teacher", policy, lambda e: isinstance(e, ConnectionError), lambda s: None)
