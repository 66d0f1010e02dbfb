"""How the parent starts a sandbox child: inside bubblewrap when it works on this machine, else as before.

With bwrap (found on PATH and probed once per process) each child gets new pid, mount, network, IPC, UTS and
cgroup namespaces, ``--die-with-parent`` and ``--new-session``, and a file tree that holds only the system
libraries, the interpreter's own directories and the child's directory: read-only except that directory, a
private ``/tmp``, its own ``/proc`` (no other process in it) and a minimal ``/dev``. The trainer's files,
``/root`` and ``/home`` are simply not there. As root it runs without a user namespace and keeps only
CAP_SETUID, CAP_SETGID and CAP_DAC_READ_SEARCH, for the setup stage that drops to nobody as before; as another
user it needs unprivileged user namespaces. Without bwrap the child starts as it always did (``unshare`` and
``setresuid`` in ``_sandbox_child.py``); ``SRL_RLVR_SANDBOX_BWRAP=off`` forces that path.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from functools import lru_cache
from pathlib import Path

BWRAP_ENV = "SRL_RLVR_SANDBOX_BWRAP"  # auto (default): use bwrap when the probe passes | off
# What the interpreter and the stdlib need from the system besides its own prefix (no /etc/shadow, no /home, no
# /root): all a child sees under bwrap, and all the audit hook lets it read without bwrap.
SYSTEM_PATHS = (
    "/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32",
    "/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime", "/etc/passwd", "/etc/group",
    "/etc/nsswitch.conf", "/etc/mime.types", "/etc/os-release",  # the last two: mimetypes, platform
)  # fmt: skip


@lru_cache(maxsize=1)
def child_source() -> str:
    return (Path(__file__).with_name("_sandbox_child.py")).read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def role_sources() -> dict[str, str]:
    """The modules a child loads from source, sandbox_wire first (the role modules import it)."""
    names = ("sandbox_wire", "sandbox_candidate", "sandbox_reference")
    return {name: Path(__file__).with_name(f"{name}.py").read_text(encoding="utf-8") for name in names}


def child_env(sandbox_dir: str) -> dict[str, str]:
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


def _interpreter_paths() -> list[str]:
    """The interpreter's directories (a venv and the install it points to), outside what SYSTEM_PATHS covers."""
    found: list[str] = []
    for path in (sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix,
                 os.path.dirname(os.path.realpath(sys.executable))):
        for candidate in (os.path.abspath(path), os.path.realpath(path)):
            if candidate != "/" and not candidate.startswith("/usr/") and candidate not in found:
                found.append(candidate)
    return found


def readable_roots() -> list[str]:
    """What a child may read outside its own directory: the same tree bwrap shows, for the audit hook."""
    return [path for path in (*SYSTEM_PATHS, *_interpreter_paths()) if os.path.lexists(path)]


def bwrap_argv(bwrap: str, sandbox_dir: str, as_root: bool) -> list[str]:
    """bwrap and its options, up to and including ``--``, for a child that works in ``sandbox_dir``."""
    argv = [bwrap, "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
            "--die-with-parent", "--new-session"]
    if as_root:  # no user namespace: the setup stage needs these three to become the real nobody
        argv += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID",
                 "--cap-add", "CAP_DAC_READ_SEARCH"]
    else:
        argv += ["--unshare-user"]
    for path in SYSTEM_PATHS:
        if os.path.islink(path):
            argv += ["--symlink", os.readlink(path), path]
        elif os.path.exists(path):
            argv += ["--ro-bind", path, path]
    # The private /tmp before the interpreter's binds: mounted later it would hide a venv or a clone under /tmp.
    argv += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    for path in _interpreter_paths():
        argv += ["--ro-bind", path, path]
    argv += ["--bind", sandbox_dir, sandbox_dir, "--chdir", sandbox_dir, "--"]
    return argv


@lru_cache(maxsize=1)
def bwrap_probe() -> tuple[str | None, str]:
    """(path of a working bwrap or None, why). Once per process: a child interpreter must start inside it
    and see itself as one of the first pids of its own namespace."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return None, "bwrap not found on PATH"
    with tempfile.TemporaryDirectory(prefix="srl_rlvr_bwrap_probe_") as scratch:
        argv = [*bwrap_argv(bwrap, scratch, os.geteuid() == 0), sys.executable, "-I", "-S", "-c",
                "import os; print(os.getpid())"]
        try:
            done = subprocess.run(argv, env=child_env(scratch), capture_output=True, timeout=20, check=False)
        except (OSError, subprocess.TimeoutExpired) as error:
            return None, f"bwrap probe failed: {error}"
    pid = done.stdout.decode("ascii", "replace").strip()
    if done.returncode != 0 or pid not in ("1", "2", "3"):
        return None, f"bwrap probe failed (exit {done.returncode}): {done.stderr.decode('utf-8', 'replace')[-300:]}"
    return bwrap, "ok"


def use_bwrap(requested: bool | None) -> bool:
    """``requested`` (tests and the bench), else bwrap unless ``SRL_RLVR_SANDBOX_BWRAP=off`` or the probe failed."""
    if requested is not None:
        return requested and bwrap_probe()[0] is not None
    return os.environ.get(BWRAP_ENV, "auto") != "off" and bwrap_probe()[0] is not None


def child_argv(sandbox_dir: str, config: dict, bwrap: bool, as_root: bool) -> list[str]:
    """The command line of one child. As root a setup stage isolates and drops privileges, then execs the
    run stage (``_sandbox_child.py``)."""
    if as_root:  # the setup stage execs the run stage with this same source
        stage = ["-S", "-c", child_source(), "setup", json.dumps({**config, "child_source": child_source()})]
    else:
        stage = ["-c", child_source(), "run", json.dumps(config)]
    prefix = bwrap_argv(bwrap_probe()[0], sandbox_dir, as_root) if bwrap else []
    return [*prefix, sys.executable, "-I", *stage]
