"""docs/deployment.md runs: every ```bash run block, top to bottom in one shell, against local components
(the tiny model, a moto server, MLflow on SQLite, promtool, a real `srl-rlvr serve`); every ```bash gpu /
```bash aws block is reported as skipped, by name. An untagged bash block is an error (it would rot)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "deployment.md"
FENCE = re.compile(r"^```(?P<info>[^\n]*)\n(?P<body>.*?)^```$", re.M | re.S)
STAGE_ARGS = dict(num_generations=2, per_device_train_batch_size=4, max_completion_length=8, max_steps=2,
                  learning_rate=1e-2, logging_steps=1, report_to=[], use_cpu=True, bf16=False,
                  gradient_checkpointing=False, disable_tqdm=True, seed=0, max_refill_rounds=1,
                  save_strategy="steps", save_steps=1)


def blocks() -> list[tuple[str, int, str]]:
    """(tag, line, body) of every bash block."""
    text = GUIDE.read_text(encoding="utf-8")
    out = []
    for m in FENCE.finditer(text):
        info = m["info"].split()
        if info and info[0] in ("bash", "sh", "shell"):
            line = text[: m.start()].count("\n") + 1
            out.append((info[1] if len(info) > 1 else "", line, m["body"]))
    return out


def test_every_bash_block_is_tagged():
    untagged = [line for tag, line, _ in blocks() if tag not in ("run", "gpu", "aws")]
    assert untagged == [], f"docs/deployment.md: bash blocks at lines {untagged} need a tag: run, gpu or aws"
    assert sum(tag == "run" for tag, _, _ in blocks()) >= 6


@pytest.mark.parametrize("tag,line,body", [b for b in blocks() if b[0] in ("gpu", "aws")],
                         ids=lambda v: str(v)[:40] if not isinstance(v, str) or "\n" not in v else "")
def test_blocks_that_need_a_gpu_or_aws(tag, line, body):
    first = next(cmd for cmd in body.splitlines() if cmd.strip())
    pytest.skip(f"docs/deployment.md:{line}: needs {'a GPU' if tag == 'gpu' else 'an AWS account'}: {first}")


@pytest.mark.slow
def test_run_blocks_execute_top_to_bottom(tiny_model_dir, tmp_path):
    for tool in ("promtool", "curl"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing (make system-deps installs it)")
    work = tmp_path / "deploy"
    config = tmp_path / "tiny-demo.yaml"
    config.write_text(yaml.safe_dump({
        "model": str(tiny_model_dir),
        "data": {"demo": {"n_train": 8, "n_test": 4, "n_dev": 3, "n_transfer": 4, "seed": 0, "min_ops": 1,
                          "max_ops": 3, "numbers": "small"}},
        "stages": ["srl", "rlvr", "eval"],
        "srl": {**STAGE_ARGS, "reward_mode": "lenient"}, "rlvr": STAGE_ARGS,
        "eval": {"models": ["base", "srl", "srl_rlvr"], "sets": ["test", "transfer"], "max_new_tokens": 8,
                 "batch_size": 4},
        "tracking": {"mlflow": True, "tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}"},
        "registry": {"name": "demo-math", "promote": "srl_rlvr"},
    }), encoding="utf-8")
    script = ["set -euo pipefail"]
    for tag, line, body in blocks():
        if tag == "run":
            script += [f"echo '::: docs/deployment.md:{line}'", body]
    port = _free_port()
    env = {**os.environ, "WORK": str(work), "RUN_CONFIG": str(config), "PORT": str(port),
           "SRL_RLVR_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    p = subprocess.run(["bash", "-c", "\n".join(script)], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=1500)
    where = re.findall(r"^::: (docs/deployment.md:\d+)$", p.stdout, re.M)
    assert p.returncode == 0, (f"failed in the block at {where[-1] if where else '?'}:\n{p.stdout[-3000:]}\n"
                               f"{p.stderr[-3000:]}")
    assert len(where) == sum(tag == "run" for tag, _, _ in blocks())
    assert "serving models:/demo-math@" in p.stdout and "'role': 'assistant'" in p.stdout
    assert "monitoring.tf is current" in p.stdout
    assert re.search(r"\['checkpoint-\d+'", p.stdout)  # the S3 listing of section 5 shows checkpoints


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
