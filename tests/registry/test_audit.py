"""The registry's audit log: the hash chain, what each kind of tampering reports, alias history, concurrency."""

from __future__ import annotations

import json
import multiprocessing
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from srl_rlvr.registry import audit as audit_mod
from srl_rlvr.registry.audit import GENESIS, AuditLog, AuditTampered, entry_hash
from srl_rlvr.registry.base import RegistryError

T0 = datetime(2026, 12, 1, 12, 0, 0, tzinfo=timezone.utc)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch):
    """A controllable clock: ``clock.set(dt)`` stamps the next entries with ``dt``."""

    class Clock:
        now = T0

        def set(self, moment: datetime) -> None:
            self.now = moment

    c = Clock()
    monkeypatch.setattr(audit_mod, "_now", lambda: c.now)
    return c


def _log3(tmp_path: Path) -> AuditLog:
    log = AuditLog(tmp_path / "reg" / "audit.jsonl")  # parent folder does not exist yet
    log.append("register", "demo-math", "1", actor="alice", details={"source": "out/demo/models/srl_rlvr"})
    log.append("promote", "demo-math", "1", actor="bob", alias="champion", reason="beat base by 4 points: café")
    log.append("register", "demo-math", "2", actor="alice")
    return log


def _lines(log: AuditLog) -> list[bytes]:
    return log.path.read_bytes().splitlines(keepends=True)


def _write(log: AuditLog, lines: list[bytes]) -> None:
    log.path.write_bytes(b"".join(lines))


def _tampered(log: AuditLog, **kwargs) -> AuditTampered:
    with pytest.raises(AuditTampered) as info:
        log.verify(**kwargs)
    return info.value


def test_round_trip_links_and_format(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SRL_RLVR_ACTOR", "ci-bot")
    log = _log3(tmp_path)
    log.append("archive", "demo-math", "1", reason="superseded")  # actor from the environment
    assert log.verify() == 4
    entries = log.entries()
    assert [e["seq"] for e in entries] == [1, 2, 3, 4]
    assert entries[0]["prev"] == GENESIS
    for before, after in zip(entries, entries[1:]):
        assert after["prev"] == before["hash"]
    for e in entries:
        assert list(e) == ["seq", "time", "actor", "action", "name", "version", "alias", "reason", "details",
                           "prev", "hash"]
        assert e["hash"] == entry_hash(e)
        assert datetime.fromisoformat(e["time"]).utcoffset() == timedelta(0)
        assert len(e["time"]) == len("2026-12-02T03:04:05.123456+00:00")
    assert entries[3]["actor"] == "ci-bot" and entries[1]["actor"] == "bob"
    assert entries[1]["alias"] == "champion" and entries[0]["alias"] is None
    assert entries[1]["reason"] == "beat base by 4 points: café"
    assert entries[0]["details"] == {"source": "out/demo/models/srl_rlvr"} and entries[2]["details"] == {}
    assert log.head() == (4, entries[-1]["hash"])
    assert log.verify(expected_head=log.head()) == 4
    # the file is plain JSON Lines, one object per line, each ending in a newline
    raw = log.path.read_bytes()
    assert raw.endswith(b"\n") and len(raw.splitlines()) == 4
    assert [json.loads(line)["seq"] for line in raw.splitlines()] == [1, 2, 3, 4]
    assert "café".encode() in raw  # ensure_ascii=False


def test_empty_log(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "none.jsonl")
    assert log.verify() == 0 and log.entries() == [] and log.head() == (0, GENESIS)
    assert log.verify(expected_head=(0, GENESIS)) == 0
    err = _tampered(log, expected_head=(2, "a" * 64))
    assert err.line == 1 and "2 entries missing" in err.reason


def test_timestamps_come_from_the_clock(tmp_path: Path, clock) -> None:
    clock.set(datetime(2026, 12, 2, 3, 4, 5, 123456, tzinfo=timezone.utc))
    entry = AuditLog(tmp_path / "a.jsonl").append("register", "m", "1", actor="x")
    assert entry["time"] == "2026-12-02T03:04:05.123456+00:00"
    clock.set(datetime(2026, 12, 2, 5, 4, 5, tzinfo=timezone(timedelta(hours=2))))  # converted to UTC
    entry = AuditLog(tmp_path / "a.jsonl").append("register", "m", "2", actor="x")
    assert entry["time"] == "2026-12-02T03:04:05.000000+00:00"


def _flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1:]


@pytest.mark.parametrize("target", ["reason", "time", "prev", "hash", "seq"])
def test_one_flipped_byte_names_its_line(tmp_path: Path, target: str) -> None:
    log = _log3(tmp_path)
    lines = _lines(log)
    middle = lines[1]
    entry = json.loads(middle)
    if target == "reason":
        index = middle.index(b"beat base") + 5  # a letter inside the reason text
    elif target == "time":
        index = middle.index(entry["time"].encode()) + 15  # a digit of the minutes
    elif target == "seq":
        index = middle.index(b'"seq":') + len(b'"seq":')
    else:
        index = middle.index(entry[target].encode()) + 7  # a hex char inside prev / hash
    _write(log, [lines[0], _flip(middle, index), lines[2]])
    err = _tampered(log)
    assert err.line == 2
    assert "hash mismatch" in err.reason
    assert "line 2: hash mismatch (the entry was edited)" in str(err)


def test_every_flipped_byte_in_a_line_is_caught(tmp_path: Path) -> None:
    log = _log3(tmp_path)
    lines = _lines(log)
    for number in (1, 2, 3):
        line = lines[number - 1]
        for index in range(len(line) - 1):  # every byte but the newline
            tampered = list(lines)
            tampered[number - 1] = _flip(line, index)
            _write(log, tampered)
            with pytest.raises(AuditTampered) as info:
                log.verify()
            assert info.value.line == number, (number, index, info.value)
    _write(log, lines)
    assert log.verify() == 3


def test_whitespace_or_key_order_edits_are_caught(tmp_path: Path) -> None:
    log = _log3(tmp_path)
    lines = _lines(log)
    entry = json.loads(lines[1])
    reordered = json.dumps(dict(reversed(list(entry.items()))), separators=(",", ":"), ensure_ascii=False)
    for edited in (lines[1].replace(b'":', b'": ', 1), reordered.encode() + b"\n", lines[1][:-1] + b" \r\n"):
        _write(log, [lines[0], edited, lines[2]])
        assert _tampered(log).line == 2


def test_deleted_middle_line_names_the_next(tmp_path: Path) -> None:
    log = _log3(tmp_path)
    lines = _lines(log)
    _write(log, [lines[0], lines[2]])
    err = _tampered(log)
    assert err.line == 2
    assert err.reason == "chain broken (an entry before it was deleted or the lines were reordered)"


def test_deleted_first_line_names_line_1(tmp_path: Path) -> None:
    log = _log3(tmp_path)
    _write(log, _lines(log)[1:])
    err = _tampered(log)
    assert err.line == 1 and "chain broken" in err.reason


def test_swapped_lines_name_the_first_bad_line(tmp_path: Path) -> None:
    log = _log3(tmp_path)
    lines = _lines(log)
    _write(log, [lines[0], lines[2], lines[1]])
    err = _tampered(log)
    assert err.line == 2 and "chain broken" in err.reason
    _write(log, [lines[1], lines[0], lines[2]])
    assert _tampered(log).line == 1


def test_truncated_last_line_is_incomplete(tmp_path: Path) -> None:
    log = _log3(tmp_path)
    lines = _lines(log)
    for cut in (1, len(lines[2]) // 2, len(lines[2]) - 1):  # even a lost final newline alone
        _write(log, [lines[0], lines[1], lines[2][:cut]])
        err = _tampered(log)
        assert err.line == 3 and "incomplete line" in err.reason
        assert "line 3: incomplete line" in str(err)


def test_blank_and_garbage_lines(tmp_path: Path) -> None:
    log = _log3(tmp_path)
    lines = _lines(log)
    _write(log, [lines[0], b"\n", lines[1], lines[2]])
    err = _tampered(log)
    assert err.line == 2 and err.reason == "blank line"
    _write(log, [*lines, b"\n"])
    assert _tampered(log).line == 4
    _write(log, [lines[0], b"{not json\n", lines[2]])
    err = _tampered(log)
    assert err.line == 2 and err.reason == "not valid JSON"
    _write(log, [lines[0], b"[1, 2]\n", lines[2]])
    assert _tampered(log).line == 2
    _write(log, [lines[0], b'{"seq": 2}\n', lines[2]])
    assert _tampered(log).line == 2


def test_renumbered_entry_with_recomputed_hash_fails_on_sequence(tmp_path: Path) -> None:
    log = _log3(tmp_path)
    lines = _lines(log)
    entry = json.loads(lines[0])
    entry["seq"] = 7
    entry["hash"] = entry_hash(entry)
    _write(log, [json.dumps(entry, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"])
    err = _tampered(log)
    assert err.line == 1 and err.reason.startswith("sequence")


def test_deleted_tail_needs_the_head(tmp_path: Path) -> None:
    log = _log3(tmp_path)
    head = log.head()
    assert head[0] == 3
    lines = _lines(log)
    _write(log, lines[:2])
    assert log.verify() == 2  # a hash chain alone cannot see a clean truncation
    err = _tampered(log, expected_head=head)
    assert err.line == 3
    assert err.reason == "the log ends early: 1 entries missing (deleted from the end)"
    _write(log, lines[:1])
    err = _tampered(log, expected_head=head)
    assert err.line == 2 and "2 entries missing" in err.reason


def test_head_mismatch_and_later_appends(tmp_path: Path) -> None:
    log = _log3(tmp_path)
    head = log.head()
    log.append("reject", "demo-math", "2", actor="carol", reason="worse")
    assert log.verify(expected_head=head) == 4  # entries after the recorded head are fine
    err = _tampered(log, expected_head=(3, "f" * 64))
    assert err.line == 3 and "head" in err.reason
    # a rewritten log (a fresh chain of the same length) does not match the old head
    other = AuditLog(tmp_path / "other.jsonl")
    for v in ("1", "2", "3"):
        other.append("register", "forged", v, actor="mallory")
    log.path.write_bytes(other.path.read_bytes())
    assert _tampered(log, expected_head=head).line == 3
    with pytest.raises(RegistryError, match="audit head"):
        log.verify(expected_head=("3", head[1]))


def test_appending_to_a_tampered_log_is_refused(tmp_path: Path) -> None:
    log = _log3(tmp_path)
    lines = _lines(log)
    _write(log, [lines[0], lines[1].replace(b"beat", b"BEAT"), lines[2]])
    before = log.path.read_bytes()
    with pytest.raises(AuditTampered) as info:
        log.append("promote", "demo-math", "2", actor="mallory", alias="champion")
    assert info.value.line == 2
    assert log.path.read_bytes() == before  # nothing written
    with pytest.raises(AuditTampered):
        log.entries()
    with pytest.raises(AuditTampered):
        log.head()
    _write(log, [lines[0], lines[1], lines[2][:10]])
    with pytest.raises(AuditTampered, match="incomplete"):
        log.append("register", "demo-math", "3", actor="x")


def test_holder_at_across_promote_promote_rollback(tmp_path: Path, clock) -> None:
    log = AuditLog(tmp_path / "audit.jsonl")
    t1, t2, t3 = T0, T0 + timedelta(hours=1), T0 + timedelta(hours=2)
    clock.set(t1 - timedelta(minutes=30))
    log.append("register", "demo-math", "1", actor="a")
    log.append("register", "demo-math", "2", actor="a")
    clock.set(t1)
    log.append("promote", "demo-math", "1", actor="a", alias="champion")
    clock.set(t2)
    log.append("promote", "demo-math", "2", actor="a", alias="champion")
    log.append("promote", "other-model", "9", actor="a", alias="champion")  # another name: ignored
    log.append("alias_set", "demo-math", "2", actor="a", alias="canary")  # another alias: ignored
    clock.set(t3)
    log.append("rollback", "demo-math", "1", actor="a", alias="champion", reason="regression")
    assert log.alias_history("demo-math", "champion") == [
        ("2026-12-01T12:00:00.000000+00:00", "1"),
        ("2026-12-01T13:00:00.000000+00:00", "2"),
        ("2026-12-01T14:00:00.000000+00:00", "1"),
    ]
    hold = log.holder_at
    assert hold("demo-math", "champion", t1 - timedelta(seconds=1)) is None  # before the first promote
    assert hold("demo-math", "champion", t1) == "1"  # at the exact time: in effect
    assert hold("demo-math", "champion", t1 + timedelta(minutes=30)) == "1"
    assert hold("demo-math", "champion", t2 + timedelta(minutes=30)) == "2"
    assert hold("demo-math", "champion", t3 + timedelta(days=1)) == "1"
    # strings: a trailing Z, an offset, naive (= UTC), a date alone (= midnight UTC)
    assert hold("demo-math", "champion", "2026-12-01T13:30:00Z") == "2"
    assert hold("demo-math", "champion", "2026-12-01T15:30:00+02:00") == "2"
    assert hold("demo-math", "champion", "2026-12-01T12:30:00") == "1"
    assert hold("demo-math", "champion", datetime(2026, 12, 1, 14, 0, 1)) == "1"  # naive datetime = UTC
    assert hold("demo-math", "champion", "2026-12-01") is None
    assert hold("demo-math", "champion", "2026-12-02") == "1"
    assert hold("demo-math", "canary", "2026-12-02") == "2"
    assert hold("other-model", "champion", "2026-12-02") == "9"
    assert hold("demo-math", "nope", "2026-12-02") is None


def test_alias_removed_means_no_holder(tmp_path: Path, clock) -> None:
    log = AuditLog(tmp_path / "audit.jsonl")
    log.append("force_promote", "demo-math", "3", actor="a", alias="champion", reason="hotfix")
    clock.set(T0 + timedelta(hours=1))
    log.append("alias_removed", "demo-math", "3", actor="a", alias="champion")
    clock.set(T0 + timedelta(hours=2))
    log.append("alias_set", "demo-math", "4", actor="a", alias="champion")
    assert [v for _, v in log.alias_history("demo-math", "champion")] == ["3", None, "4"]
    assert log.holder_at("demo-math", "champion", T0 + timedelta(minutes=1)) == "3"
    assert log.holder_at("demo-math", "champion", T0 + timedelta(minutes=61)) is None
    assert log.holder_at("demo-math", "champion", T0 + timedelta(minutes=121)) == "4"


@pytest.mark.parametrize("bad", ["yesterday", "2026-13-01", "2026-12-01T25:00", "", "12/01/2026"])
def test_bad_at_string_is_a_one_line_registry_error(tmp_path: Path, bad: str) -> None:
    log = _log3(tmp_path)
    with pytest.raises(RegistryError) as info:
        log.holder_at("demo-math", "champion", bad)
    assert not isinstance(info.value, AuditTampered)
    assert "\n" not in str(info.value) and repr(bad) in str(info.value)


def test_audit_tampered_is_a_registry_error_and_pickles(tmp_path: Path) -> None:
    import pickle

    err = AuditTampered(tmp_path / "a.jsonl", 4, "blank line")
    assert isinstance(err, RegistryError)
    again = pickle.loads(pickle.dumps(err))
    assert (again.line, again.reason, str(again)) == (4, "blank line", str(err))


def _append_many(path: str, worker: int, count: int, start) -> None:
    start.wait(30)
    log = AuditLog(path)
    for i in range(count):
        log.append("register", "demo-math", str(i), actor=f"worker-{worker}", details={"i": i})


def test_concurrent_appends_from_two_processes(tmp_path: Path) -> None:
    path = str(tmp_path / "audit.jsonl")
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    procs = [ctx.Process(target=_append_many, args=(path, w, 50, start)) for w in range(2)]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    log = AuditLog(path)
    assert log.verify() == 100
    entries = log.entries()
    assert [e["seq"] for e in entries] == list(range(1, 101))
    for w in range(2):
        mine = [e["details"]["i"] for e in entries if e["actor"] == f"worker-{w}"]
        assert mine == list(range(50))
