"""The append-only JSONL cache of finished teacher responses, so a rerun (after kill -9) asks nothing twice.

One line per finished request: ``{"key", "problem_id", "sample", "reply": {...}}``. The key is the sha256
of the request's prompt messages, the teacher model, the generation parameters and the sample index
(:func:`request_key`): the same request asked again is a hit, a changed prompt, model or parameter a miss.

Each reply is appended, flushed and fsynced before the caller uses it, so whatever a run did with a
response survives a crash. A kill -9 in the middle of an append leaves at most the last line cut short:
on open that line is dropped (its request is simply asked again) and cut off the file, so the next append
starts on a line of its own. Any other unreadable line is an error naming ``file:line``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from srl_rlvr.errors import UserInputError
from srl_rlvr.pipelines.distill.teacher import TeacherReply


def request_key(messages: list[dict[str, Any]], model: str, params: dict[str, Any], sample: int) -> str:
    """sha256 of one request's identity (prompt, model, generation parameters, sample index).

    >>> k = request_key([{"role": "user", "content": "2+2?"}], "m", {"temperature": 0.7}, 0)
    >>> k == request_key([{"role": "user", "content": "2+2?"}], "m", {"temperature": 0.7}, 0), len(k)
    (True, 64)
    >>> k == request_key([{"role": "user", "content": "2+2?"}], "m", {"temperature": 0.7}, 1)
    False
    """
    ident = {"messages": messages, "model": model, "params": params, "sample": sample}
    text = json.dumps(ident, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class ResponseCache:
    """``with ResponseCache(path) as cache: cache.get(key) / cache.put(key, reply, ...)``."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.entries: dict[str, TeacherReply] = {}
        self.dropped_partial_line = False
        self._file: Any = None

    def __enter__(self) -> ResponseCache:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._load()
        self._file = self.path.open("ab")
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __contains__(self, key: str) -> bool:
        return key in self.entries

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, key: str) -> TeacherReply | None:
        return self.entries.get(key)

    def _load(self) -> None:
        if not self.path.is_file():
            return
        data = self.path.read_bytes()
        good_end = 0  # offset just past the last complete line
        lineno = 0
        while good_end < len(data):
            newline = data.find(b"\n", good_end)
            lineno += 1
            if newline < 0:  # the last line, cut short by a kill in the middle of an append
                self.dropped_partial_line = True
                break
            raw = data[good_end:newline]
            if raw.strip():
                self._add_line(raw, lineno)
            good_end = newline + 1
        if good_end < len(data):
            with self.path.open("rb+") as f:
                f.truncate(good_end)
                f.flush()
                os.fsync(f.fileno())

    def _add_line(self, raw: bytes, lineno: int) -> None:
        try:
            entry = json.loads(raw.decode("utf-8"))
            key, reply = entry["key"], TeacherReply.from_json(entry["reply"])
        except (ValueError, KeyError, TypeError) as exc:
            raise UserInputError(f"{self.path}:{lineno}: unreadable teacher-cache entry ({type(exc).__name__}); "
                                 "delete that line (its request is asked again) or the file") from None
        self.entries.setdefault(key, reply)

    def put(self, key: str, reply: TeacherReply, problem_id: str, sample: int) -> None:
        """Append one finished reply and make it durable (flush + fsync) before returning."""
        line = json.dumps({"key": key, "problem_id": problem_id, "sample": sample, "reply": reply.to_json()},
                          ensure_ascii=False, separators=(",", ":"))
        self._file.write(line.encode("utf-8") + b"\n")
        self._file.flush()
        os.fsync(self._file.fileno())
        self.entries.setdefault(key, reply)
