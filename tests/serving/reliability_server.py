"""A real ``srl-rlvr serve`` child process on loopback for the reliability tests, plus latency statistics."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import yaml
from serving_helpers import TINY

ADMIN, USER = "reliability-admin-key", "reliability-user-key"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


class ServeProcess:
    """``srl-rlvr serve --model <tiny> --served-model-name tiny`` with ``config`` as its serve.yaml (an admin and a
    user key unless ``config`` sets ``api_keys``), started on a free loopback port; its log is ``folder/serve.log``
    (shown when it fails to start)."""

    def __init__(self, model_dir: Path, folder: Path, config: dict[str, Any] | None = None, *extra: str,
                 startup_timeout_s: float = 180.0):
        self.model_dir, self.folder, self.extra = model_dir, folder, extra
        self.config = {"api_keys": [{"key": ADMIN, "scope": "admin"}, {"key": USER, "scope": "user"}],
                       **(config or {})}
        self.startup_timeout_s = startup_timeout_s
        self.port = free_port()
        self.log = folder / "serve.log"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ServeProcess:
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "serve.yaml").write_text(yaml.safe_dump(self.config), encoding="utf-8")
        env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1", "PYTHONUNBUFFERED": "1"}
        env.pop("SRL_RLVR_API_KEYS", None)
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "srl_rlvr.cli.main", "serve", "--model", str(self.model_dir),
                 "--served-model-name", TINY, "--port", str(self.port), "--config", str(self.folder / "serve.yaml"),
                 *self.extra], stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + self.startup_timeout_s
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"srl-rlvr serve exited with {self.proc.returncode}:\n{self.log_text()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.__exit__()
                raise TimeoutError(f"srl-rlvr serve did not answer /health in {self.startup_timeout_s:.0f}s:\n"
                                   f"{self.log_text()}")
            time.sleep(0.2)

    def __exit__(self, *exc: Any) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")[-6000:]


def percentiles(latencies_s: list[float]) -> dict[str, float]:
    """p50/p95/p99 (nearest rank), min, max and mean, in seconds.

    >>> percentiles([0.1 * i for i in range(1, 101)])["p95"]
    9.5
    """
    ordered = sorted(latencies_s)
    if not ordered:
        return {}

    def rank(p: float) -> float:
        return round(ordered[max(0, min(len(ordered) - 1, int(-(-p * len(ordered) // 100)) - 1))], 4)

    return {"p50": rank(50), "p95": rank(95), "p99": rank(99), "min": round(ordered[0], 4),
            "max": round(ordered[-1], 4), "mean": round(sum(ordered) / len(ordered), 4)}
