"""Child side of the code sandbox: ``python -I -c <this file's source> {setup|run} <config JSON>``.

Stdlib only and self-contained: it runs in a fresh interpreter, never imported by the package at run time.
``sandbox.py`` starts two of these per run, never connected to each other: a *candidate* child that runs only
the candidate's code (``sandbox_candidate.py``) and a *reference* child that runs only the trusted tests
(``sandbox_reference.py``); the parent relays calls between them. Both get every layer below. Two stages, so
that ctypes is never loaded in the process that runs the candidate (CPython caches loaded extension modules,
and the candidate could re-create a cached ``_ctypes`` without any audit event):

``setup`` (only when started as root; ``python -I -S``):
  1. ``unshare(CLONE_NEWNET)``: a network namespace with no interface up, not even loopback (skipped inside
     bubblewrap, which made one already);
  2. drop root to ``nobody`` for good, then ``PR_SET_NO_NEW_PRIVS``. If the interpreter is not
     readable by everyone (here it lives under a 0700 ``/root``), keep exactly one capability,
     CAP_DAC_READ_SEARCH (read anything, write only as nobody), as an ambient capability so it
     survives the exec; if that capability isn't available either (Docker's default set), stay root;
  3. ``execv`` a fresh interpreter into the ``run`` stage (namespace and uid carry over).
  We do this here rather than in ``preexec_fn`` because preexec_fn is not thread-safe (trainers are
  multi-threaded) and because exec-ing the interpreter as plain nobody fails when it isn't readable.

``run`` (trusted until the audit hook is in, then, in the candidate child, the candidate):
  4. move the two pipe ends off fds 0 and 1 onto private descriptors; fds 0-2 become /dev/null;
  5. read the payload (the first frame on the pipe: role, module sources, code or tests, limits);
  6. rlimits: address space, CPU seconds, file size, processes, open files, no core dumps;
  7. an audit hook (PEP 578) that blocks processes, sockets, ctypes, signals, chdir, symlinks, any
     write/rename/remove/mkdir/chmod outside the sandbox directory, and reads outside the file tree that
     bwrap would show (the system libraries, the interpreter, the sandbox directory);
  8. report the layers that actually hold (uid, namespaces against the parent's), then play the role.

Frames on both pipes: a 4-byte big-endian length, one kind byte, the body. Parent to child: ``P`` payload,
``C`` a call (candidate), ``A`` an answer or ``G`` "the candidate is gone" (reference). Child to parent: ``M`` a
message for the parent (JSON), ``C`` a call to relay (reference), ``A`` an answer to relay (candidate).
"""

from __future__ import annotations

import json
import os
import resource
import stat
import sys
import types

CLONE_NEWNET = 0x40000000
PR_SET_KEEPCAPS = 8
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
CAP_DAC_READ_SEARCH = 2
LINUX_CAPABILITY_VERSION_3 = 0x20080522
MAX_FRAME_BYTES = 8 * 1024 * 1024 + 1  # sandbox_wire.MAX_MESSAGE_BYTES and the kind byte
ROLE_MODULES = {"candidate": "sandbox_candidate", "reference": "sandbox_reference"}


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


def _setup_then_exec(config_json: str) -> None:
    config = json.loads(config_json)
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if config["isolate_network"]:
        libc.unshare(CLONE_NEWNET)  # the run stage checks whether it took
    drop = config["drop_privileges"]
    world_readable = _world_can_run_python()
    if drop and not world_readable:
        # nobody couldn't even load the interpreter: drop only if CAP_DAC_READ_SEARCH can come along.
        has_read_search = bool(_permitted_capabilities() & (1 << CAP_DAC_READ_SEARCH))
        drop = has_read_search and libc.prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) == 0
    if drop:
        os.setgroups([])
        os.setgid(config["gid"])
        os.setuid(config["uid"])
        if not world_readable and not _keep_read_search_capability(ctypes, libc):
            raise SystemExit("sandbox setup: dropped to nobody but could not keep CAP_DAC_READ_SEARCH")
    libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    os.execv(sys.executable, [sys.executable, "-I", "-c", config["child_source"], "run", config_json])


# ---------------------------------------------------------------- run stage (no ctypes, ever)


def _namespace_inode(kind: str) -> int:
    try:
        return os.stat(f"/proc/self/ns/{kind}").st_ino
    except OSError:
        return -1


def _in_initial_user_namespace() -> bool:
    """Whether our uid is the machine's uid, not one a user namespace maps to someone else (root, say)."""
    try:
        with open("/proc/self/uid_map", encoding="ascii") as handle:
            return handle.read().split() == ["0", "0", "4294967295"]
    except OSError:
        return False


def _confirmed_layers(config: dict) -> list[str]:
    layers = []
    inodes = config["parent_namespace_inodes"]
    if _namespace_inode("net") not in (-1, inodes["net"]):
        layers.append("netns")
    uid = config["uid"]
    if uid > 0 and os.getresuid() == (uid, uid, uid) and _in_initial_user_namespace():
        layers.append("nobody")
    if config["bwrap"] and all(_namespace_inode(kind) not in (-1, inodes[kind]) for kind in ("pid", "mnt")):
        layers.append("bwrap")  # its own pid and mount namespaces: no other process, a minimal file tree
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


def _private_pipe_ends() -> tuple[int, int]:
    """The pipe ends from fds 0 and 1, on private non-inheritable descriptors; fds 0-2 become /dev/null."""
    read_fd, write_fd = os.dup(0), os.dup(1)
    for fd in (read_fd, write_fd):
        os.set_inheritable(fd, False)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    return read_fd, write_fd


def _install_audit_hook(root: str, read_roots: list[str]) -> None:
    """Install the hook. Every helper it uses is bound here, so the candidate can't monkeypatch them.
    ``read_roots``: what may be opened for reading besides ``root``, /dev, /sys and our own /proc entries: the
    same file tree bwrap shows (``sandbox_launch.py``), so that without bwrap the candidate can't read the
    dataset that holds its tests, or the trainer's files."""
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
    read_exact = tuple(path.rstrip("/") for path in read_roots)
    read_prefixes = tuple(path.rstrip("/") + "/" for path in read_roots) + ("/dev/", "/proc/", "/sys/")

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

    def readable(path: object) -> bool:
        text = plain_path(path)
        resolved = real_path(text) if text is not None else None
        if resolved is None:
            return False
        return resolved == root or resolved in read_exact or startswith(resolved, (root_prefix, *read_prefixes))

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
        elif type_of(path) is not int_type and not readable(path):
            deny("reading outside the sandbox's file tree")
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


def _framing(read_fd: int, write_fd: int):
    """send(kind, body) and recv() -> (kind, body) or None at end of file. Helpers are bound here, so that
    the candidate rebinding os.read or bytes.join doesn't break the reference child (it can't reach it
    anyway) and only changes its own answers in the candidate child."""
    read, write, from_bytes, to_bytes, join = os.read, os.write, int.from_bytes, int.to_bytes, b"".join

    def read_exactly(count: int) -> bytes | None:
        chunks, left = [], count
        while left:
            chunk = read(read_fd, min(left, 1 << 20))
            if not chunk:
                return None
            chunks.append(chunk)
            left -= len(chunk)
        return join(chunks)

    def recv() -> tuple[str, bytes] | None:
        head = read_exactly(4)
        if head is None:
            return None
        length = from_bytes(head, "big")
        if not 1 <= length <= MAX_FRAME_BYTES:
            return None
        frame = read_exactly(length)
        return None if frame is None else (chr(frame[0]), frame[1:])

    def send(kind: str, body: bytes) -> None:
        data = join([to_bytes(len(body) + 1, 4, "big"), kind.encode("ascii"), body])
        while data:
            data = data[write(write_fd, data) :]

    return send, recv


def _load_modules(sources: dict[str, str]) -> dict[str, types.ModuleType]:
    """The role modules from the sources the parent sent (sandbox_wire first: the others import it)."""
    modules = {}
    for name, source in sources.items():
        module = types.ModuleType(name)
        module.__file__ = f"<{name}>"
        sys.modules[name] = module
        exec(compile(source, f"<{name}>", "exec"), module.__dict__)
        modules[name] = module
    return modules


def _run(config_json: str) -> None:
    config = json.loads(config_json)
    read_fd, write_fd = _private_pipe_ends()
    send, recv = _framing(read_fd, write_fd)
    frame = recv()
    if frame is None or frame[0] != "P":
        raise SystemExit("sandbox child: no payload")
    payload = json.loads(frame[1])
    layers = _confirmed_layers(config)
    if _set_limits(payload["limits"], "nobody" in layers):
        layers.append("rlimits")
    sys.dont_write_bytecode = True
    modules = _load_modules(payload["modules"])
    if payload["audit_hook"]:
        _remove_unaudited_functions()
        _install_audit_hook(os.path.realpath(config["sandbox_dir"]), payload["read_roots"])
        layers.append("audit_hook")
    send("M", json.dumps(["L", layers]).encode())
    if any(name not in layers for name in payload["required_layers"]):
        return  # strict: nothing runs without the isolation it was promised (the parent sees which are missing)
    role = modules[ROLE_MODULES[payload["role"]]]
    if payload["role"] == "candidate":

        def next_call() -> bytes | None:
            frame = recv()
            return frame[1] if frame is not None and frame[0] == "C" else None

        role.serve(payload["code"], lambda body: send("A", body), next_call)
        return

    def next_answer() -> tuple[str, bytes]:
        frame = recv()
        return frame if frame is not None else ("G", b"the parent closed the pipe")

    link = role.Link(lambda body: send("C", body), next_answer)
    role.run(payload["tests"], link,
             lambda index, passed, outcome: send("M", json.dumps(["R", index, passed, outcome]).encode()))
    send("M", b'["END"]')


if __name__ == "__main__":
    if sys.argv[1] == "setup":
        _setup_then_exec(sys.argv[2])
    else:
        _run(sys.argv[2])
