"""Run untrusted Python against tests in a throwaway subprocess; report which tests passed.

Layers, outermost first (``SandboxResult.layers`` says which ones the child confirmed on this machine):

* a fresh temp directory as cwd, HOME and TMPDIR, removed afterwards; ``python -I`` (isolated mode:
  no PYTHON* variables, no user site, no cwd on ``sys.path``) with a minimal environment;
* its own session / process group, and a wall-clock timeout after which the whole group gets SIGKILL.
  The group is killed once the child exits in any case, so a forked straggler can't outlive the call;
* in the child, before the candidate runs (see ``_sandbox_child.py``; as root a ``setup`` stage does
  the privileged part, then execs a fresh interpreter so the candidate's process never loaded ctypes):
  a network namespace with no interface up (``netns``); root dropped to ``nobody`` with no new
  privileges, keeping only CAP_DAC_READ_SEARCH when nobody couldn't otherwise read the interpreter
  (``nobody``); rlimits on memory, CPU time, file size, processes and open files (``rlimits``); and an
  audit hook that blocks processes, sockets, ctypes and writes outside the temp directory (``audit_hook``).

Results travel on a private channel (a temp file the child inherits as stdout, then moves off fd 1),
tagged with a per-run nonce; the candidate's own stdout/stderr go to /dev/null. A test counts as passed
only when its pass line arrives, so crashing, exiting early or timing out fails closed.

What candidates lose: ``import subprocess`` and ``import ctypes`` raise ImportError (their C halves are
not audited), ``os.mkfifo``/``os.mknod`` are gone, and ``os.chdir``, sockets, threads beyond the
process limit and writes through ``pathlib`` objects (only plain str/bytes paths are checked) fail.

Tests of the form ``assert EXPR == LITERAL`` are judged here, in the parent (:func:`value_test`): the
sandbox sees only ``EXPR`` and reports ``repr`` of its value, so neither a forged report nor a lying
``__eq__`` can pass them. ``strict`` mode (the default) refuses to run without every layer of
``REQUIRED_LAYERS``; ``weak`` runs and logs what is missing.

Residual risks: for any other test, code that introspects the runner's frames can find the nonce and
forge a pass (it shares the reporter's interpreter); disk use inside the temp directory is bounded only
by RLIMIT_FSIZE per file and the timeout.
"""

from __future__ import annotations

import json
import math
import os
import pwd
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

DEFAULT_TIMEOUT_S = 5.0
DEFAULT_MEMORY_MB = 512
MAX_FILE_BYTES = 16 * 1024 * 1024
MAX_OPEN_FILES = 256
# RLIMIT_NPROC counts all of nobody's tasks across concurrent sandboxes, so it is a fork-bomb ceiling,
# not a per-run allowance; the audit hook is what stops a candidate from starting processes at all.
MAX_PROCESSES = 256
MAX_RESULT_BYTES = 1024 * 1024
STDERR_TAIL_BYTES = 4096


STRICT, WEAK = "strict", "weak"
REQUIRED_LAYERS = ("netns", "nobody", "rlimits", "audit_hook")  # what `strict` refuses to run without
SANDBOX_ENV = "SRL_RLVR_SANDBOX"  # strict (default) | weak


class SandboxTooWeak(RuntimeError):
    """Strict mode, and this machine cannot give the candidate every isolation layer (it never ran)."""

    def __init__(self, missing: Sequence[str]):
        self.missing = tuple(missing)
        super().__init__(f"code sandbox: refusing to run candidate code without {', '.join(self.missing)} "
                         f"(run as root with unshare, or opt in with sandbox: weak / {SANDBOX_ENV}=weak, which "
                         "prints what is missing on every run)")


def value_test(snippet: str) -> tuple[str, object] | None:
    """``assert EXPR == LITERAL`` -> (EXPR, the literal's value): a test the parent judges, so the expected
    value never enters the sandbox and a candidate that forges the report cannot know what to report.
    None for any other test (judged in the sandbox, as before).

    >>> value_test("assert add(1, 2) == 3")
    ('add(1, 2)', 3)
    >>> value_test("assert f([1, 2]) == [2, 1]  # comment")
    ('f([1, 2])', [2, 1])
    >>> value_test("assert f(1) > 0") is None, value_test("assert f(1) == g(2)") is None
    (True, True)
    """
    import ast

    try:
        tree = ast.parse(snippet)
    except SyntaxError:
        return None
    if len(tree.body) != 1 or not isinstance(tree.body[0], ast.Assert) or tree.body[0].msg is not None:
        return None
    test = tree.body[0].test
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)):
        return None
    try:
        expected = ast.literal_eval(test.comparators[0])
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None
    return ast.unparse(test.left), expected


def _same_value(reported_hex: str, expected: object) -> bool:
    """Whether the repr the sandbox reported is a Python literal equal to ``expected``."""
    import ast

    try:
        value = ast.literal_eval(bytes.fromhex(reported_hex).decode("utf-8"))
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError, UnicodeDecodeError):
        return False  # not a literal (or not decodable): a parent-judged test needs a literal result
    try:
        return bool(value == expected)
    except Exception:  # noqa: BLE001 - literals compare; be safe anyway
        return False


_warned: set[frozenset[str]] = set()


def _warn_weak(missing: frozenset[str]) -> None:
    import logging

    if missing and missing not in _warned:  # once per process and per set of missing layers
        _warned.add(missing)
        logging.getLogger("srl_rlvr.rewards.sandbox").warning(
            "code sandbox is WEAK (sandbox: weak): running candidates without %s", ", ".join(sorted(missing)))


@dataclass(frozen=True)
class SandboxResult:
    """What one sandboxed run reported."""

    passed: tuple[bool, ...]  # one entry per test, in order
    outcomes: tuple[str, ...]  # per test: "ok", an exception name ("AssertionError"), or "no report"
    timed_out: bool
    exit_code: int | None  # negative: killed by that signal
    layers: frozenset[str]  # isolation layers the child confirmed: netns, nobody, rlimits, audit_hook
    stderr_tail: str  # the runner's own errors (the candidate's stderr goes to /dev/null)
    judged_outside: tuple[bool, ...] = ()  # per test: judged here (unforgeable) or in the sandbox (forgeable)

    @property
    def pass_fraction(self) -> float:
        """Fraction of tests passed, 0.0 when there are none.

        >>> SandboxResult((True, False, True, True), ("ok",) * 4, False, 0, frozenset(), "").pass_fraction
        0.75
        """
        return sum(self.passed) / len(self.passed) if self.passed else 0.0


@lru_cache(maxsize=1)
def _child_source() -> str:
    return (Path(__file__).with_name("_sandbox_child.py")).read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def _nobody_ids() -> tuple[int, int] | None:
    try:
        entry = pwd.getpwnam("nobody")
    except KeyError:
        return None
    return entry.pw_uid, entry.pw_gid


def _netns_inode() -> int:
    try:
        return os.stat("/proc/self/ns/net").st_ino
    except OSError:
        return -1


def _child_env(sandbox_dir: str) -> dict[str, str]:
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": sandbox_dir,
        "TMPDIR": sandbox_dir,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        # One BLAS thread: each thread reserves address space that RLIMIT_AS counts.
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }


def _wait_for_exit(process: subprocess.Popen, timeout_s: float) -> bool:
    """Wait until the child exits (without reaping it) or the timeout passes; True if it exited."""
    try:
        pidfd = os.pidfd_open(process.pid)
    except (AttributeError, OSError):
        pidfd = None
    if pidfd is not None:
        try:
            readable, _, _ = select.select([pidfd], [], [], max(timeout_s, 0.0))
            return bool(readable)
        finally:
            os.close(pidfd)
    deadline = time.monotonic() + timeout_s  # no pidfd: poll without reaping
    delay = 0.001
    while True:
        if os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        time.sleep(min(delay, remaining))
        delay = min(delay * 2, 0.05)


def _kill_group(process: subprocess.Popen) -> None:
    # The leader is not reaped yet, so its process-group id cannot have been reused by anyone else.
    for kill, target in ((os.killpg, process.pid), (os.kill, process.pid)):  # the leader, even if it left
        try:
            kill(target, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _parse_results(
    raw: bytes, nonce: str, test_count: int, expected: dict[int, object] | None = None
) -> tuple[tuple[bool, ...], tuple[str, ...], frozenset[str], tuple[str, ...]]:
    """(passed, outcomes, layers, refused layers). A test in ``expected`` (judged here) passes only on exactly
    one value line (``V``) whose literal equals the expected value: a pass line (``T``) for it counts for
    nothing, and several value lines (a candidate guessing) fail it."""
    expected = expected or {}
    passed = [False] * test_count
    outcomes = ["no report"] * test_count
    values: dict[int, list[str]] = {}
    layers: frozenset[str] = frozenset()
    refused: tuple[str, ...] = ()
    prefix = nonce + " "
    for line in raw.decode("utf-8", "replace").splitlines():
        if not line.startswith(prefix):
            continue
        fields = line[len(prefix) :].split(" ")
        if fields[0] == "L" and len(fields) > 1:
            layers = frozenset(name for name in fields[1].split(",") if name)
        elif fields[0] == "REFUSED" and len(fields) > 1:
            refused = tuple(name for name in fields[1].split(",") if name)
        elif fields[0] == "V" and len(fields) == 3 and fields[1].isdigit() and int(fields[1]) in expected:
            values.setdefault(int(fields[1]), []).append(fields[2])
        elif fields[0] == "T" and len(fields) >= 3 and fields[1].isdigit():
            index = int(fields[1])
            if index < test_count and (index not in expected or fields[2] == "0"):
                passed[index] = fields[2] == "1"
                outcomes[index] = fields[3] if len(fields) > 3 else ""
    for index, reported in values.items():
        if len(reported) > 1:
            passed[index], outcomes[index] = False, "several value reports"
        else:
            passed[index] = _same_value(reported[0], expected[index])
            outcomes[index] = "ok" if passed[index] else "AssertionError"
    return tuple(passed), tuple(outcomes), layers, refused


def run_python_tests(
    code: str,
    tests: Sequence[str],
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    memory_mb: int = DEFAULT_MEMORY_MB,
    sandbox: str | None = None,
    _audit_hook: bool = True,
) -> SandboxResult:
    """Execute ``code``, then each test snippet in the same namespace, in a sandboxed ``python -I``.

    ``timeout_s`` bounds the whole run (interpreter start-up included); tests that had not reported
    by then count as failed. ``_audit_hook=False`` exists only so the tests can prove the other layers
    on their own; never turn it off for real candidates.

    ``sandbox`` (default ``$SRL_RLVR_SANDBOX``, else ``strict``): ``strict`` refuses to run the candidate
    without every layer of ``REQUIRED_LAYERS`` (:class:`SandboxTooWeak`, the candidate never ran);
    ``weak`` runs it anyway and logs what is missing (once per process and set of layers). Tests of the
    form ``assert EXPR == LITERAL`` are judged here (:func:`value_test`); the others in the sandbox.

    >>> run_python_tests("def add(a, b):\\n    return a + b",
    ...                  ["assert add(1, 2) == 3", "assert add(1, 1) == 3"]).passed
    (True, False)
    """
    tests = list(tests)
    mode = sandbox or os.environ.get(SANDBOX_ENV) or STRICT
    if mode not in (STRICT, WEAK):
        raise ValueError(f"sandbox must be {STRICT!r} or {WEAK!r}, got {mode!r}")
    judged = [value_test(t) for t in tests]
    expected = {i: j[1] for i, j in enumerate(judged) if j is not None}
    sent: list[object] = [{"expr": j[0]} if j is not None else t for t, j in zip(tests, judged)]
    nonce = secrets.token_hex(16)
    nobody = _nobody_ids()
    is_root = os.geteuid() == 0
    sandbox_dir = tempfile.mkdtemp(prefix="srl_rlvr_sandbox_")
    try:
        payload_path = os.path.join(sandbox_dir, ".payload.json")
        payload = {
            "code": code,
            "tests": sent,  # value tests without their expected value
            "required_layers": list(REQUIRED_LAYERS) if mode == STRICT else [],
            "nonce": nonce,
            "sandbox_dir": sandbox_dir,
            "child_source": _child_source(),
            "parent_netns_inode": _netns_inode(),
            "isolate_network": True,
            "drop_privileges": is_root and nobody is not None,
            "uid": nobody[0] if nobody else -1,
            "gid": nobody[1] if nobody else -1,
            "audit_hook": _audit_hook,
            "limits": {
                "memory_bytes": int(memory_mb) * 1024 * 1024,
                "file_bytes": MAX_FILE_BYTES,
                "open_files": MAX_OPEN_FILES,
                "processes": MAX_PROCESSES,
                "cpu_seconds": math.ceil(timeout_s) + 1,
            },
        }
        fd = os.open(payload_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(payload, handle)
        if payload["drop_privileges"]:
            os.chown(payload_path, nobody[0], nobody[1])
            os.chown(sandbox_dir, nobody[0], nobody[1])
        # As root, a setup stage isolates and drops privileges, then execs the run stage (_sandbox_child.py).
        stage = ["-S", "-c", _child_source(), "setup"] if is_root else ["-c", _child_source(), "run"]
        with tempfile.TemporaryFile() as results, tempfile.TemporaryFile() as stderr:
            process = subprocess.Popen(
                [sys.executable, "-I", *stage, payload_path],
                cwd=sandbox_dir,
                env=_child_env(sandbox_dir),
                stdin=subprocess.DEVNULL,
                stdout=results,
                stderr=stderr,
                start_new_session=True,
                close_fds=True,
            )
            try:
                exited = _wait_for_exit(process, timeout_s)
            finally:
                _kill_group(process)  # on timeout, and to take down anything it left running
                exit_code = process.wait()
            results.seek(0)
            passed, outcomes, layers, refused = _parse_results(results.read(MAX_RESULT_BYTES), nonce, len(tests),
                                                               expected)
            stderr.seek(0, os.SEEK_END)
            stderr.seek(max(0, stderr.tell() - STDERR_TAIL_BYTES))
            stderr_tail = stderr.read().decode("utf-8", "replace")
    finally:
        shutil.rmtree(sandbox_dir, ignore_errors=True)
    if refused:
        raise SandboxTooWeak(refused)
    if mode == WEAK:
        _warn_weak(frozenset(REQUIRED_LAYERS) - layers)
    return SandboxResult(passed, outcomes, not exited, exit_code, layers, stderr_tail,
                         tuple(j is not None for j in judged))
