"""Slowloris against a real `srl-rlvr serve` on loopback: clients that send their headers and then dribble the
body a byte at a time are cut off (408, then the connection closed) once ``limits.body_timeout_s`` has passed,
and normal requests sent meanwhile are answered at once, long before the slow clients are cut off."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest
from reliability_server import USER, ServeProcess, auth
from serving_helpers import TINY

BODY_TIMEOUT_S = 2.0
SLOW_CLIENTS = 8
CHAT = {"model": TINY, "messages": [{"role": "user", "content": "What is 2+3?"}], "max_tokens": 4, "temperature": 0}


@pytest.fixture(scope="module")
def server(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    with ServeProcess(tiny_model_dir, tmp_path_factory.mktemp("slowloris"),
                      {"limits": {"body_timeout_s": BODY_TIMEOUT_S, "max_tokens": 8}}) as live:
        yield live


class SlowClient(threading.Thread):
    """Sends a chat request's headers at once, then its body one byte every ``every_s``; records when the server
    answered (and what) and when it closed the connection."""

    def __init__(self, port: int, every_s: float = 0.1, chunked: bool = False):
        super().__init__(daemon=True)
        self.port, self.every_s, self.chunked = port, every_s, chunked
        self.body = json.dumps(CHAT).encode()
        self.started = self.answered_at = self.closed_at = None
        self.bytes_sent, self.response = 0, b""
        self.ready = threading.Event()

    def run(self) -> None:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=30)
        framing = "Transfer-Encoding: chunked" if self.chunked else f"Content-Length: {len(self.body)}"
        sock.sendall(f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
                     f"Authorization: Bearer {USER}\r\nContent-Type: application/json\r\n{framing}\r\n\r\n".encode())
        self.started = time.monotonic()
        self.ready.set()
        sock.settimeout(self.every_s)
        try:
            for byte in self.body:
                piece = bytes([byte])
                sock.sendall(b"1\r\n" + piece + b"\r\n" if self.chunked else piece)
                self.bytes_sent += 1
                try:
                    data = sock.recv(65536)
                except socket.timeout:
                    continue
                self._got(data)
                break
            sock.settimeout(10)
            while self.closed_at is None:
                self._got(sock.recv(65536))
        except OSError:  # reset by the server while we still wrote: closed as well
            self.closed_at = self.closed_at or time.monotonic()
        finally:
            sock.close()

    def _got(self, data: bytes) -> None:
        now = time.monotonic()
        if not data:
            self.closed_at = now
            return
        self.answered_at = self.answered_at or now
        self.response += data


def test_dribbled_bodies_are_cut_off_and_do_not_block_other_clients(server: ServeProcess):
    slow = [SlowClient(server.port, chunked=i % 2 == 1) for i in range(SLOW_CLIENTS)]
    for client in slow:
        client.start()
    for client in slow:
        assert client.ready.wait(10)
    # normal requests while every slow client is still dribbling (their bodies need ~7 s at 10 bytes/s)
    normal = []
    with httpx.Client(base_url=server.url, headers=auth(USER), timeout=30) as c:
        for _ in range(3):
            start = time.monotonic()
            r = c.post("/v1/chat/completions", json=CHAT)
            normal.append((time.monotonic() - start, r.status_code))
            assert r.status_code == 200, r.text
        assert c.get("/v1/models").status_code == 200
    still_open = sum(client.answered_at is None and client.closed_at is None for client in slow)
    for client in slow:
        client.join(timeout=BODY_TIMEOUT_S + 15)
    cut_off = [round(c.closed_at - c.started, 2) for c in slow if c.closed_at is not None]
    answered = [round(c.answered_at - c.started, 2) for c in slow if c.answered_at is not None]
    print(f"\nslowloris: body_timeout_s={BODY_TIMEOUT_S}; {SLOW_CLIENTS} slow clients answered after {answered} s, "
          f"closed after {cut_off} s (bytes sent: {[c.bytes_sent for c in slow]}); normal requests meanwhile: "
          f"{[(round(t, 3), s) for t, s in normal]}")
    assert still_open == SLOW_CLIENTS, "the normal requests were answered only after a slow client was cut off"
    for client in slow:
        assert not client.is_alive()
        head, _, body = client.response.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408 "), client.response[:300]
        assert b"connection: close" in head.lower()
        error = json.loads(body)["error"]
        assert error["code"] == "body_timeout" and "body_timeout_s" in error["message"]
        assert client.bytes_sent < len(client.body)  # cut off before its body was complete
        assert BODY_TIMEOUT_S - 0.2 <= client.answered_at - client.started <= BODY_TIMEOUT_S + 3
        assert client.closed_at - client.started <= BODY_TIMEOUT_S + 3
    assert "Traceback" not in server.log_text()
    # the server is still fine afterwards, and /metrics counted the 408s as client errors
    metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
    assert f'srl_rlvr_serving_http_responses_total{{code="408",route="/v1/chat/completions"}} {SLOW_CLIENTS}.0' \
        in metrics, [line for line in metrics.splitlines() if "http_responses" in line]
