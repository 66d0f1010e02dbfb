"""The code sandbox against hostile candidates: writes, processes, sockets, time, memory, forged results.

Each hostile run is asserted by its effect on the outside world (the target file does not exist, the
call came back in time, the process is gone), not by what the candidate reports about itself.
"""

from __future__ import annotations

import os
import socket
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from srl_rlvr.rewards._sandbox_child import CAP_DAC_READ_SEARCH, _permitted_capabilities, _world_can_run_python
from srl_rlvr.rewards.sandbox import _nobody_ids, run_python_tests
from srl_rlvr.rewards.sandbox_launch import use_bwrap

REPO_DIR = Path(__file__).resolve().parents[2]
MARGIN_S = 1.5  # interpreter start-up, kill and reap, on a loaded 2-core CI box
# Root can drop to nobody if nobody can then load the interpreter, directly or with CAP_DAC_READ_SEARCH
# (Docker's default capability set lacks it). Where that holds, the drop must happen.
CAN_DROP_PRIVILEGES = (
    os.geteuid() == 0
    and _nobody_ids() is not None
    and (_world_can_run_python() or bool(_permitted_capabilities() & (1 << CAP_DAC_READ_SEARCH)))
)


@pytest.fixture
def outside_targets():
    """Paths outside any sandbox directory: one in world-writable /tmp, one in the repository."""
    tag = uuid.uuid4().hex
    targets = [Path("/tmp") / f"srl_rlvr_pwn_{tag}", REPO_DIR / f"srl_rlvr_pwn_{tag}"]
    yield targets
    for target in targets:  # clean up only if a test failed and something got through
        if target.is_dir():
            target.rmdir()
        elif target.exists() or target.is_symlink():
            target.unlink()


WRITE_ATTACKS = {
    "open_w": "open({t!r}, 'w').write('pwned')",
    "open_append": "open({t!r}, 'a').write('pwned')",
    "os_open": "import os\nos.close(os.open({t!r}, os.O_WRONLY | os.O_CREAT))",
    "pathlib_write_text": "import pathlib\npathlib.Path({t!r}).write_text('pwned')",
    "pathlib_touch": "import pathlib\npathlib.Path({t!r}).touch()",
    "os_system": "import os\nos.system('touch ' + {t!r})",
    "os_popen": "import os\nos.popen('touch ' + {t!r}).read()",
    "subprocess": "import subprocess\nsubprocess.run(['touch', {t!r}])",
    "dunder_import_subprocess": "__import__('subprocess').call(['touch', {t!r}])",
    "posix_spawn": "import os\nos.posix_spawn('/usr/bin/touch', ['touch', {t!r}], dict(os.environ))",
    "execv": "import os\nos.execv('/usr/bin/touch', ['touch', {t!r}])",
    "fork_then_write": "import os\nif os.fork() == 0:\n    open({t!r}, 'w').write('pwned')\n    os._exit(0)",
    "rename_out": "open('inside', 'w').write('pwned')\nimport os\nos.rename('inside', {t!r})",
    "replace_out": "open('inside', 'w').write('pwned')\nimport os\nos.replace('inside', {t!r})",
    "shutil_copy": "open('inside', 'w').write('pwned')\nimport shutil\nshutil.copyfile('inside', {t!r})",
    "shutil_move": "open('inside', 'w').write('pwned')\nimport shutil\nshutil.move('inside', {t!r})",
    "mkdir": "import os\nos.mkdir({t!r})",
    "mkfifo": "import os\nos.mkfifo({t!r})",
    "posix_mknod_reimported": "import sys\ndel sys.modules['posix']\nimport posix\nposix.mknod({t!r})",
    "symlink_then_write": "import os\nos.symlink({t!r}, 'link')\nopen('link', 'w').write('pwned')",
    "hardlink": "open('inside', 'w').write('pwned')\nimport os\nos.link('inside', {t!r})",
    "relative_escape": "import os\nopen(os.path.relpath({t!r}), 'w').write('pwned')",
    "proc_root_path": "open('/proc/self/root' + {t!r}, 'w').write('pwned')",
    "dir_fd": (
        "import os\nfd = os.open(os.path.dirname({t!r}), os.O_RDONLY)\n"
        "os.close(os.open(os.path.basename({t!r}), os.O_WRONLY | os.O_CREAT, dir_fd=fd))"
    ),
    "bytes_path": "open({t!r}.encode(), 'w').write('pwned')",
    "ctypes_system": "import ctypes\nctypes.CDLL(None).system(('touch ' + {t!r}).encode())",
    "sqlite": "import sqlite3\nsqlite3.connect({t!r}).execute('create table t (x)')",
    "patched_builtins": (
        "import builtins, os\nbuiltins.len = lambda *a: 0\nbuiltins.any = lambda *a: False\n"
        "builtins.bool = lambda *a: False\nos.path.realpath = lambda p, **k: os.getcwd()\n"
        "open({t!r}, 'w').write('pwned')"
    ),
}


@pytest.mark.parametrize("attack", sorted(WRITE_ATTACKS))
def test_candidate_cannot_write_outside_its_directory(attack: str, outside_targets: list[Path]) -> None:
    for target in outside_targets:
        code = WRITE_ATTACKS[attack].format(t=str(target))
        result = run_python_tests(code, ["assert True"], timeout_s=5.0)
        assert not result.timed_out
        assert not target.exists() and not target.is_symlink(), f"{attack} wrote {target}"


def test_candidate_cannot_remove_or_chmod_outside(tmp_path: Path) -> None:
    victim = Path("/tmp") / f"srl_rlvr_victim_{uuid.uuid4().hex}"
    victim.write_text("keep me")
    victim.chmod(0o666)  # even writable by nobody: the audit hook must still refuse
    try:
        for code in [
            f"import os\nos.remove({str(victim)!r})",
            f"import os\nos.chmod({str(victim)!r}, 0o777)",
            f"import os\nos.truncate({str(victim)!r}, 0)",
            f"open({str(victim)!r}, 'w').write('')",
            f"import os\nos.utime({str(victim)!r}, (0, 0))",
            f"import os\nos.remove('../' + os.path.basename({str(victim)!r}), dir_fd=os.open('.', os.O_RDONLY))",
            f"import os\nos.rename({str(victim)!r}, 'mine')",
        ]:
            run_python_tests(code, ["assert True"])
            assert victim.read_text() == "keep me"
            assert victim.stat().st_mode & 0o777 == 0o666
            assert victim.stat().st_mtime > 0
    finally:
        victim.unlink()


def test_candidate_may_write_inside_its_directory() -> None:
    code = (
        "import os, pathlib, tempfile\n"
        "open('a.txt', 'w').write('1')\n"
        "os.mkdir('d'); open('d/b.txt', 'w').write('2')\n"
        "os.rename('a.txt', 'd/a.txt'); os.remove('d/b.txt')\n"
        "tempfile.NamedTemporaryFile(delete=False).write(b'3')\n"
        "with open(os.devnull, 'w') as sink: sink.write('x')\n"
        "with tempfile.TemporaryDirectory() as scratch:\n"
        "    open(os.path.join(scratch, 'c.txt'), 'w').write('4')\n"
        "import shutil\nos.makedirs('e/f'); shutil.rmtree('e')\n"
        "def read(path):\n    return open(path).read()\n"
        "def listing(path):\n    return os.listdir(path)\n"
    )
    # the tests run in the reference child, in a directory of its own: they see the files through the candidate
    tests = ["assert read('d/a.txt') == '1'", "assert listing('d') == ['a.txt']",
             "import os\nassert os.listdir() == []"]
    result = run_python_tests(code, tests)
    assert result.passed == (True, True, True), result


def _sandbox_dirs() -> set[str]:
    return {name for name in os.listdir(tempfile.gettempdir()) if name.startswith("srl_rlvr_sandbox_")}


def test_sandbox_directory_is_cwd_home_and_tmp_and_is_removed() -> None:
    code = (
        "import os, sys, tempfile\n"
        "def where():\n"
        "    return [os.getcwd(), os.environ['HOME'], tempfile.gettempdir(), sys.flags.isolated]\n"
    )
    tests = [
        "cwd, home, tmp, isolated = where()\nassert cwd == home == tmp and isolated == 1",
        "import os, sys, tempfile\nassert os.getcwd() == os.environ['HOME'] == tempfile.gettempdir() != where()[0]",
        "import sys\nassert sys.flags.isolated == 1",
    ]
    before = _sandbox_dirs()
    result = run_python_tests(code, tests)
    assert result.passed == (True, True, True), result
    assert _sandbox_dirs() <= before  # both children's directories are gone


@pytest.mark.parametrize(
    "code",
    [
        "while True:\n    pass",
        "import time\ntime.sleep(100)",
        "import signal\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nwhile True:\n    pass",
    ],
    ids=["busy_loop", "sleep", "ignores_sigterm"],
)
def test_timeout_is_enforced(code: str) -> None:
    started = time.monotonic()
    result = run_python_tests(code, ["assert True"], timeout_s=1.0)
    elapsed = time.monotonic() - started
    assert result.timed_out and result.passed == (False,)
    assert elapsed < 1.0 + MARGIN_S, elapsed


def test_tests_that_finished_before_the_timeout_still_count() -> None:
    tests = ["assert f() == 1", "assert f() == 1", "while True:\n    pass"]
    result = run_python_tests("def f():\n    return 1", tests, timeout_s=1.0)
    assert result.timed_out and result.passed == (True, True, False)


def _processes_with_argument(marker: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if marker.encode() in cmdline:
                found.append(int(entry))
    return found


def test_fork_is_blocked_by_the_audit_hook() -> None:
    started = time.monotonic()
    result = run_python_tests("import os\nos.fork()", ["assert True"], timeout_s=2.0)
    assert not result.timed_out and result.passed == (False,)
    assert result.outcomes == ("candidate:PermissionError",)
    assert time.monotonic() - started < 2.0


@pytest.mark.parametrize("bwrap", [False, True], ids=["plain", "bwrap"])
@pytest.mark.parametrize("parent_waits", [False, True], ids=["parent_exits", "parent_hangs"])
def test_forked_sleeper_dies_with_the_run_even_without_the_audit_hook(parent_waits: bool, bwrap: bool) -> None:
    if bwrap and not use_bwrap(True):
        pytest.skip("bwrap does not work here")
    # Layer check: with the audit hook off, the process group kill alone must take the child down.
    marker = f"31{uuid.uuid4().int % 10**8}.5"  # a sleep(1) argument nobody else uses
    code = (
        "import os\n"
        "if os.fork() == 0:\n"
        f"    os.execv('/bin/sleep', ['sleep', '{marker}'])\n"
        + ("import time\ntime.sleep(100)\n" if parent_waits else "")
    )
    started = time.monotonic()
    result = run_python_tests(code, ["assert True"], timeout_s=1.0, _audit_hook=False, _bwrap=bwrap, sandbox="weak")
    elapsed = time.monotonic() - started
    assert elapsed < 1.0 + MARGIN_S, elapsed
    assert result.timed_out == parent_waits
    deadline = time.monotonic() + 2.0
    while _processes_with_argument(marker) and time.monotonic() < deadline:
        time.sleep(0.05)  # SIGKILL delivery and reaping by init are asynchronous
    assert _processes_with_argument(marker) == []


def test_memory_bomb_is_stopped() -> None:
    one_huge = "x = bytearray(8 * 1024 ** 3)"
    many_large = "chunks = []\nwhile True:\n    chunks.append(bytearray(50 * 1024 ** 2))"
    for code in [one_huge, many_large]:
        started = time.monotonic()
        result = run_python_tests(code, ["assert True"], timeout_s=10.0, memory_mb=256)
        assert not result.timed_out, "stopped by the memory limit, not the clock"
        assert result.passed == (False,)
        assert time.monotonic() - started < 5.0


def test_rlimits_are_set_in_both_children() -> None:
    code = "import resource\ndef limit(name):\n    return resource.getrlimit(getattr(resource, name))\n"
    expected = {"RLIMIT_AS": (256 * 1024**2,) * 2, "RLIMIT_CPU": (3, 4), "RLIMIT_CORE": (0, 0)}
    tests = []
    for name, value in expected.items():
        tests.append(f"assert limit({name!r}) == {value!r}")  # the candidate child
        tests.append(f"import resource\nassert resource.getrlimit(resource.{name}) == {value!r}")  # the reference
    tests.append("assert limit('RLIMIT_FSIZE')[1] == 16 * 1024 ** 2")
    result = run_python_tests(code, tests, timeout_s=2.0, memory_mb=256)
    assert "rlimits" in result.layers
    assert result.passed == (True,) * len(tests), result


def test_socket_creation_is_blocked() -> None:
    for code in [
        "import socket\nsocket.socket()",
        "import socket\nsocket.create_connection(('127.0.0.1', 1), timeout=1)",
        "import urllib.request\nurllib.request.urlopen('http://127.0.0.1:1', timeout=1)",
        "import _socket\n_socket.socket()",
    ]:
        result = run_python_tests(code, ["assert True"])
        assert result.passed == (False,)
        assert result.outcomes[0].startswith("candidate:"), result


@pytest.fixture
def listening_port():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    yield server.getsockname()[1]
    server.close()


def test_network_namespace_cuts_even_loopback(listening_port: int) -> None:
    # Layer check, audit hook off: a server the parent can reach on 127.0.0.1 is unreachable inside.
    with socket.create_connection(("127.0.0.1", listening_port), timeout=1):
        pass
    code = (
        "import socket\n"
        "try:\n"
        f"    socket.create_connection(('127.0.0.1', {listening_port}), timeout=1).close()\n"
        "    REACHED = True\n"
        "except OSError:\n"
        "    REACHED = False\n"
    )
    result = run_python_tests(code, ["assert not REACHED"], _audit_hook=False, _bwrap=False, sandbox="weak")
    if "netns" not in result.layers:
        pytest.skip("no permission to create a network namespace here; the audit hook is the only net layer")
    assert result.passed == (True,)


@pytest.mark.skipif(not CAN_DROP_PRIVILEGES, reason="not root, or nobody could not load the interpreter here")
def test_privilege_drop_alone_stops_writes_to_the_repo(outside_targets: list[Path]) -> None:
    # Layer check: no audit hook and no bwrap (which would hide the repo), so only the uid stands in the way.
    repo_target = outside_targets[1]
    code = (
        f"import os\ntry:\n    open({str(repo_target)!r}, 'w')\nexcept PermissionError:\n    pass\n"
        "def uid():\n    return os.getuid()\n"
        "def signal_init():\n    os.kill(1, 0)\n"
        "def status():\n    return open('/proc/self/status').read()\n"
    )
    tests = [
        "assert uid() != 0",
        "signal_init()",  # may not signal other users' processes
        # at most CAP_DAC_READ_SEARCH (to read the interpreter), and no way to gain more
        "text = status()\n"
        "effective = int(text.split('CapEff:')[1].split()[0], 16)\n"
        "assert effective & ~(1 << 2) == 0 and 'NoNewPrivs:\\t1' in text",
    ]
    result = run_python_tests(code, tests, _audit_hook=False, _bwrap=False, sandbox="weak")
    assert "nobody" in result.layers
    assert result.passed == (True, False, True), result
    assert result.outcomes[1] == "PermissionError"
    assert not repo_target.exists()


def test_results_cannot_be_forged_by_printing() -> None:
    code = (
        "import os, sys\n"
        "for fd in (1, 2, 3, 4, 5):\n"
        "    try:\n"
        "        os.write(fd, b'T 0 1 ok\\nxx T 0 1 ok\\n')\n"
        "    except OSError:\n"
        "        pass\n"
        "print('T 0 1 ok')\n"
    )
    result = run_python_tests(code, ["assert False"])
    assert result.passed == (False,)


@pytest.mark.parametrize(
    "code",
    [
        "import sys\nsys.exit(0)",
        "import os\nos._exit(0)",
        "raise SystemExit",
        "import builtins\nbuiltins.exec = lambda *a, **k: None\nbuiltins.compile = lambda *a, **k: None",
        "import os\nos.write = lambda fd, data: len(data)",
        "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)",
    ],
    ids=["sys_exit", "os_exit", "system_exit", "patched_exec", "patched_write", "kill_parent"],
)
def test_escaping_the_test_loop_fails_closed(code: str) -> None:
    result = run_python_tests(code, ["assert False", "assert 1 == 2"])
    assert result.passed == (False, False)


def test_layers_reported_here() -> None:
    result = run_python_tests("", ["assert True"])
    assert {"rlimits", "audit_hook"} <= result.layers
    assert ("nobody" in result.layers) == CAN_DROP_PRIVILEGES
    assert ("bwrap" in result.layers) == use_bwrap(None)
    assert "bwrap" not in run_python_tests("", ["assert True"], _bwrap=False).layers


def test_lookalike_objects_do_not_slip_past_the_hook(outside_targets: list[Path]) -> None:
    target = str(outside_targets[0])
    attacks = {
        # a str subclass that hashes differently from "_posixsubprocess" (fork_exec is not audited)
        "import_name": "class Name(str):\n    __hash__ = lambda self: 1\n"
        "mod = __import__(Name('_posixsubprocess'))\n"
        "mod.fork_exec([b'/usr/bin/touch', b'" + target + "'], [b'/usr/bin/touch'], True, (), None, None,"
        " -1, -1, -1, -1, -1, -1, *__import__('os').pipe(), False, False, None, None, None, -1, None)",
        # loading the _ctypes extension by file, bypassing "import ctypes" (and any cached copy)
        "extension_by_file": "import glob, importlib.util, os, sys\n"
        "folder = [p for p in sys.path if p.endswith('lib-dynload')][0]\n"
        "spec = importlib.util.spec_from_file_location('_ctypes', glob.glob(os.path.join(folder, '_ctypes.*'))[0])\n"
        "importlib.util.module_from_spec(spec)",
        # a path-like whose __fspath__ answers differently on each call
        "path_like": "class Shifty:\n    calls = 0\n    def __fspath__(self):\n        Shifty.calls += 1\n"
        f"        return 'inside' if Shifty.calls % 2 else {target!r}\n"
        "for _ in range(2):\n    open(Shifty(), 'w').write('pwned')",
        # a str that claims to equal ':memory:'
        "sqlite": "import sqlite3\nclass Db(str):\n    def __eq__(self, other):\n        return True\n"
        "    __hash__ = str.__hash__\n"
        f"sqlite3.connect(Db({target!r})).execute('create table t (x)')",
    }
    for name, code in attacks.items():
        result = run_python_tests(code, ["assert True"])
        assert result.outcomes[0].startswith("candidate:"), (name, result)
        assert not Path(target).exists(), name


# --- forging, other processes, strict mode (issue 18) -------------------------------------------------------
# Forging the verdict (frames, gc, the nonce), lying results and the other hostile candidates of issue 18 are
# in test_sandbox_hostile.py; the two-process protocol and plain-data wire in test_sandbox_wire.py.


def test_the_candidate_cannot_signal_or_read_other_processes():
    kill = "import os, signal\nfd = os.pidfd_open(os.getppid())\nsignal.pidfd_send_signal(fd, signal.SIGKILL)\n"
    assert run_python_tests(kill, ["assert True"]).outcomes == ("candidate:AttributeError",)
    send = "import signal\nsignal.pidfd_send_signal(3, 9)\n"
    assert run_python_tests(send, ["assert True"]).outcomes == ("candidate:AttributeError",)
    environ = "import os\nSECRET = open(f'/proc/{os.getppid()}/environ', 'rb').read()\n"
    assert run_python_tests(environ, ["assert True"]).outcomes == ("candidate:PermissionError",)
    own = "STATUS = open('/proc/self/status').read()\n"  # its own entries stay readable
    assert run_python_tests(own, ["assert 'Pid' in STATUS"]).passed == (True,)


def test_strict_refuses_without_every_layer_and_weak_says_what_is_missing(caplog):
    from srl_rlvr.rewards.sandbox import SandboxTooWeak

    with pytest.raises(SandboxTooWeak, match="without audit_hook") as refused:
        run_python_tests("x = 1", ["assert x == 1"], _audit_hook=False)
    assert refused.value.missing == ("audit_hook",)
    import srl_rlvr.rewards.sandbox as sandbox_module

    sandbox_module._warned.clear()  # the warning is once per process; earlier tests in it may have had it
    with caplog.at_level("WARNING"):
        result = run_python_tests("x = 1", ["assert x == 1"], _audit_hook=False, sandbox="weak")
    assert result.passed == (True,) and "audit_hook" not in result.layers
    assert "WEAK" in caplog.text and "audit_hook" in caplog.text
