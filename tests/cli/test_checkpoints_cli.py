"""``srl-rlvr checkpoints list|verify`` on checkpoints built by the checkpoint manager itself."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from srl_rlvr.cli.main import cli
from srl_rlvr.errors import UserInputError
from srl_rlvr.ops.checkpoints import STAGING, commit, write_marker


def make_checkpoint(out: Path, step: int, value: float = 1.0, metrics: dict | None = None) -> Path:
    import torch
    from safetensors.torch import save_file

    staged = out / STAGING / f"checkpoint-{step}"
    staged.mkdir(parents=True)
    (staged / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    save_file({"w": torch.full((2, 2), value)}, str(staged / "model.safetensors"))
    return commit(staged, out, "abc123", metrics or {})


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


@pytest.fixture
def stage(tmp_path) -> Path:
    out = tmp_path / "srl"
    make_checkpoint(out, 2, metrics={"reward": 0.42})
    make_checkpoint(out, 10, metrics={"reward": 0.5, "loss": 1.25})
    return out


def test_all_valid(stage):
    r = invoke("checkpoints", "verify", str(stage))
    assert r.exit_code == 0, r.output
    assert r.output.splitlines() == ["ok checkpoint-2", "ok checkpoint-10"]  # oldest first, numerically
    r = invoke("checkpoints", "verify", str(stage / "checkpoint-10"), "--no-finite-check")
    assert r.exit_code == 0 and r.output.strip() == "ok checkpoint-10"
    r = invoke("checkpoints", "list", str(stage))
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert lines[0].startswith("checkpoint-2 ") and "valid" in lines[0] and "reward=0.42" in lines[0]
    assert lines[1].startswith("checkpoint-10") and "reward=0.5 loss=1.25" in lines[1] and " MB" in lines[1]


def test_flipped_byte(stage):
    model = stage / "checkpoint-10" / "model.safetensors"
    data = bytearray(model.read_bytes())
    data[-1] ^= 0xFF  # same size, different content
    model.write_bytes(bytes(data))
    r = invoke("checkpoints", "verify", str(stage))
    assert r.exit_code == 1
    assert "ok checkpoint-2" in r.output
    assert "BAD checkpoint-10: model.safetensors: sha256 mismatch (corrupted)" in r.output
    r = invoke("checkpoints", "verify", str(stage / "checkpoint-10"))
    assert r.exit_code == 1 and "model.safetensors" in r.output
    r = invoke("checkpoints", "list", str(stage))
    assert r.exit_code == 0, r.output
    old, new = r.output.splitlines()
    assert "valid" in old and "INVALID" not in old
    assert "INVALID: model.safetensors: sha256 mismatch" in new


def test_nan_tensor_named(tmp_path):
    import torch
    from safetensors.torch import save_file

    out = tmp_path / "rlvr"
    ckpt = make_checkpoint(out, 3)
    save_file({"w": torch.ones(2, 2), "lm_head.weight": torch.tensor([1.0, float("nan")])},
              str(ckpt / "model.safetensors"))
    write_marker(ckpt, 3, "abc123", {})  # hashes match again: only the finiteness scan can tell
    r = invoke("checkpoints", "verify", str(out))
    assert r.exit_code == 1
    assert "BAD checkpoint-3: model.safetensors: tensor 'lm_head.weight' holds NaN or Inf" in r.output
    r = invoke("checkpoints", "verify", str(out), "--no-finite-check")
    assert r.exit_code == 0 and "ok checkpoint-3" in r.output


def test_staging_and_empty(tmp_path):
    out = tmp_path / "sft"
    (out / STAGING / "checkpoint-7").mkdir(parents=True)
    r = invoke("checkpoints", "list", str(out))
    assert r.exit_code == 0
    assert f"no checkpoints in {out}" in r.output
    assert "partial save in .staging/checkpoint-7 (ignored)" in r.output
    r = invoke("checkpoints", "verify", str(out))
    assert r.exit_code == 1 and "no checkpoint-N folders" in r.output and "checkpoint-7" in r.output

    make_checkpoint(out, 5)
    assert (out / STAGING / "checkpoint-7").is_dir()  # commit moves only its own folder out of .staging
    r = invoke("checkpoints", "list", str(out))
    assert r.exit_code == 0 and "checkpoint-5" in r.output and "partial save in .staging/checkpoint-7" in r.output

    unmarked = out / "checkpoint-9"  # renamed but killed before its marker
    unmarked.mkdir()
    r = invoke("checkpoints", "verify", str(out))
    assert r.exit_code == 1 and "BAD checkpoint-9: COMPLETE marker missing" in r.output


def test_missing_folder_is_one_line(tmp_path):
    r = invoke("checkpoints", "verify", str(tmp_path / "nope"))
    assert isinstance(r.exception, UserInputError) and "no such folder" in str(r.exception)
    # As a user runs it: exit 2, one line, no traceback.
    p = subprocess.run([sys.executable, "-m", "srl_rlvr.cli.main", "checkpoints", "list", str(tmp_path / "nope")],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert p.stderr.strip() == f"error: {tmp_path / 'nope'}: no such folder"
