"""Robust JSONL reading: every bad line becomes an InvalidRecord naming ``file:line`` and the field.

Lines are read as bytes with a size cap, so a multi-GB line cannot exhaust memory and a non-UTF-8 byte
is reported rather than crashing the decoder.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from srl_rlvr.errors import InvalidRecord, UserInputError

MAX_LINE_BYTES = 8 * 1024 * 1024  # 8 MiB: far above any real trajectory, far below the machine's memory
_CHUNK = 1 << 20

T = TypeVar("T")


@dataclass
class LoadResult(Generic[T]):
    """Rows that passed validation, plus the bad rows that ``skip_invalid`` skipped."""

    rows: list[T] = field(default_factory=list)
    skipped: list[InvalidRecord] = field(default_factory=list)


def _read_lines(path: Path, max_line_bytes: int) -> Iterator[tuple[int, bytes | None]]:
    """Yield (line number, raw bytes); bytes is None when the line exceeded ``max_line_bytes``."""
    with path.open("rb") as f:
        lineno = 0
        while True:
            raw = f.readline(max_line_bytes + 1)
            if not raw:
                return
            lineno += 1
            if len(raw) > max_line_bytes and not raw.endswith(b"\n"):
                while raw and not raw.endswith(b"\n"):  # drain the rest of the oversize line
                    raw = f.readline(_CHUNK)
                yield lineno, None
                continue
            yield lineno, raw


def iter_json_objects(path: str | Path, max_line_bytes: int = MAX_LINE_BYTES) -> Iterator[tuple[int, Any]]:
    """Yield (line number, decoded JSON value) for each non-blank line; raise InvalidRecord on a bad one.

    The generator stays usable after an InvalidRecord, so callers can skip a line and go on.
    """
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"{path}: no such file")
    for lineno, raw in _read_lines(path, max_line_bytes):
        if raw is None:
            yield lineno, InvalidRecord(str(path), lineno, "<line>", f"line is longer than {max_line_bytes} bytes")
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield lineno, InvalidRecord(str(path), lineno, "<line>", f"not valid UTF-8 (byte offset {exc.start})")
            continue
        if not text.strip():
            continue
        try:
            yield lineno, json.loads(text)
        except json.JSONDecodeError as exc:
            yield lineno, InvalidRecord(str(path), lineno, "<json>",
                                        f"malformed JSON: {exc.msg} at column {exc.colno}")
        except RecursionError:
            yield lineno, InvalidRecord(str(path), lineno, "<json>", "malformed JSON: nested too deeply")


def required_text(row: dict[str, Any], column: str, path: str, line: int) -> str:
    """``row[column]`` as a non-blank string, else an InvalidRecord naming the file, line and column."""
    value = row.get(column)
    if value is None:
        raise InvalidRecord(path, line, column, "is required")
    if not isinstance(value, str):
        raise InvalidRecord(path, line, column, f"expected a string, got {type(value).__name__}")
    if not value.strip():
        raise InvalidRecord(path, line, column, "must not be empty")
    return value


def load_jsonl(
    path: str | Path,
    validate: Callable[[Any, str, int], T],
    skip_invalid: bool = False,
    max_line_bytes: int = MAX_LINE_BYTES,
) -> LoadResult[T]:
    """Read ``path`` and validate each row with ``validate(obj, path, line)``.

    The first bad row raises InvalidRecord, unless ``skip_invalid`` is set: then bad rows are counted in
    ``skipped`` and loading goes on.
    """
    result: LoadResult[T] = LoadResult()
    for lineno, obj in iter_json_objects(path, max_line_bytes):
        try:
            if isinstance(obj, InvalidRecord):
                raise obj
            result.rows.append(validate(obj, str(path), lineno))
        except InvalidRecord as bad:
            if not skip_invalid:
                raise
            result.skipped.append(bad)
    return result
