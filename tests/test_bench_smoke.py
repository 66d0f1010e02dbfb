"""The bench/ scripts run end to end on the tiny model: a settings check that refuses to time (a new
ours-only config field it does not know, say) fails here, not in the next person's timing run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("args", [
    ["bench/train_throughput.py", "--model", "tiny", "--steps", "2", "--repeats", "1"],
    ["bench/rollout_speed.py", "--model", "tiny", "--repeats", "1"],
    ["bench/rollout_speed.py", "--model", "tiny", "--repeats", "1", "--feature", "drop-ended"],
])
def test_bench_script_runs_on_the_tiny_model(args):
    done = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "median" in done.stdout and "x" in done.stdout.rsplit("median", 1)[1]


def test_bf16_bench_prints_the_ratio_and_what_auto_decides():
    args = ["bench/bf16_matmul.py", "--size", "64", "--repeats", "2", "--seconds", "0.05"]
    done = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("bf16/fp32 median") and "bf16: auto here -> " in last
