"""The parent's half of a sandbox run: feed both children, relay calls between them, keep the deadline.

The two children share no descriptor: each has its own pair of pipes to the parent. The reference child sends
the parent its messages (``M``: its layer report, one outcome per test, ``END``) and calls (``C``), which the
parent forwards to the candidate child one at a time. From the candidate the parent reads one message, the layer
report its runner sends before the candidate's code starts; every frame after that is an opaque answer (``A``),
forwarded only while a call waits for it. Anything else the candidate does (an answer out of turn, a frame too
large, closing its pipe, dying) makes it *gone*: it is killed, and the waiting call and every later one are
answered ``G``, which fails the test that made them (``sandbox_reference.py``). Framing: ``_sandbox_child.py``.
"""

from __future__ import annotations

import json
import os
import selectors
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from srl_rlvr.rewards._sandbox_child import MAX_FRAME_BYTES

READ_CHUNK = 1 << 16


def frame(kind: str, body: bytes) -> bytes:
    return (len(body) + 1).to_bytes(4, "big") + kind.encode("ascii") + body


class FrameError(Exception):
    """A frame header that announces an impossible length."""


@dataclass
class ChildPipes:
    """The parent's ends of one child's pipes and what is buffered on them."""

    name: str
    writer: int  # parent -> child
    reader: int  # child -> parent
    outbox: bytearray = field(default_factory=bytearray)
    inbox: bytearray = field(default_factory=bytearray)
    open: bool = True

    def send(self, kind: str, body: bytes) -> None:
        if self.open:
            self.outbox += frame(kind, body)

    def frames(self) -> list[tuple[str, bytes]]:
        """Complete frames received so far."""
        found = []
        while len(self.inbox) >= 4:
            length = int.from_bytes(self.inbox[:4], "big")
            if not 1 <= length <= MAX_FRAME_BYTES:
                raise FrameError("oversized frame")  # not the size: nothing the candidate chose reaches the trainer
            if len(self.inbox) < 4 + length:
                break
            body = bytes(self.inbox[4 : 4 + length])
            del self.inbox[: 4 + length]
            found.append((chr(body[0]), body[1:]))
        return found


@dataclass
class RelayOutcome:
    reports: dict[int, tuple[bool, str]] = field(default_factory=dict)  # test index -> (passed, outcome)
    layers: dict[str, tuple[str, ...]] = field(default_factory=dict)  # child name -> layers it confirmed
    finished: bool = False  # the reference child said END
    timed_out: bool = False
    candidate_gone: str | None = None  # why the candidate stopped counting, if it did


class Relay:
    """One run's event loop (``selectors`` over the four pipe ends)."""

    def __init__(self, candidate: ChildPipes, reference: ChildPipes, kill_candidate: Callable[[], None]):
        self.candidate, self.reference, self.kill_candidate = candidate, reference, kill_candidate
        self.outcome = RelayOutcome()
        self.waiting = False  # a call went to the candidate and its answer hasn't come back
        self.selector = selectors.DefaultSelector()

    # --- candidate
    def candidate_gone(self, why: str) -> None:
        if self.outcome.candidate_gone is None:
            self.outcome.candidate_gone = why
            self.kill_candidate()
        self._close(self.candidate)
        if self.waiting:
            self.waiting = False
            self.reference.send("G", why.encode())

    def on_candidate_frame(self, kind: str, body: bytes) -> None:
        if "candidate" not in self.outcome.layers:  # its runner's report, sent before the candidate's code ran
            layers = _layer_report(kind, body)
            if layers is None:
                return self.candidate_gone("no layer report")
            self.outcome.layers["candidate"] = layers
        elif kind == "A" and self.waiting:
            self.waiting = False
            self.reference.send("A", body)
        else:
            self.candidate_gone("answered out of turn")

    # --- reference
    def on_reference_frame(self, kind: str, body: bytes) -> None:
        if kind == "C":
            if not self.candidate.open or self.waiting:
                self.reference.send("G", (self.outcome.candidate_gone or "busy").encode())
            else:
                self.waiting = True
                self.candidate.send("C", body)
            return
        try:
            message = json.loads(body) if kind == "M" else None
        except ValueError:
            message = None
        if not isinstance(message, list) or not message:
            return
        if message[0] == "L" and _layer_report(kind, body) is not None:
            self.outcome.layers["reference"] = _layer_report(kind, body)
        elif message[0] == "R" and len(message) == 4 and isinstance(message[1], int):
            self.outcome.reports.setdefault(message[1], (message[2] is True, str(message[3])[:200]))
        elif message[0] == "END":
            self.outcome.finished = True

    # --- the loop
    def _close(self, child: ChildPipes) -> None:
        if child.open:
            child.open = False
            child.outbox.clear()
            for fd in (child.reader, child.writer):
                try:
                    self.selector.unregister(fd)
                except (KeyError, ValueError):
                    pass

    def _pump(self, child: ChildPipes, fd: int, readable: bool) -> None:
        if not readable:
            try:
                written = os.write(fd, child.outbox[:READ_CHUNK])
            except BlockingIOError:
                return
            except OSError:  # the child closed its end (or died)
                return self._lost(child, "stopped reading")
            del child.outbox[:written]
            return
        try:
            data = os.read(fd, READ_CHUNK)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            return self._lost(child, "exited")
        child.inbox += data
        try:
            frames = child.frames()
        except FrameError as error:
            return self._lost(child, str(error))
        for kind, body in frames:
            if not child.open:
                break
            if child is self.candidate:
                self.on_candidate_frame(kind, body)
            else:
                self.on_reference_frame(kind, body)

    def _lost(self, child: ChildPipes, why: str) -> None:
        if child is self.candidate:
            self.candidate_gone(why)
        else:
            self._close(child)

    def _watch(self) -> None:
        """Ask for write readiness only where something waits to be written."""
        for child in (self.candidate, self.reference):
            if not child.open:
                continue
            wanted = bool(child.outbox)
            registered = child.writer in self.selector.get_map()
            if wanted and not registered:
                self.selector.register(child.writer, selectors.EVENT_WRITE, child)
            elif registered and not wanted:
                self.selector.unregister(child.writer)

    def run(self, deadline: float) -> RelayOutcome:
        for child in (self.candidate, self.reference):
            os.set_blocking(child.reader, False)
            os.set_blocking(child.writer, False)
            self.selector.register(child.reader, selectors.EVENT_READ, child)
        try:
            while self.reference.open and not self.outcome.finished:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self.outcome.timed_out = True
                    break
                self._watch()
                for key, _events in self.selector.select(remaining):
                    child = key.data
                    if child.open:
                        self._pump(child, key.fd, key.fd == child.reader)
        finally:
            self.selector.close()
        return self.outcome


def _layer_report(kind: str, body: bytes) -> tuple[str, ...] | None:
    try:
        message = json.loads(body) if kind == "M" else None
    except ValueError:
        return None
    if isinstance(message, list) and len(message) == 2 and message[0] == "L" and isinstance(message[1], list):
        return tuple(name for name in message[1] if isinstance(name, str))
    return None
