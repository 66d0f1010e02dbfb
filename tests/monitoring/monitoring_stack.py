"""Real monitoring components for the tests, on loopback: Prometheus, Alertmanager, node exporter (its
textfile collector serves training's metrics.prom) and a webhook receiver that records what arrives."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

PROMETHEUS = shutil.which("prometheus")
ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
NODE_EXPORTER = shutil.which("prometheus-node-exporter") or shutil.which("node_exporter")
PROMTOOL = shutil.which("promtool")


def need(*tools: str | None) -> None:
    if not all(tools):
        pytest.skip("Debian's prometheus, prometheus-alertmanager and prometheus-node-exporter are needed "
                    "(make system-deps installs them)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, timeout_s: float = 60.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{proc.args[0]} exited with {proc.returncode} (its log is in the test's tmp folder)")
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} did not come up in {timeout_s}s")


class Webhook:
    """Alertmanager's webhook receiver: keeps every alert it is sent, with the time it arrived."""

    def __init__(self) -> None:
        self.received: list[tuple[float, dict[str, Any]]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                for alert in body.get("alerts", []):
                    hook.received.append((time.monotonic(), alert))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/alerts"

    def names(self) -> set[str]:
        return {a.get("labels", {}).get("alertname", "") for _, a in self.received}

    def close(self) -> None:
        self.server.shutdown()


class Stack:
    """Processes started for a test, stopped together."""

    def __init__(self, root: Path):
        self.root = root
        self.procs: list[subprocess.Popen] = []

    def start(self, *args: str, ready: str | None = None, timeout_s: float = 60.0, env=None) -> subprocess.Popen:
        log = open(self.root / f"{Path(args[0]).name}-{len(self.procs)}.log", "w")  # noqa: SIM115
        proc = subprocess.Popen(list(args), stdout=log, stderr=subprocess.STDOUT, env=env)
        self.procs.append(proc)
        if ready:
            wait_http(ready, timeout_s, proc)
        return proc

    def alertmanager(self, webhook: Webhook) -> str:
        port = free_port()
        config = {"route": {"receiver": "webhook", "group_by": ["alertname"], "group_wait": "1s",
                            "group_interval": "1s", "repeat_interval": "1h"},
                  "receivers": [{"name": "webhook", "webhook_configs": [{"url": webhook.url}]}]}
        path = self.root / "alertmanager.yml"
        path.write_text(yaml.safe_dump(config))
        self.start(ALERTMANAGER, f"--config.file={path}", f"--storage.path={self.root / 'am-data'}",
                   f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=",
                   ready=f"http://127.0.0.1:{port}/-/ready")
        return f"127.0.0.1:{port}"

    def node_exporter(self, textfile_dir: Path) -> str:
        port = free_port()
        self.start(NODE_EXPORTER, f"--web.listen-address=127.0.0.1:{port}",
                   f"--collector.textfile.directory={textfile_dir}", "--collector.disable-defaults",
                   "--collector.textfile", ready=f"http://127.0.0.1:{port}/metrics")
        return f"127.0.0.1:{port}"

    def prometheus(self, jobs: dict[str, tuple[str, dict[str, str]]], rule_files: list[Path],
                   alertmanager: str | None = None) -> str:
        port = free_port()
        config: dict[str, Any] = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(p) for p in rule_files],
            "scrape_configs": [{"job_name": job, "static_configs": [{"targets": [target], "labels": labels}]}
                               for job, (target, labels) in jobs.items()]}
        if alertmanager:
            config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]}
        path = self.root / "prometheus.yml"
        path.write_text(yaml.safe_dump(config))
        self.start(PROMETHEUS, f"--config.file={path}", f"--storage.tsdb.path={self.root / 'tsdb'}",
                   f"--web.listen-address=127.0.0.1:{port}", ready=f"http://127.0.0.1:{port}/-/ready")
        return f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


def query(prometheus: str, promql: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{prometheus}/api/v1/query", params={"query": promql}, timeout=10)
    body = response.json()
    assert body.get("status") == "success", (promql, body)
    return body["data"]["result"]


def targets_up(prometheus: str) -> dict[str, str]:
    active = httpx.get(f"{prometheus}/api/v1/targets", timeout=10).json()["data"]["activeTargets"]
    return {t["labels"]["job"]: t["health"] for t in active}
