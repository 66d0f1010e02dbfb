"""Run untrusted Python against tests in throwaway subprocesses; report which tests passed.

Two sandboxed children per run, never connected to each other (``_sandbox_child.py``):

* the **candidate child** runs only the candidate's code, then answers calls (``sandbox_candidate.py``);
* the **reference child** runs only the trusted tests, against stand-ins for the candidate's top-level names
  whose calls go to the candidate child (``sandbox_reference.py``), and reports each test's outcome.

The parent relays the calls (``sandbox_relay.py``), counts the outcomes the reference child reported and keeps
the wall-clock deadline for both. Only plain data crosses (``sandbox_wire.py``: exact builtin types as JSON,
never pickle), so the candidate can change its answers but never the verdict: whatever it does in its own
process (forging through frames or gc, printing pass lines, exiting, looping, killing itself) leaves the
answers it owes wrong or missing, and those tests fail.

Layers, outermost first, in both children (``SandboxResult.layers``: what both children confirmed here):

* bubblewrap when it works here (``bwrap``: own pid and mount namespaces and a minimal read-only file tree;
  ``sandbox_launch.py``; probed once per process, else the children start without it); a fresh temp
  directory per child as cwd, HOME and TMPDIR, removed afterwards; ``python -I`` with a minimal environment;
* its own session / process group, and a wall-clock timeout after which the whole group gets SIGKILL. The
  groups are killed once the run ends in any case, so a forked straggler can't outlive the call;
* in the child, before the candidate runs (as root a ``setup`` stage does the privileged part, then execs a
  fresh interpreter so the candidate's process never loaded ctypes): a network namespace with no interface
  up (``netns``); root dropped to ``nobody`` with no new privileges, keeping only CAP_DAC_READ_SEARCH when
  nobody couldn't otherwise read the interpreter (``nobody``); rlimits on memory, CPU time, file size,
  processes and open files (``rlimits``); and an audit hook that blocks processes, sockets, ctypes, signals,
  writes outside the temp directory and reads outside the tree bwrap would show (``audit_hook``).

What candidates lose: ``import subprocess`` and ``import ctypes`` raise ImportError (their C halves are
not audited), ``os.mkfifo``/``os.mknod`` are gone, and ``os.chdir``, sockets, threads beyond the
process limit and writes through ``pathlib`` objects (only plain str/bytes paths are checked) fail.

``strict`` mode (the default) refuses to run without every layer of ``REQUIRED_LAYERS``; ``weak`` runs and logs
what is missing. Residual risk: disk use inside the temp directory is bounded only by RLIMIT_FSIZE per file and
the timeout.
"""

from __future__ import annotations

import json
import logging
import math
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from srl_rlvr.rewards import sandbox_launch
from srl_rlvr.rewards.sandbox_relay import ChildPipes, Relay

DEFAULT_TIMEOUT_S = 5.0
DEFAULT_MEMORY_MB = 512
MAX_FILE_BYTES = 16 * 1024 * 1024
MAX_OPEN_FILES = 256
# RLIMIT_NPROC counts all of nobody's tasks across concurrent sandboxes, so it is a fork-bomb ceiling,
# not a per-run allowance; the audit hook is what stops a candidate from starting processes at all.
MAX_PROCESSES = 256
STDERR_TAIL_BYTES = 4096
MAX_PAYLOAD_CHARS = 2 * 1024 * 1024  # code, or all tests together: the payload frame must fit MAX_FRAME_BYTES


STRICT, WEAK = "strict", "weak"
REQUIRED_LAYERS = ("netns", "nobody", "rlimits", "audit_hook")  # what `strict` refuses to run without
SANDBOX_ENV = "SRL_RLVR_SANDBOX"  # strict (default) | weak
ROLES = ("candidate", "reference")


class SandboxTooWeak(RuntimeError):
    """Strict mode, and this machine cannot give the candidate every isolation layer (it never ran)."""

    def __init__(self, missing: Sequence[str]):
        self.missing = tuple(missing)
        super().__init__(f"code sandbox: refusing to run candidate code without {', '.join(self.missing)} "
                         f"(run as root with unshare, or opt in with sandbox: weak / {SANDBOX_ENV}=weak, which "
                         "prints what is missing on every run)")


_warned: set[frozenset[str]] = set()
_probe_lock = threading.Lock()


def _warn_weak(missing: frozenset[str]) -> None:
    if missing and missing not in _warned:  # once per process and per set of missing layers
        _warned.add(missing)
        logging.getLogger("srl_rlvr.rewards.sandbox").warning(
            "code sandbox is WEAK (sandbox: weak): running candidates without %s", ", ".join(sorted(missing)))


@dataclass(frozen=True)
class SandboxResult:
    """What one sandboxed run reported."""

    passed: tuple[bool, ...]  # one entry per test, in order
    outcomes: tuple[str, ...]  # per test: "ok", an exception name ("AssertionError"), "candidate:<why>", "no report"
    timed_out: bool
    exit_code: int | None  # the reference child's; negative: killed by that signal (-9 once it said END)
    layers: frozenset[str]  # isolation layers both children confirmed: bwrap, netns, nobody, rlimits, audit_hook
    stderr_tail: str  # the runners' own errors (the candidate's stderr goes to /dev/null)
    # per test: judged outside the candidate's process. Every test is now (by the reference child).
    judged_outside: tuple[bool, ...] = ()
    candidate_gone: str | None = None  # why the candidate child stopped answering early, if it did

    @property
    def pass_fraction(self) -> float:
        """Fraction of tests passed, 0.0 when there are none.

        >>> SandboxResult((True, False, True, True), ("ok",) * 4, False, 0, frozenset(), "").pass_fraction
        0.75
        """
        return sum(self.passed) / len(self.passed) if self.passed else 0.0


@lru_cache(maxsize=1)
def _nobody_ids() -> tuple[int, int] | None:
    try:
        entry = pwd.getpwnam("nobody")
    except KeyError:
        return None
    return entry.pw_uid, entry.pw_gid


def _namespace_inodes() -> dict[str, int]:
    inodes = {}
    for kind in ("net", "pid", "mnt"):
        try:
            inodes[kind] = os.stat(f"/proc/self/ns/{kind}").st_ino
        except OSError:
            inodes[kind] = -1
    return inodes


def _kill_group(process: subprocess.Popen) -> None:
    # The leader is not reaped yet, so its process-group id cannot have been reused by anyone else. Inside
    # bwrap, killing the group kills bwrap's pid 1, and the kernel then kills its whole pid namespace.
    for kill, target in ((os.killpg, process.pid), (os.kill, process.pid)):  # the leader, even if it left
        try:
            kill(target, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _tail(handle) -> str:
    handle.seek(0, os.SEEK_END)
    handle.seek(max(0, handle.tell() - STDERR_TAIL_BYTES))
    return handle.read().decode("utf-8", "replace")


def _payload(role: str, mode: str, audit_hook: bool, memory_mb: int, timeout_s: float) -> dict:
    return {
        "role": role,
        "modules": {name: source for name, source in sandbox_launch.role_sources().items()
                    if name in ("sandbox_wire", f"sandbox_{role}")},
        "required_layers": list(REQUIRED_LAYERS) if mode == STRICT else [],
        "audit_hook": audit_hook,
        "read_roots": sandbox_launch.readable_roots(),
        "limits": {
            "memory_bytes": int(memory_mb) * 1024 * 1024,
            "file_bytes": MAX_FILE_BYTES,
            "open_files": MAX_OPEN_FILES,
            "processes": MAX_PROCESSES,
            "cpu_seconds": math.ceil(timeout_s) + 1,
        },
    }


def run_python_tests(
    code: str,
    tests: Sequence[str],
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    memory_mb: int = DEFAULT_MEMORY_MB,
    sandbox: str | None = None,
    _audit_hook: bool = True,
    _bwrap: bool | None = None,
) -> SandboxResult:
    """Execute ``code`` in the candidate child and each test snippet, in order and in one namespace, in the
    reference child, where the candidate's top-level names stand for the candidate's objects.

    ``timeout_s`` bounds the whole run (interpreter start-up included); tests that had not reported by then
    count as failed. ``_audit_hook=False`` and ``_bwrap`` exist only so the tests and the bench can prove the
    layers on their own; never turn the hook off for real candidates.

    ``sandbox`` (default ``$SRL_RLVR_SANDBOX``, else ``strict``): ``strict`` refuses to run the candidate
    without every layer of ``REQUIRED_LAYERS`` (:class:`SandboxTooWeak`, the candidate never ran);
    ``weak`` runs it anyway and logs what is missing (once per process and set of layers).

    >>> run_python_tests("def add(a, b):\\n    return a + b",
    ...                  ["assert add(1, 2) == 3", "assert add(1, 1) == 3", "assert abs(add(0.1, 0.2) - 0.3) < 1e-9"]
    ...                  ).passed
    (True, False, True)
    """
    tests = list(tests)
    mode = sandbox or os.environ.get(SANDBOX_ENV) or STRICT
    if mode not in (STRICT, WEAK):
        raise ValueError(f"sandbox must be {STRICT!r} or {WEAK!r}, got {mode!r}")
    bwrap = sandbox_launch.use_bwrap(_bwrap)
    if bwrap and _bwrap is None:
        with _probe_lock:  # a trainer's first batch starts many runs at once: probe once, not once per thread
            bwrap = _bwrap_runs_here()
    payloads = {role: _payload(role, mode, _audit_hook, memory_mb, timeout_s) for role in ROLES}
    payloads["candidate"]["code"], payloads["reference"]["tests"] = code, tests
    if sum(map(len, tests)) > MAX_PAYLOAD_CHARS:
        raise ValueError(f"code sandbox: the tests are too large ({sum(map(len, tests))} characters)")
    if len(code) > MAX_PAYLOAD_CHARS:  # no model writes this much; fail it rather than the trainer
        return SandboxResult((False,) * len(tests), ("candidate:too large",) * len(tests), False, None,
                             frozenset(), "", (True,) * len(tests))
    outcome, exit_code, tails = _run_children(payloads, timeout_s, bwrap)
    return _result(outcome, len(tests), mode, exit_code, tails)


@lru_cache(maxsize=1)
def _bwrap_runs_here() -> bool:
    """Whether a whole sandbox run works inside bwrap (its probe only starts an interpreter): once per process,
    with the plain start-up for the rest of the process if not."""
    payloads = {role: _payload(role, WEAK, True, DEFAULT_MEMORY_MB, DEFAULT_TIMEOUT_S) for role in ROLES}
    payloads["candidate"]["code"], payloads["reference"]["tests"] = "def f():\n    return 1", ["assert f() == 1"]
    outcome, _, tails = _run_children(payloads, DEFAULT_TIMEOUT_S, bwrap=True)
    if outcome.reports.get(0) == (True, "ok") and all("bwrap" in outcome.layers.get(role, ()) for role in ROLES):
        return True
    logging.getLogger("srl_rlvr.rewards.sandbox").warning(
        "code sandbox: bwrap starts, but a run inside it failed (%s); starting children without it",
        "; ".join(tails.values())[-300:] or outcome.reports)
    return False


def _start_child(role: str, sandbox_dir: str, bwrap: bool, stderr) -> tuple[subprocess.Popen, ChildPipes]:
    nobody = _nobody_ids()
    is_root = os.geteuid() == 0
    drop = is_root and nobody is not None
    if drop:
        os.chown(sandbox_dir, nobody[0], nobody[1])
    config = {
        "sandbox_dir": sandbox_dir,
        "parent_namespace_inodes": _namespace_inodes(),
        "isolate_network": not bwrap,  # bwrap made the network namespace already
        "drop_privileges": drop,
        "uid": nobody[0] if nobody else -1,
        "gid": nobody[1] if nobody else -1,
        "bwrap": bwrap,
    }
    to_child, from_child = os.pipe(), os.pipe()  # (read, write) each; close-on-exec
    try:
        process = subprocess.Popen(
            sandbox_launch.child_argv(sandbox_dir, config, bwrap, is_root),
            cwd=sandbox_dir,
            env=sandbox_launch.child_env(sandbox_dir),
            stdin=to_child[0],
            stdout=from_child[1],
            stderr=stderr,
            start_new_session=True,
            close_fds=True,  # its own two pipe ends on fds 0 and 1, nothing else of ours
        )
    except BaseException:
        for fd in (*to_child, *from_child):
            os.close(fd)
        raise
    os.close(to_child[0])
    os.close(from_child[1])
    return process, ChildPipes(role, writer=to_child[1], reader=from_child[0])


def _run_children(payloads: dict[str, dict], timeout_s: float, bwrap: bool):
    """Start both children, relay until the reference child is done or the deadline; always clean up.
    (relay outcome, the reference child's exit code, each child's stderr tail)."""
    dirs: dict[str, str] = {}
    processes: dict[str, subprocess.Popen] = {}
    pipes: dict[str, ChildPipes] = {}
    stderrs = {role: tempfile.TemporaryFile() for role in ROLES}
    started = time.monotonic()
    try:
        for role in ROLES:  # the candidate first: it has the code to run before the first call can come
            dirs[role] = tempfile.mkdtemp(prefix=f"srl_rlvr_sandbox_{role[:3]}_")
            processes[role], pipes[role] = _start_child(role, dirs[role], bwrap, stderrs[role])
            pipes[role].send("P", json.dumps(payloads[role]).encode("utf-8", "surrogatepass"))
        relay = Relay(pipes["candidate"], pipes["reference"], lambda: _kill_group(processes["candidate"]))
        outcome = relay.run(started + timeout_s)
    finally:
        for process in processes.values():
            _kill_group(process)  # on timeout, and to take down anything either child left running
        exit_codes = {role: process.wait() for role, process in processes.items()}
        for child in pipes.values():
            for fd in (child.reader, child.writer):
                os.close(fd)
        tails = {role: _tail(handle) for role, handle in stderrs.items()}
        for handle in stderrs.values():
            handle.close()
        for directory in dirs.values():
            shutil.rmtree(directory, ignore_errors=True)
    return outcome, exit_codes.get("reference"), tails


def _result(outcome, test_count: int, mode: str, exit_code: int | None, tails: dict[str, str]) -> SandboxResult:
    reported = [frozenset(outcome.layers[role]) for role in ROLES if role in outcome.layers]
    missing = {name for layers in reported for name in REQUIRED_LAYERS if name not in layers}
    if mode == STRICT and missing:
        raise SandboxTooWeak([name for name in REQUIRED_LAYERS if name in missing])
    layers = frozenset.intersection(*reported) if len(reported) == len(ROLES) else frozenset()
    if "reference" not in outcome.layers and not outcome.timed_out:  # no candidate can cause this: say so
        logging.getLogger("srl_rlvr.rewards.sandbox").warning(
            "code sandbox: the reference child exited without a report (every test fails): %s",
            tails.get("reference", "")[-500:] or "no stderr")
    if mode == WEAK:
        _warn_weak(frozenset(REQUIRED_LAYERS) - layers)
    passed = tuple(outcome.reports.get(index, (False, ""))[0] for index in range(test_count))
    outcomes = tuple(outcome.reports.get(index, (False, "no report"))[1] for index in range(test_count))
    stderr_tail = "".join(f"[{role}] {tails[role]}" for role in ROLES if tails.get(role))
    return SandboxResult(passed, outcomes, outcome.timed_out, exit_code, layers, stderr_tail,
                         (True,) * test_count, outcome.candidate_gone)
