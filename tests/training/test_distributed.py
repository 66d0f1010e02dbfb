"""SRL training in 2 CPU processes under torchrun (gloo): the multi-GPU/multi-node code path.

``accelerate launch`` for GPUs (multi_gpu_launcher) and multi-node DeepSpeed both start the processes with
torch.distributed.run, as here; on CPU, ``accelerate launch --cpu --num_processes 2`` would need MPI
(``--mpirun_hostfile``) and otherwise starts ONE process, so torchrun is called directly.

Runs scripts/distributed_smoke.py as a subprocess; a hang (e.g. ranks disagreeing on dynamic sampling
refill rounds, so one waits in a collective forever) fails on the timeout instead of blocking the suite.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

SMOKE = Path(__file__).resolve().parents[2] / "scripts" / "distributed_smoke.py"
TIMEOUT_S = 600


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> dict:
    work = tmp_path_factory.mktemp("distributed")
    out = work / "summary.json"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), str(SMOKE), "--out", str(out), "--workdir", str(work)]
    # one thread per process: two processes share the machine's cores instead of fighting over them
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONWARNINGS": "ignore"}
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=TIMEOUT_S, cwd=work)
    except subprocess.TimeoutExpired as exc:
        pytest.fail((f"2-process SRL run did not finish in {TIMEOUT_S} s (a collective hung?)\n"
                     f"{exc.stderr or ''}")[-6000:])
    assert proc.returncode == 0, f"accelerate launch failed ({proc.returncode}):\n{proc.stderr[-6000:]}"
    return json.loads(out.read_text())


def test_two_processes_train_two_steps_in_sync(smoke):
    assert smoke["world_size"] == 2
    assert smoke["backend"] == "gloo"
    assert smoke["global_step"] == 2
    assert smoke["params_changed"] and all(smoke["params_changed_per_rank"])
    assert smoke["params_identical_across_ranks"], "DDP must keep both replicas identical"


def test_dynamic_sampling_agrees_across_ranks(smoke):
    """Half the groups are flat: refill decisions are global, so every rank scores the same number of rounds."""
    rounds = smoke["scoring_rounds_per_rank"]
    assert len(set(rounds)) == 1, f"ranks ran different numbers of scoring rounds: {rounds}"
    logs = smoke["dynamic_sampling"]
    assert len(logs) == 2
    assert sum(h["dynamic_sampling/rounds"] for h in logs) == rounds[0]
    assert all(1 <= h["dynamic_sampling/rounds"] <= 2 for h in logs)
