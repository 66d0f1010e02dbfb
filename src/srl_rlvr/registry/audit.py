"""The registry's tamper-evident audit log: who registered, promoted, rolled back or archived which version.

    srl-rlvr registry audit verify
    srl-rlvr registry history demo-math --alias champion --at 2026-12-01T12:00:00Z

Format: JSON Lines, one entry per line, keys in a fixed order: ``seq`` (1, 2, ...), ``time`` (ISO 8601 UTC
with microseconds), ``actor`` (``$SRL_RLVR_ACTOR``, else the login name), ``action`` (register, promote,
force_promote, rollback, reject, archive, alias_set, alias_removed, ...), ``name``, ``version``, ``alias``,
``reason``, ``details``, ``prev`` (the previous entry's hash; :data:`GENESIS` for the first) and ``hash``,
the sha256 of the entry without ``hash`` as canonical JSON (sorted keys, no spaces). Every line is exactly
the compact JSON the log writes, so a changed byte can't hide in whitespace or key order. Appends hold an
exclusive ``flock`` on the file, verify the whole log first (a tampered log is never extended), then write
one line and fsync it.

Threat model. An edited byte makes ``verify`` fail at that line (hash mismatch, or not valid JSON). A
deleted or reordered line breaks the chain at the next line (its ``prev`` no longer matches). Deleting the
LAST lines can't be seen by a hash chain alone: a cleanly truncated log is a valid, shorter chain. Only the
head, :meth:`AuditLog.head` = (entry count, last hash), kept out of band by the caller (the registry keeps it
in its backend's meta store) and passed to ``verify(expected_head=...)``, detects that. Entries appended
after the head was recorded are accepted. An attacker who can rewrite the whole file AND the stored head can
forge any history: that is out of scope; this log makes accidents and edits of the file alone evident, it
is not a signature.

    >>> import tempfile, pathlib
    >>> log = AuditLog(pathlib.Path(tempfile.mkdtemp()) / "audit.jsonl")
    >>> _ = log.append("register", "demo-math", "1", actor="ci")
    >>> _ = log.append("promote", "demo-math", "1", actor="ci", alias="champion", reason="beat the base")
    >>> log.verify()
    2
    >>> [(e["seq"], e["action"]) for e in log.entries()]
    [(1, 'register'), (2, 'promote')]
    >>> log.head()[0], log.entries()[1]["prev"] == log.entries()[0]["hash"]
    (2, True)
"""

from __future__ import annotations

import fcntl
import getpass
import hashlib
import json
import os
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from srl_rlvr.registry.base import RegistryError

GENESIS = "0" * 64
KEYS = ("seq", "time", "actor", "action", "name", "version", "alias", "reason", "details", "prev", "hash")
# actions that move an alias: to the entry's version, or (alias_removed) off every version
ALIAS_MOVES = ("promote", "force_promote", "rollback", "alias_set")
ALIAS_REMOVED = "alias_removed"
_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class AuditTampered(RegistryError):
    """The audit log is not the one the registry wrote: ``line`` is the first bad line (1-based; the line
    count + 1 when entries are missing from the end) and ``reason`` says what is wrong with it."""

    def __init__(self, path: str | Path, line: int, reason: str):
        self.path, self.line, self.reason = str(path), line, reason
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"audit log {self.path}: line {self.line}: {self.reason}"

    def __reduce__(self):  # picklable across processes despite the custom __init__
        return (type(self), (self.path, self.line, self.reason))


def _now() -> datetime:
    """The clock entries are stamped with (tests patch it)."""
    return datetime.now(timezone.utc)


def _format_time(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds")


def _default_actor() -> str:
    actor = os.environ.get("SRL_RLVR_ACTOR", "").strip()
    if actor:
        return actor
    try:
        return getpass.getuser() or "unknown"
    except Exception:  # no USER/LOGNAME and no passwd entry (some containers)
        return "unknown"


def entry_hash(entry: dict[str, Any]) -> str:
    """sha256 hex of the entry (without its ``hash``) as canonical JSON."""
    body = {k: v for k, v in entry.items() if k != "hash"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _line_of(entry: dict[str, Any]) -> bytes:
    """The entry as the log writes it: compact JSON, keys in :data:`KEYS` order (no newline)."""
    ordered = {key: entry[key] for key in KEYS}
    return json.dumps(ordered, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def parse_time(at: str | datetime) -> datetime:
    """A datetime (naive = UTC) or an ISO 8601 string (``Z`` allowed; a date alone = midnight UTC), as UTC."""
    if isinstance(at, datetime):
        moment = at
    elif isinstance(at, str):
        text = at.strip()
        if text[-1:] in ("Z", "z"):
            text = text[:-1] + "+00:00"
        try:
            if _DATE_ONLY.match(text):
                moment = datetime.fromisoformat(text + "T00:00:00+00:00")
            else:
                moment = datetime.fromisoformat(text)
        except ValueError:
            raise RegistryError(f"time {at!r}: expected ISO 8601, e.g. 2026-12-01T12:00:00Z or 2026-12-01") from None
    else:
        raise RegistryError(f"time {at!r}: expected an ISO 8601 string or a datetime")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def _check(path: Path, data: bytes, expected_head: tuple[int, str] | None = None) -> list[dict[str, Any]]:
    """The entries of the log's bytes ``data``, or AuditTampered at the first bad line."""
    pieces = data.split(b"\n")
    complete = data.endswith(b"\n") or not data
    if complete:
        pieces.pop()  # the empty piece after the final newline (or of an empty file)
    entries: list[dict[str, Any]] = []
    prev = GENESIS
    for number, raw in enumerate(pieces, start=1):
        if not complete and number == len(pieces):
            raise AuditTampered(path, number, "incomplete line (the log was truncated or a write was cut short)")
        if not raw.strip():
            raise AuditTampered(path, number, "blank line")
        try:
            entry = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise AuditTampered(path, number, "not valid JSON") from None
        if not isinstance(entry, dict):
            raise AuditTampered(path, number, "not valid JSON (not an object)")
        if set(entry) != set(KEYS):
            raise AuditTampered(path, number, f"not an audit entry (keys {sorted(entry)})")
        try:
            recomputed = entry_hash(entry)
        except UnicodeEncodeError:  # a lone surrogate escape: never written by append
            recomputed = None
        if entry["hash"] != recomputed:
            raise AuditTampered(path, number, "hash mismatch (the entry was edited)")
        if raw != _line_of(entry):
            raise AuditTampered(path, number, "not in the log's canonical form (the line was edited)")
        if entry["prev"] != prev:
            raise AuditTampered(
                path, number, "chain broken (an entry before it was deleted or the lines were reordered)"
            )
        if entry["seq"] != number:
            raise AuditTampered(path, number, f"sequence number {entry['seq']!r}, expected {number}")
        prev = entry["hash"]
        entries.append(entry)
    if expected_head is not None:
        count, head_hash = _check_head(expected_head)
        if len(entries) < count:
            missing = count - len(entries)
            raise AuditTampered(
                path, len(entries) + 1, f"the log ends early: {missing} entries missing (deleted from the end)"
            )
        actual = entries[count - 1]["hash"] if count else GENESIS
        if actual != head_hash:
            raise AuditTampered(
                path, max(count, 1),
                f"does not match the recorded head (entry {count} should hash to {head_hash[:12]}..., "
                f"it hashes to {actual[:12]}...): the log was rewritten",
            )
    return entries


def _check_head(expected_head: Any) -> tuple[int, str]:
    try:
        count, head_hash = expected_head
    except (TypeError, ValueError):
        raise RegistryError(f"audit head {expected_head!r}: expected (entry count, sha256 hex)") from None
    if isinstance(count, bool) or not isinstance(count, int) or count < 0 or not isinstance(head_hash, str) \
            or not _HEX64.match(head_hash):
        raise RegistryError(f"audit head {expected_head!r}: expected (entry count, sha256 hex)")
    return count, head_hash


class AuditLog:
    """An append-only, hash-chained JSON Lines file. Safe for several processes appending at once."""

    def __init__(self, path: str | Path):
        self.path = Path(str(path)).expanduser()

    def _read(self) -> bytes:
        """The log's bytes, read under a shared lock so a concurrent append is never seen half-written."""
        try:
            with open(self.path, "rb") as f:
                fcntl.flock(f.fileno(), fcntl.LOCK_SH)
                return f.read()
        except FileNotFoundError:
            return b""
        except OSError as exc:
            raise RegistryError(f"audit log {self.path}: unreadable ({exc})") from None

    def append(
        self,
        action: str,
        name: str,
        version: str | None = None,
        *,
        actor: str | None = None,
        reason: str = "",
        alias: str | None = None,
        details: dict | None = None,
    ) -> dict:
        """Add one entry and return it (with ``seq``, ``prev`` and ``hash``). Raises AuditTampered, and writes
        nothing, when the log as it stands does not verify."""
        if not isinstance(action, str) or not action:
            raise RegistryError(f"audit action {action!r}: expected a non-empty string")
        if not isinstance(name, str) or not name:
            raise RegistryError(f"audit entry name {name!r}: expected a non-empty string")
        if details is not None and not isinstance(details, dict):
            raise RegistryError(f"audit details {details!r}: expected a dict")
        fields = {
            "actor": actor or _default_actor(),
            "action": action,
            "name": name,
            "version": None if version is None else str(version),
            "alias": alias,
            "reason": reason or "",
            "details": dict(details or {}),
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        created = not self.path.exists()
        with open(self.path, "a+b") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)  # held until close: read the head, then append
            f.seek(0)
            entries = _check(self.path, f.read())
            entry: dict[str, Any] = {"seq": len(entries) + 1, "time": _format_time(_now()), **fields,
                                     "prev": entries[-1]["hash"] if entries else GENESIS}
            try:
                entry["hash"] = entry_hash(entry)
                line = _line_of(entry)
            except (TypeError, ValueError, UnicodeEncodeError) as exc:
                raise RegistryError(f"audit entry {action} {name}: not representable as JSON ({exc})") from None
            f.write(line + b"\n")
            f.flush()
            os.fsync(f.fileno())
        if created:  # make the new file's directory entry durable too
            try:
                fd = os.open(self.path.parent, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except OSError:
                pass
        return entry

    def verify(self, expected_head: tuple[int, str] | None = None) -> int:
        """The number of entries; raises AuditTampered at the first bad line, or when the log is shorter
        than (or differs at) ``expected_head`` = (count, hash), the head kept out of band."""
        return len(_check(self.path, self._read(), expected_head))

    def entries(self) -> list[dict]:
        """Every entry, oldest first, once the log verifies."""
        return _check(self.path, self._read())

    def head(self) -> tuple[int, str]:
        """(number of entries, hash of the last entry or GENESIS): what the caller must keep out of band (away
        from this file) and pass back to ``verify(expected_head=...)``; only it detects deleted last lines."""
        entries = self.entries()
        return len(entries), entries[-1]["hash"] if entries else GENESIS

    def alias_history(self, name: str, alias: str) -> list[tuple[str, str | None]]:
        """Every move of ``name@alias``: [(time, version, or None when removed)], oldest first."""
        history: list[tuple[str, str | None]] = []
        for entry in self.entries():
            if entry["name"] != name or entry["alias"] != alias:
                continue
            if entry["action"] in ALIAS_MOVES:
                history.append((entry["time"], entry["version"]))
            elif entry["action"] == ALIAS_REMOVED:
                history.append((entry["time"], None))
        return history

    def holder_at(self, name: str, alias: str, at: str | datetime) -> str | None:
        """The version that held ``name@alias`` at time ``at`` (moves stamped at or before ``at``), or None
        (before its first move, or while removed)."""
        moment = parse_time(at)
        holder: str | None = None
        for time, version in self.alias_history(name, alias):
            if parse_time(time) <= moment:
                holder = version
        return holder
