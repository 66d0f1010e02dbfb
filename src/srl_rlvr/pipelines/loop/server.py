"""The served side of the loop: a ``srl-rlvr serve`` process following the registry alias, and the HTTP
calls the loop makes to it (its cards, a chat answer, waiting for the hot-swap).

The loop starts the server as a child process (the same command a user runs), so the hot-swap it checks
is the server's own registry watcher at work, not a call the loop makes on the server's behalf.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from srl_rlvr.errors import UserInputError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServerProcess:
    """``srl-rlvr serve --model models:/NAME@ALIAS`` with a route config, as a child process."""

    model_ref: str
    registry_uri: str
    route_config: str
    predictor: Path
    escalation_log: Path
    folder: Path
    poll_s: float = 1.0
    startup_timeout_s: float = 300.0
    proc: subprocess.Popen | None = None
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def log_path(self) -> Path:
        return self.folder / "server.log"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "srl_rlvr.cli.main", "serve", "--model", self.model_ref,
                "--registry", self.registry_uri, "--config", str(self.folder / "serve.yaml"),
                "--route-config", self.route_config, "--predictor", str(self.predictor),
                "--escalation-log", str(self.escalation_log), "--port", str(self.port)]

    def start(self) -> ServerProcess:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        (self.folder / "serve.yaml").write_text(yaml.safe_dump({"registry": {"poll_s": self.poll_s}}),
                                                encoding="utf-8")
        log = self.log_path.open("ab")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, env=env)
        log.close()
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise UserInputError(f"srl-rlvr serve exited with {self.proc.returncode} while starting; "
                                     f"its log: {self.log_path}\n{_tail(self.log_path)}")
            try:
                get_json(self.url.removesuffix("/v1") + "/health", None, timeout=2.0)
                return self
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise UserInputError(f"srl-rlvr serve did not answer within {self.startup_timeout_s:.0f}s; "
                             f"its log: {self.log_path}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _request(method: str, url: str, api_key: str | None, body: Any = None, timeout: float = 60.0) -> Any:
    import json
    import urllib.request

    data = json.dumps(body).encode("utf-8") if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if api_key:
        request.add_header("Authorization", f"Bearer {api_key}")
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - a URL from the config
        return json.loads(response.read().decode("utf-8")), dict(response.headers)


def get_json(url: str, api_key: str | None, timeout: float = 30.0) -> Any:
    return _request("GET", url, api_key, timeout=timeout)[0]


def chat(url: str, api_key: str | None, model: str, messages: list[dict], max_tokens: int,
         timeout: float = 600.0) -> tuple[dict, dict]:
    body = {"model": model, "messages": messages, "max_tokens": max_tokens, "temperature": 0}
    return _request("POST", url + "/chat/completions", api_key, body, timeout=timeout)


def cards(url: str, api_key: str | None) -> dict[str, dict]:
    return {card["id"]: card for card in get_json(url + "/models", api_key)["data"]}


def served_version(url: str, api_key: str | None, name: str) -> str | None:
    """The registry version the server answers ``name`` with (its /v1/models card), or None."""
    card = cards(url, api_key).get(name) or {}
    return (card.get("registry") or {}).get("version")


def wait_for_version(url: str, api_key: str | None, name: str, version: str, timeout_s: float) -> float:
    """Seconds until ``name``'s card shows ``version``; UserInputError when it does not within ``timeout_s``."""
    start = time.monotonic()
    seen = None
    while time.monotonic() - start < timeout_s:
        seen = served_version(url, api_key, name)
        if seen == version:
            return time.monotonic() - start
        time.sleep(0.5)
    raise UserInputError(f"the server at {url} still answers {name!r} with version {seen}, not {version}, after "
                         f"{timeout_s:.0f}s (is it following the alias? see its log)")


__all__ = ["ServerProcess", "cards", "chat", "free_port", "get_json", "served_version", "wait_for_version"]
