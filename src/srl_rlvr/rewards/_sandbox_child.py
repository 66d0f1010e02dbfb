"""Child side of the code sandbox: ``python -I -c <this file's source> {setup|run} <payload.json>``.

Stdlib only and self-contained: it runs in a fresh interpreter, never imported by the package at run time.
Two stages, so that ctypes is never loaded in the process that runs the candidate (CPython caches loaded
extension modules, and the candidate could re-create a cached ``_ctypes`` without any audit event):

``setup`` (only when started as root; ``python -I -S``):
  1. ``unshare(CLONE_NEWNET)``: a network namespace with no interface up, not even loopback;
  2. drop root to ``nobody`` for good, then ``PR_SET_NO_NEW_PRIVS``. If the interpreter is not
     readable by everyone (here it lives under a 0700 ``/root``), keep exactly one capability,
     CAP_DAC_READ_SEARCH (read anything, write only as nobody), as an ambient capability so it
     survives the exec; if that capability isn't available either (Docker's default set), stay root;
  3. ``execv`` a fresh interpreter into the ``run`` stage (namespace and uid carry over).
  We do this here rather than in ``preexec_fn`` because preexec_fn is not thread-safe (trainers are
  multi-threaded) and because exec-ing the interpreter as plain nobody fails when it isn't readable.

``run`` (trusted until the audit hook is in, then the candidate):
  4. read the payload and delete it, so the candidate can't read its tests;
  5. rlimits: address space, CPU seconds, file size, processes, open files, no core dumps;
  6. stdin/stdout/stderr go to /dev/null; results leave on a private dup of the original stdout, each
     line tagged with the nonce so the candidate's own prints can never count as a pass;
  7. an audit hook (PEP 578) that blocks processes, sockets, ctypes, signals, chdir, symlinks, and any
     write/rename/remove/mkdir/chmod outside the sandbox directory;
  8. run the candidate, then each test, reporting as it goes.

The run stage checks which layers actually hold (its uid, its network namespace inode against the
parent's) and reports them on the first results line.
"""

from __future__ import annotations

import json
import os
import resource
import stat
import sys

CLONE_NEWNET = 0x40000000
PR_SET_KEEPCAPS = 8
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
CAP_DAC_READ_SEARCH = 2
LINUX_CAPABILITY_VERSION_3 = 0x20080522


# ---------------------------------------------------------------- setup stage (root, ctypes allowed)


def _permitted_capabilities() -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("CapPrm:"):
                    return int(line.split()[1], 16)
    except OSError:
        pass
    return 0


def _world_can_run_python() -> bool:
    """Whether a user with no special rights can execute this interpreter and read its libraries."""
    paths = [os.path.realpath(sys.executable), os.path.realpath(sys.base_prefix), os.path.realpath(sys.prefix)]
    for path in paths:
        current = path
        while True:
            try:
                mode = os.stat(current).st_mode
            except OSError:
                return False
            if stat.S_ISDIR(mode) and not mode & stat.S_IXOTH:
                return False
            if current == path and not mode & stat.S_IROTH:
                return False
            parent = os.path.dirname(current)
            if parent == current:
                break
            current = parent
    return True


def _keep_read_search_capability(ctypes, libc) -> bool:
    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]

    header = Header(LINUX_CAPABILITY_VERSION_3, 0)
    data = (Data * 2)()
    data[0].effective = data[0].permitted = data[0].inheritable = 1 << CAP_DAC_READ_SEARCH
    if libc.capset(ctypes.byref(header), data) != 0:
        return False
    return libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_DAC_READ_SEARCH, 0, 0) == 0


def _setup_then_exec(payload_path: str) -> None:
    with open(payload_path, encoding="utf-8") as handle:
        payload = json.load(handle)
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if payload["isolate_network"]:
        libc.unshare(CLONE_NEWNET)  # the run stage checks whether it took
    drop = payload["drop_privileges"]
    world_readable = _world_can_run_python()
    if drop and not world_readable:
        # nobody couldn't even load the interpreter: drop only if CAP_DAC_READ_SEARCH can come along.
        has_read_search = bool(_permitted_capabilities() & (1 << CAP_DAC_READ_SEARCH))
        drop = has_read_search and libc.prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) == 0
    if drop:
        os.setgroups([])
        os.setgid(payload["gid"])
        os.setuid(payload["uid"])
        if not world_readable and not _keep_read_search_capability(ctypes, libc):
            raise SystemExit("sandbox setup: dropped to nobody but could not keep CAP_DAC_READ_SEARCH")
    libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    os.execv(sys.executable, [sys.executable, "-I", "-c", payload["child_source"], "run", payload_path])


# ---------------------------------------------------------------- run stage (no ctypes, ever)


def _read_payload(path: str) -> dict:
    with open(path, encoding="utf-8") as handle:
        payload = json.load(handle)
    os.remove(path)
    return payload


def _confirmed_layers(payload: dict) -> list[str]:
    layers = []
    try:
        if os.stat("/proc/self/ns/net").st_ino != payload["parent_netns_inode"]:
            layers.append("netns")
    except OSError:
        pass
    uid = payload["uid"]
    if uid > 0 and os.getresuid() == (uid, uid, uid):
        layers.append("nobody")
    return layers


def _set_limits(limits: dict[str, int], as_nobody: bool) -> bool:
    pairs = {
        resource.RLIMIT_AS: limits["memory_bytes"],
        resource.RLIMIT_FSIZE: limits["file_bytes"],
        resource.RLIMIT_NOFILE: limits["open_files"],
        resource.RLIMIT_CORE: 0,
    }
    if as_nobody:  # RLIMIT_NPROC counts every task of the user; root ignores it, so only set it as nobody
        pairs[resource.RLIMIT_NPROC] = limits["processes"]
    try:
        for which, value in pairs.items():
            resource.setrlimit(which, (value, value))
        # Soft limit sends SIGXCPU, the hard one a second later SIGKILL, even if the parent is gone.
        cpu = limits["cpu_seconds"]
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    except (ValueError, OSError):
        return False
    return True


def _private_results_fd() -> int:
    results_fd = os.dup(1)
    os.set_inheritable(results_fd, False)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    return results_fd


def _install_audit_hook(root: str) -> None:
    """Install the hook. Every helper it uses is bound here, so the candidate can't monkeypatch them."""
    import posix

    lstat, readlink, getcwd, stat = posix.lstat, posix.readlink, posix.getcwd, posix.stat
    decode, startswith, split, join = bytes.decode, str.startswith, str.split, str.join
    str_type, bytes_type, int_type, type_of = str, bytes, int, type
    # Builtins too: the candidate can rebind builtins.len, builtins.bool, ... but not these closure cells.
    len_, enumerate_, permission_error, import_error = len, enumerate, PermissionError, ImportError
    file_type_mask, symlink_type, directory_type = 0o170000, 0o120000, 0o040000
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    root_prefix = root + "/"
    writable_devices = ("/dev/null",)

    blocked_events = frozenset(
        {
            "os.system", "os.exec", "os.spawn", "os.posix_spawn", "os.fork", "os.forkpty",
            "subprocess.Popen", "pty.spawn", "os.kill", "os.killpg", "signal.pthread_kill",
            "os.chdir", "os.symlink", "resource.setrlimit", "resource.prlimit",
            "gc.get_objects", "gc.get_referrers", "gc.get_referents",
            "webbrowser.open", "sys.addaudithook",
        }
    )  # fmt: skip
    blocked_prefixes = ("socket.", "ctypes.", "_winapi.", "urllib.")
    # fork_exec and raw memory access are not audited themselves, so their modules may not be imported.
    # "posix" is always loaded: importing it again would only serve to restore the functions we removed.
    blocked_imports = frozenset(
        {"_posixsubprocess", "ctypes", "_ctypes", "_testcapi", "_testinternalcapi", "posix"}
    )
    # event -> ((position of a path it changes, position of the dir_fd that path is relative to), ...)
    path_events = {
        "os.remove": ((0, 1),), "os.rmdir": ((0, 1),), "os.mkdir": ((0, 2),), "os.chmod": ((0, 2),),
        "os.chown": ((0, 3),), "os.utime": ((0, 3),), "os.rename": ((0, 2), (1, 3)), "os.link": ((0, 2), (1, 3)),
        "os.truncate": ((0, None),), "os.chflags": ((0, None),), "os.lchflags": ((0, None),),
        "os.setxattr": ((0, None),), "os.removexattr": ((0, None),), "shutil.rmtree": ((0, 1),),
        "shutil.copyfile": ((1, None),), "shutil.copymode": ((1, None),), "shutil.copystat": ((1, None),),
        "shutil.copytree": ((1, None),), "shutil.move": ((0, None), (1, None)), "shutil.chown": ((0, None),),
        "shutil.unpack_archive": ((1, None),),
    }  # fmt: skip

    def real_path(path: str, depth: int = 0) -> str | None:
        """Absolute path with '.', '..' and symlinks resolved (missing components kept literally)."""
        if depth > 40:
            return None  # symlink loop: refuse rather than guess
        if not startswith(path, "/"):
            path = getcwd() + "/" + path
        components = split(path, "/")
        parts: list[str] = []
        for index, component in enumerate_(components):
            if component in ("", "."):
                continue
            if component == "..":
                if parts:
                    parts.pop()
                continue
            parts.append(component)
            current = "/" + join("/", parts)
            try:
                mode = lstat(current).st_mode
            except OSError:
                continue
            if mode & file_type_mask == symlink_type:
                target = readlink(current)
                base = target if startswith(target, "/") else "/" + join("/", parts[:-1]) + "/" + target
                return real_path(base + "/" + join("/", components[index + 1 :]), depth + 1)
        return "/" + join("/", parts)

    def plain_path(path: object) -> str | None:
        # Only exact str/bytes: a PathLike's __fspath__ could answer differently to us and to the syscall.
        if type_of(path) is str_type:
            return path
        if type_of(path) is bytes_type:
            return decode(path, "utf-8", "surrogateescape")
        return None

    def inside(path: object) -> bool:
        text = plain_path(path)
        if text is None:
            return False
        resolved = real_path(text)
        if resolved is None:
            return False
        return resolved == root or startswith(resolved, root_prefix) or resolved in writable_devices

    def is_outside_directory(path: object) -> bool:
        text = plain_path(path)
        if text is None:
            return True
        resolved = real_path(text)
        if resolved is None:
            return True
        if resolved == root or startswith(resolved, root_prefix):
            return False
        try:
            return stat(resolved).st_mode & file_type_mask == directory_type
        except OSError:
            return False

    def deny(event: str) -> None:
        raise permission_error(f"sandbox: {event} is not allowed")

    own_proc = f"/proc/{os.getpid()}"

    def another_process(path: object) -> bool:
        """/proc/<pid>/... of a process other than this one (its environ holds the trainer's tokens)."""
        text = plain_path(path)
        if text is None:
            return False
        resolved = real_path(text) or text
        if not startswith(resolved, "/proc/"):
            return False
        head = resolved[len("/proc/"):].split("/", 1)[0]
        return head.isdigit() and not startswith(resolved + "/", own_proc + "/")

    def check_open(args: tuple) -> None:
        path, mode, flags = args
        if type_of(path) is not int_type:
            if plain_path(path) is None:  # a PathLike could name one file to us and another to the syscall
                deny("opening a path that is not a str or bytes")
            if another_process(path):
                deny("reading another process's /proc entries")
        writing = (flags or 0) & write_flags != 0
        if type_of(mode) is str_type:
            for letter in "wax+":
                if letter in mode:
                    writing = True
        if writing:
            if type_of(path) is int_type or not inside(path):
                deny("writing outside the sandbox directory")
        elif mode is None and type_of(path) is not int_type and is_outside_directory(path):
            # os.open() of a directory yields a dir_fd; the "open" event can't show later dir_fd-relative writes.
            deny("opening a directory outside the sandbox")

    def relative_to_dir_fd(path: object, dir_fd: object) -> object:
        """``path`` as the kernel will resolve it: relative paths start at ``dir_fd`` when one is given."""
        text = plain_path(path)
        if dir_fd in (None, -1) or text is None or startswith(text, "/"):
            return path
        if type_of(dir_fd) is not int_type:
            return None
        try:
            return readlink(f"/proc/self/fd/{dir_fd}") + "/" + text
        except OSError:
            return None  # no /proc: can't tell where the descriptor points, so refuse

    def check_path_event(event: str, args: tuple) -> None:
        for path_position, dir_fd_position in path_events[event]:
            if path_position >= len_(args):
                continue
            target = args[path_position]
            if type_of(target) is int_type and event == "os.truncate":
                continue  # ftruncate on a descriptor that was already opened for writing (and checked)
            if dir_fd_position is not None and dir_fd_position < len_(args):
                target = relative_to_dir_fd(target, args[dir_fd_position])
            if not inside(target):
                deny(f"{event} outside the sandbox directory")

    def hook(event: str, args: tuple) -> None:
        if event == "open":
            check_open(args)
        elif event == "import":
            # An exact str: a str subclass could hash differently and slip past the set lookup.
            if type_of(args[0]) is not str_type or args[0] in blocked_imports:
                # ImportError, not PermissionError: libraries that treat ctypes as optional (numpy) still load.
                raise import_error(f"sandbox: import {args[0]} is not allowed")
        elif event in path_events:
            check_path_event(event, args)
        elif event in blocked_events or startswith(event, blocked_prefixes):
            deny(event)
        elif event == "sqlite3.connect":
            database = args[0]
            in_memory = type_of(database) is str_type and database in (":memory:", "")
            if not (in_memory or inside(database)):
                deny("sqlite3 database outside the sandbox directory")

    sys.addaudithook(hook)


def _remove_unaudited_functions() -> None:
    """Take away what the audit hook can't see: no event is raised for these."""
    module = sys.modules.get("_posixsubprocess")  # fork_exec; only loaded if site pulled it in
    if module is not None and hasattr(module, "fork_exec"):
        del module.fork_exec
    posix = sys.modules["posix"]
    # mkfifo/mknod create files anywhere nobody may write, /tmp included; pidfd_open + pidfd_send_signal
    # signal another process of the same user (the trainer) without any audit event.
    for name in ("mkfifo", "mknod", "pidfd_open"):
        for module in (os, posix):
            if hasattr(module, name):
                delattr(module, name)
    import signal

    if hasattr(signal, "pidfd_send_signal"):
        del signal.pidfd_send_signal


def _run_tests(payload: dict, report, *, compile=compile, exec=exec, range=range, len=len, enumerate=enumerate,
               type=type, BaseException=BaseException) -> None:
    # Builtins are bound as keyword defaults: the candidate may rebind builtins.exec and friends.
    namespace: dict = {"__name__": "__candidate__"}
    try:
        exec(compile(payload["code"], "<candidate>", "exec"), namespace)
    except BaseException as error:  # SystemExit included: exiting early must not skip the tests' verdict
        for index in range(len(payload["tests"])):
            report(f"T {index} 0 candidate:{type(error).__name__}")
        return
    for index, test in enumerate(payload["tests"]):
        if type(test) is dict:  # judged by the parent: report the value, never see the expected one
            try:
                value = repr(eval(compile(test["expr"], f"<test {index}>", "eval"), namespace))
            except BaseException as error:
                report(f"T {index} 0 {type(error).__name__}")
            else:
                report(f"V {index} {value.encode('utf-8', 'replace')[:65536].hex()}")
            continue
        try:
            exec(compile(test, f"<test {index}>", "exec"), namespace)
        except BaseException as error:
            report(f"T {index} 0 {type(error).__name__}")
        else:
            report(f"T {index} 1 ok")


def _run(payload_path: str) -> None:
    payload = _read_payload(payload_path)
    nonce = payload["nonce"]
    layers = _confirmed_layers(payload)
    if _set_limits(payload["limits"], "nobody" in layers):
        layers.append("rlimits")
    results_fd = _private_results_fd()
    sys.dont_write_bytecode = True

    def report(line: str, write=os.write, encode=str.encode) -> None:
        write(results_fd, encode(f"{nonce} {line}\n"))

    if payload["audit_hook"]:
        _remove_unaudited_functions()
        _install_audit_hook(os.path.realpath(payload["sandbox_dir"]))
        layers.append("audit_hook")
    report("L " + ",".join(layers))
    missing = [name for name in payload.get("required_layers", []) if name not in layers]
    if missing:  # strict: the candidate never runs without the isolation it was promised
        report("REFUSED " + ",".join(missing))
        return
    _run_tests(payload, report)
    report("END")


if __name__ == "__main__":
    if sys.argv[1] == "setup":
        _setup_then_exec(sys.argv[2])
    else:
        _run(sys.argv[2])
