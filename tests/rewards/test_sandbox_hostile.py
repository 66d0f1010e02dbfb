"""Hostile candidates against the two-process code sandbox (issue 18): each scores 0.0, the trainer lives on,
nothing appears outside the sandbox directories, and the trainer's secret never comes back.

Each attack is judged by its effect on the outside world and on the reward, not by what the candidate reports.
The tests in ``TESTS`` would pass only for ``f(x) == x + 1``; every attacker defines a wrong ``f`` (or none), so
a score above 0 means it forged, smuggled or guessed its way past the verdict. ``test_hostile_candidate`` runs
each attack with every layer, and with layers off to show which layer stops what (``LAYERS``, ``GETS_THROUGH``):
``pytest tests/rewards/test_sandbox_hostile.py -v`` is the measurement docs/rewards.md quotes.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from srl_rlvr.rewards import code_test_reward
from srl_rlvr.rewards._sandbox_child import _world_can_run_python
from srl_rlvr.rewards.sandbox import run_python_tests
from srl_rlvr.rewards.sandbox_launch import use_bwrap

REPO_DIR = Path(__file__).resolve().parents[2]
SECRET_ENV = "SRL_RLVR_TEST_TRAINER_SECRET"
HUMAN_EVAL_STYLE = "def check(candidate):\n    assert candidate(1) == 2\n    assert candidate(3) == 4\n\ncheck(f)\n"
TESTS = [
    "assert f(1) == 2",
    "assert f(2) > 2",
    "assert abs(f(0.5) - 1.5) < 1e-9",
    "import math\nassert math.isclose(f(1), 2.0)",
    "try:\n    f(-1)\nexcept ValueError:\n    pass\nelse:\n    raise AssertionError('no ValueError')",
    HUMAN_EVAL_STYLE,
]

FORGE_FRAMES = """
import sys
def f(x):
    return 0
forged = [('["R", %d, true, "ok"]' % i).encode() for i in range(8)] + [b'["END"]']
frame, seen = sys._getframe(), []
while frame is not None:  # every callable in every frame's locals and globals that might be a reporter
    for scope in (frame.f_locals, frame.f_globals):
        seen += [value for value in scope.values() if callable(value)]
    frame = frame.f_back
for fn in seen:
    for body in forged:
        for args in (("M", body), ("A", body), (body,), (body.decode(),)):
            try:
                fn(*args)
            except BaseException:
                pass
"""
FORGE_GC = """
import gc, re
def f(x):
    return 0
try:  # the old design's nonce: any 32-hex-digit string the interpreter holds
    nonces = {s for o in gc.get_objects() if isinstance(o, str) for s in re.findall('[0-9a-f]{32}', o)}
except BaseException:
    nonces = set()
for nonce in nonces:
    print(nonce, 'T 0 1 ok')
"""
FD_SPRAY = """
import os
def f(x):
    return 0
for fd in range(0, 64):
    for i in range(8):
        body = ('["R", %d, true, "ok"]' % i).encode()
        for kind in b"MAC":
            try:
                os.write(fd, (len(body) + 1).to_bytes(4, "big") + bytes([kind]) + body)
            except OSError:
                pass
"""
PRINT_PASS_LINES = """
import sys
def f(x):
    return 0
for i in range(8):
    print(f"T {i} 1 ok")
    print(f'["R", {i}, true, "ok"]')
    sys.stderr.write(f"T {i} 1 ok\\n")
"""
READ_PARENT_ENVIRON = """
import os
found = []
for path in [f"/proc/{os.getppid()}/environ", "/proc/1/environ", "/proc/self/../1/environ"] + [
        f"/proc/{pid}/environ" for pid in os.listdir("/proc") if pid.isdigit()]:
    try:
        found.append(open(path, "rb").read().decode("latin-1"))
    except BaseException as error:
        found.append(repr(error))
def f(x):
    return "\\n".join(found)  # smuggle it out through an answer
"""
KILL_OTHER_PIDS = """
import os, signal
def f(x):
    return 0
for pid in [{sentinel}, os.getppid(), 1] + list(range(2, 4096)):
    if pid != os.getpid():
        try:
            os.kill(pid, signal.SIGKILL)
        except BaseException:
            pass
try:
    os.killpg(0, signal.SIGKILL)
except BaseException:
    pass
"""
PIDFD_KILL_PARENT = """
import os, signal, sys
def f(x):
    return 0
for module in (os, sys.modules.get("posix")):
    for pid in (os.getppid(), {sentinel}):
        try:
            signal.pidfd_send_signal(module.pidfd_open(pid), signal.SIGKILL)
        except BaseException:
            pass
"""
NETWORK = """
import socket, urllib.request
def f(x):
    return 0
for attempt in (lambda: socket.create_connection(("127.0.0.1", {port}), timeout=1),
                lambda: urllib.request.urlopen("http://127.0.0.1:{port}/", timeout=1),
                lambda: __import__("_socket").socket().connect(("127.0.0.1", {port}))):
    try:
        attempt()
    except BaseException:
        pass
"""
WRITE_OUTSIDE = """
import os, pathlib, shutil
def f(x):
    return 0
for target in {targets!r}:
    for write in (lambda: open(target, "w").write("pwned"), lambda: pathlib.Path(target).write_text("pwned"),
                  lambda: os.close(os.open(target, os.O_WRONLY | os.O_CREAT)), lambda: os.mkdir(target),
                  lambda: shutil.copyfile("/etc/passwd", target), lambda: os.system("touch " + target)):
        try:
            write()
        except BaseException:
            pass
"""
READ_THE_ANSWERS = """
import json
def f(x):  # the dataset with the expected values is a file on the trainer's machine
    return json.load(open({answers!r}))[repr(x)]
"""
ATTACKS = {
    "forge_through_frames": FORGE_FRAMES,
    "forge_by_scanning_gc_for_the_nonce": FORGE_GC,
    "forge_frames_on_every_fd": FD_SPRAY,
    "print_fake_pass_lines": PRINT_PASS_LINES,
    "os_exit_at_import": "import os\nos._exit(0)",
    "system_exit_at_import": "raise SystemExit(0)",
    "os_exit_inside_a_call": "import os\ndef f(x):\n    os._exit(0)",
    "kill_itself_inside_a_call": "import signal\ndef f(x):\n    signal.raise_signal(signal.SIGKILL)",
    "close_its_pipes": "import os\ndef f(x):\n    for fd in range(3, 64):\n        try:\n            os.close(fd)\n"
                       "        except OSError:\n            pass\n    return 2",
    "infinite_loop_at_import": "while True:\n    pass",
    "infinite_loop_inside_a_call": "def f(x):\n    while True:\n        pass",
    "lying_eq_object": "class Liar:\n    __eq__ = __ne__ = __lt__ = __gt__ = lambda self, other: True\n"
                       "    __sub__ = __rsub__ = __abs__ = lambda self, *other: self\n"
                       "    __bool__ = lambda self: True\n    __hash__ = object.__hash__\n"
                       "def f(x):\n    return Liar()",
    "int_subclass": "class Two(int):\n    __eq__ = __ne__ = __lt__ = __gt__ = lambda self, other: True\n"
                    "    __sub__ = __rsub__ = lambda self, other: Two(0)\n    __hash__ = int.__hash__\n"
                    "def f(x):\n    return Two(7)",
    "generator_result": "def f(x):\n    yield x + 1",
    "shadow_builtins_and_modules": "abs = lambda x: 0\nclass math:\n    isclose = staticmethod(lambda *a, **k: True)\n"
                                   "def f(x):\n    return 0",
    "huge_answer": "def f(x):\n    return 'x' * 50_000_000",
    "deeply_nested_answer": "def f(x):\n    value = []\n    for _ in range(100_000):\n        value = [value]\n"
                            "    return value",
    "read_parent_environ": READ_PARENT_ENVIRON,
    "kill_other_pids": KILL_OTHER_PIDS,
    "pidfd_kill_the_parent": PIDFD_KILL_PARENT,
    "fork_bomb": "import os\ndef f(x):\n    return 0\ntry:\n    while True:\n        os.fork()\n"
                 "except BaseException:\n    pass",
    "memory_exhaustion": "chunks = []\nwhile True:\n    chunks.append(bytearray(50 * 1024 ** 2))",
    "network_including_loopback": NETWORK,
    "write_outside_the_sandbox": WRITE_OUTSIDE,
    "read_the_answers_from_the_trainers_files": READ_THE_ANSWERS,
}


# Layer settings: the two strict ones the trainer gets (bwrap where it works, else the unshare/setresuid path),
# and, to show what each layer stops on its own, the audit hook off (weak) with and without bwrap.
LAYERS = {
    "all": {},
    "no_bwrap": {"_bwrap": False},
    "no_hook": {"_audit_hook": False, "sandbox": "weak"},
    "neither": {"_audit_hook": False, "_bwrap": False, "sandbox": "weak"},
}
# What gets through with a layer off (anything not listed is stopped, reward 0, no effect outside). Without the
# audit hook and without bwrap, nobody can still write to world-writable /tmp and /dev/shm.
GETS_THROUGH = {("write_outside_the_sandbox", "neither"): ["wrote /tmp", "wrote /dev/shm"]}
if not _world_can_run_python():  # then nobody keeps CAP_DAC_READ_SEARCH, and reads any file (0600 ones too)
    GETS_THROUGH[("read_the_answers_from_the_trainers_files", "neither")] = ["reward 0.8333333333333334"]
# Not run without the audit hook: nobody's processes and its RLIMIT_NPROC are shared with every other sandbox
# on the machine, so these would hit other people's runs (bwrap's pid namespace does stop kill_other_pids).
NOT_RUN_WITHOUT_HOOK = {("fork_bomb", "no_hook"), ("fork_bomb", "neither"), ("kill_other_pids", "neither")}


@pytest.fixture
def sentinel():
    """A process of the trainer's that attackers try to kill."""
    process = subprocess.Popen(["sleep", "60"])
    yield process
    process.kill()
    process.wait()


@pytest.fixture
def listening_server():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.setblocking(False)
    yield server
    server.close()


def _connections(server: socket.socket) -> int:
    count = 0
    while True:
        try:
            connection, _ = server.accept()
        except BlockingIOError:
            return count
        connection.close()
        count += 1


def _effects(attack: str, layers: str, sentinel, server, secret: str) -> list[str]:
    """Run one attack; what it achieved outside the sandbox, or in the reward."""
    tag = f"srl_rlvr_pwn_{uuid.uuid4().hex}"
    targets = [f"/tmp/{tag}", str(REPO_DIR / tag), str(Path.home() / tag), f"/dev/shm/{tag}"]
    answers = Path(f"/tmp/{tag}.answers.json")
    answers.write_text(json.dumps({repr(x): x + 1 for x in (0.5, 1, 2, 3)}))
    answers.chmod(0o600)
    code = ATTACKS[attack].replace("{sentinel}", str(sentinel.pid)).replace("{port}", str(
        server.getsockname()[1])).replace("{targets!r}", repr(targets)).replace("{answers!r}", repr(str(answers)))
    started = time.monotonic()
    try:
        result = run_python_tests(code, TESTS, timeout_s=2.0, memory_mb=256, **LAYERS[layers])
    finally:
        answers.unlink()
    effects = [f"reward {result.pass_fraction}"] if result.pass_fraction else []
    if time.monotonic() - started > 2.0 + 2.0:
        effects.append("missed its deadline")
    if sentinel.poll() is not None:
        effects.append("killed a trainer process")
    if _connections(server):
        effects.append("connected")
    if secret in repr(result):
        effects.append("leaked the secret")
    for target in targets:
        if os.path.lexists(target):
            effects.append("wrote " + os.path.dirname(target))
            (os.rmdir if os.path.isdir(target) and not os.path.islink(target) else os.unlink)(target)
    return effects


@pytest.mark.parametrize("layers", list(LAYERS))
@pytest.mark.parametrize("attack", list(ATTACKS))
def test_hostile_candidate(attack, layers, sentinel, listening_server, monkeypatch):
    if (attack, layers) in NOT_RUN_WITHOUT_HOOK:
        pytest.skip("would touch other users' nobody processes on a shared machine")
    if "_bwrap" not in LAYERS[layers] and not use_bwrap(None):
        pytest.skip("bwrap does not work here: the same as the setting without it")
    secret = f"trainer-secret-{uuid.uuid4().hex}"
    monkeypatch.setenv(SECRET_ENV, secret)
    assert _effects(attack, layers, sentinel, listening_server, secret) == GETS_THROUGH.get((attack, layers), [])


@pytest.mark.parametrize("attack", ["forge_through_frames", "lying_eq_object", "os_exit_at_import"])
def test_hostile_completion_gets_reward_zero(attack):
    assert code_test_reward(f"<think>win</think>```python\n{ATTACKS[attack]}\n```", TESTS) == 0.0


def test_a_candidate_that_dies_mid_test_fails_it_even_if_the_test_catches_everything():
    catch_all = "try:\n    f(1)\nexcept BaseException:\n    pass"
    exits = run_python_tests("import os\ndef f(x):\n    os._exit(0)", [catch_all, "assert True"])
    assert exits.passed == (False, True) and exits.outcomes[0].startswith("candidate:gone")
    assert exits.candidate_gone == "exited"
    raises = run_python_tests("def f(x):\n    raise ValueError(x)", [catch_all])  # a real exception is fine
    assert raises.passed == (True,)


def test_only_the_reference_child_reports():
    # A candidate whose answers are all wrong, plus every trick above at once: the parent took no report from it.
    code = FORGE_FRAMES + FD_SPRAY + PRINT_PASS_LINES
    result = run_python_tests(code, ["assert f(1) == 2"] * 3)
    assert result.passed == (False, False, False), result
    assert all(outcome.startswith("candidate:") for outcome in result.outcomes), result


@pytest.mark.skipif(not use_bwrap(True), reason="bwrap does not work here")
def test_bwrap_alone_hides_the_machine_and_the_other_processes(sentinel):
    sentinel = sentinel.pid
    # Layer check, audit hook off: inside bwrap the candidate sees its own pid namespace and a bare file tree.
    code = (
        "import os\n"
        "PIDS = sorted(int(p) for p in os.listdir('/proc') if p.isdigit())\n"
        f"SEES_REPO = os.path.exists({str(REPO_DIR / 'pyproject.toml')!r})\n"
        "SEES_ROOT_HOME = os.listdir('/root') if os.path.isdir('/root') else []\n"
        "try:\n"
        "    open('/tmp/x', 'w').write('a private tmpfs, and not writable by nobody either')\n"
        "    WROTE = 'wrote'\n"
        "except OSError as error:\n"
        "    WROTE = type(error).__name__\n"
        "def pids():\n    return PIDS\n"
        "def sees():\n    return [SEES_REPO, SEES_ROOT_HOME, WROTE]\n"
        "def kill(pid):\n    os.kill(pid, 9)\n"
    )
    tests = [
        "assert len(pids()) <= 3",  # bwrap's pid 1, the child, maybe a helper: nothing of the trainer's
        "repo, root_home, wrote = sees()\n"
        "assert repo is False and set(root_home) <= {'.pyenv'} and wrote in ('wrote', 'PermissionError')",
        f"kill({sentinel})",  # that pid does not exist in its namespace
    ]
    result = run_python_tests(code, tests, _audit_hook=False, _bwrap=True, sandbox="weak")
    assert "bwrap" in result.layers
    assert result.passed == (True, True, False), result
    assert result.outcomes[2] == "ProcessLookupError"
    os.kill(sentinel, 0)
    assert not os.path.exists("/tmp/x") or os.path.getmtime("/tmp/x") < time.time() - 60


def test_killing_the_reference_child_can_only_fail_the_run():
    # Layer check, no audit hook and no bwrap: the candidate (nobody) can signal the reference child (nobody
    # too; it finds it as its sibling), but a dead reference reports nothing, so every test counts as failed.
    code = (
        "import os, signal, time\n"
        "def siblings():\n"
        "    for pid in filter(str.isdigit, os.listdir('/proc')):\n"
        "        try:\n"
        "            stat = open(f'/proc/{pid}/stat').read()\n"
        "        except OSError:\n"
        "            continue\n"
        "        if int(stat.rsplit(')', 1)[1].split()[1]) == os.getppid() and int(pid) != os.getpid():\n"
        "            yield int(pid)\n"
        "KILLED = []\n"
        "for _ in range(1000):  # up to 10 s: the reference child may still be root in its setup stage\n"
        "    for pid in siblings():\n"
        "        try:\n"
        "            os.kill(pid, signal.SIGKILL)\n"
        "            KILLED.append(pid)\n"
        "        except (PermissionError, ProcessLookupError):\n"
        "            pass\n"
        "    if KILLED:\n"
        "        break\n"
        "    time.sleep(0.01)\n"
        "def f(x):\n    return x + 1\n"
    )
    result = run_python_tests(code, ["assert f(1) == 2"], _audit_hook=False, _bwrap=False, sandbox="weak")
    assert result.passed == (False,) and result.outcomes == ("no report",), result
    assert result.exit_code == -signal.SIGKILL


@pytest.mark.parametrize("name", ["SIGTERM", "SIGKILL"])
def test_the_trainer_survives_a_candidate_that_signals_its_whole_group(name):
    code = f"import os, signal\nos.killpg(0, signal.{name})\ndef f(x):\n    return x + 1\n"
    result = run_python_tests(code, ["assert f(1) == 2"])
    assert result.passed == (False,) and result.outcomes[0].startswith("candidate:")
    assert getattr(signal, name)  # and we are still here


def test_nothing_the_candidate_chose_comes_back_in_the_result():
    # Whatever it learned (here a marker it was given), the candidate can't write it into the result: outcomes
    # are builtin exception names and parent-made reasons only, and its stderr goes to /dev/null.
    marker = f"leak{uuid.uuid4().hex}"
    at_import = f"import sys\nsys.stderr.write({marker!r})\nraise type({marker!r}, (ValueError,), {{}})()\n"
    in_calls = (
        f"import sys\nLeak = type({marker!r}, (KeyError,), {{}})\n"
        "def raises(x):\n    raise Leak(x)\n"
        f"def unsendable(x):\n    return [{marker!r}] * 10_000_000\n"
        f"def weird(x):\n    return type({marker!r}, (int,), {{}})(1)\n"
    )
    tests = ["raises(1)", "unsendable(1)", "assert weird(1) == 1"]
    results = [run_python_tests(at_import, ["assert True"]), run_python_tests(in_calls, tests)]
    assert results[0].outcomes == ("candidate:ValueError",)
    assert results[1].outcomes == ("KeyError", "candidate:unsendable result", "TypeError"), results[1]
    assert all(marker not in repr(result) for result in results)
