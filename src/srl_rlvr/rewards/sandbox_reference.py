"""Reference child of the code sandbox: run the trusted tests against stand-ins for the candidate's names.

Loaded from source into the child that runs the tests (stdlib only; see ``_sandbox_child.py``). It never runs
candidate code: each top-level name the candidate defined is, here, a copy of its plain-data value, the real
stdlib module of that name, or a :class:`Remote` whose calls (attribute reads, iteration) go to the candidate
child by way of the parent and come back as plain data (``sandbox_wire.py``). Each test's outcome goes to the
parent, which counts the passes.

A test fails, whatever it catches, when an answer it needed was missing or unreadable (the candidate exited,
crashed, answered out of turn, or sent something that is not plain data): see :class:`CandidateGone`.
"""

from __future__ import annotations

import builtins
import importlib
import sys
import threading
import types

try:
    from . import sandbox_wire as wire
except ImportError:  # in the child: a module loaded from source, no package around it
    import sandbox_wire as wire

# stdlib modules that do something on import (print, open a browser, need a display)
_NOISY_MODULES = frozenset({"this", "antigravity", "idlelib", "turtle", "turtledemo", "tkinter"})
_MUTABLE = (list, dict, set)


class CandidateGone(BaseException):
    """No usable answer from the candidate. A BaseException, so ``except Exception`` in a test can't swallow
    it; the test fails even if it catches it (the link remembers)."""


class CandidateError(Exception):
    """An exception the candidate raised whose type has no builtin ancestor to rebuild it as."""


def _rebuild(name: str, base: str) -> BaseException:
    """The exception to raise here for one the candidate raised: its nearest builtin type, by name only."""
    cls = getattr(builtins, base, None) if base.isidentifier() else None
    if not (isinstance(cls, type) and issubclass(cls, BaseException)):
        cls = CandidateError
    message = f"{name[:100]} (raised by the candidate)"
    try:
        return cls(message)
    except Exception:  # types whose constructor wants more (UnicodeDecodeError, ExceptionGroup)
        return CandidateError(message)


class Link:
    """The reference child's end of the relay: one request at a time, answers checked before use."""

    def __init__(self, send_call, recv_answer) -> None:
        self._send_call, self._recv_answer = send_call, recv_answer
        self._lock = threading.Lock()
        self.spoiled: str | None = None  # why the current test must fail, whatever it caught

    def _spoil(self, why: str) -> CandidateGone:
        self.spoiled = self.spoiled or why
        return CandidateGone(why)

    def remote(self, handle: int) -> Remote:
        return Remote(self, handle)

    @staticmethod
    def _handle_of(obj: object) -> int:
        if type(obj) is Remote or type(obj) is RemoteFunction:
            return obj._Remote__handle
        raise wire.WireError(f"not plain data: {type(obj).__name__} (only plain data reaches the candidate)")

    def request(self, request: list, args: list | None = None) -> object:
        try:
            data = wire.dumps(request)
        except wire.WireError as error:
            raise self._spoil(f"unsendable request: {error}") from None
        with self._lock:
            self._send_call(data)
            kind, body = self._recv_answer()
        if kind != "A":  # the parent's word that the candidate is gone
            raise self._spoil(f"gone ({body.decode('utf-8', 'replace')[:100]})")
        # No text of the candidate's goes into a reason: outcomes reach the trainer, and must not carry its data.
        try:
            reply = wire.loads(body)
            if reply[0] == "ok" and len(reply) == 3 and type(reply[2]) is list:
                value = wire.from_tree(reply[1], self.remote)
                self._write_back(args or [], reply[2])
                return value
        except (wire.WireError, MemoryError, RecursionError):
            raise self._spoil("unreadable answer") from None
        if reply[0] == "err" and len(reply) == 3 and type(reply[1]) is str and type(reply[2]) is str:
            raise _rebuild(reply[1], reply[2])
        raise self._spoil("unsendable result" if reply[0] == "bad" else "unreadable answer")

    def _write_back(self, args: list, changed: list) -> None:
        """Apply the candidate's in-place changes to the test's own list/dict/set arguments."""
        for entry in changed:
            if not (type(entry) is list and len(entry) == 2 and type(entry[0]) is int and 0 <= entry[0] < len(args)):
                raise wire.WireError("malformed changed argument")
            original, new = args[entry[0]], wire.from_tree(entry[1], self.remote)
            if type(original) not in _MUTABLE or type(new) is not type(original):
                raise wire.WireError("malformed changed argument")
            if type(original) is list:
                original[:] = new
            else:
                original.clear()
                original.update(new)

    def call(self, handle: int, args: tuple, kwargs: dict) -> object:
        args = list(args)
        try:
            request = ["call", handle, wire.to_tree(args, self._handle_of), wire.to_tree(kwargs, self._handle_of)]
        except wire.WireError as error:
            raise self._spoil(str(error)) from None
        return self.request(request, args)


class Remote:
    """An object that lives in the candidate's process. Calls, attribute reads and iteration are forwarded;
    comparing it, hashing it or taking its truth value raises, so a lying ``__eq__`` never runs here."""

    __slots__ = ("__link", "__handle")

    def __init__(self, link: Link, handle: int) -> None:
        self.__link, self.__handle = link, handle

    def __call__(self, *args, **kwargs):
        return self.__link.call(self.__handle, args, kwargs)

    def __getattr__(self, name: str):
        if name.startswith("__"):  # protocol lookups (copy, pickle, numpy) stay here
            raise AttributeError(name)
        return self.__link.request(["attr", self.__handle, name])

    def __iter__(self):
        return self.__link.request(["iter", self.__handle])

    def __next__(self):
        return self.__link.request(["next", self.__handle])

    def __repr__(self) -> str:
        return f"<candidate object {self.__handle}>"

    def _refuse(self, *_args):
        raise TypeError("an object from the candidate's process can't be compared or tested here: only plain data")

    __eq__ = __ne__ = __lt__ = __le__ = __gt__ = __ge__ = __bool__ = _refuse
    __hash__ = None


class RemoteFunction(Remote):
    """A top-level ``def`` of the candidate: it can only be called (no attributes to fake a module with)."""

    __slots__ = ()

    def __getattr__(self, name: str):
        raise AttributeError(name)

    def __iter__(self):
        raise TypeError("a candidate function is not iterable")


def _stdlib_module(name: str) -> types.ModuleType | None:
    top = name.split(".")[0]
    if top not in sys.stdlib_module_names or top in _NOISY_MODULES or top.startswith("_"):
        return None
    try:
        return importlib.import_module(name)
    except Exception:  # noqa: BLE001 - refused by the audit hook, or not built here
        return None


def namespace_for(entries: object) -> dict:
    """The tests' namespace from the candidate's ``names`` answer. The candidate can't redefine a builtin
    (``abs``, ``len``) for the tests, and a stdlib module name is the real module unless the candidate bound
    it to a plain ``def``."""
    namespace: dict = {"__name__": "__test__"}
    if type(entries) is not list:
        raise wire.WireError("malformed names")
    for entry in entries:
        if not (type(entry) is list and len(entry) == 3 and type(entry[0]) is str and type(entry[1]) is str):
            raise wire.WireError("malformed names")
        kind, name, value = entry
        if not name.isidentifier() or name.startswith("__") or hasattr(builtins, name):
            continue
        if kind == "function" and type(value) is Remote:
            namespace[name] = RemoteFunction(value._Remote__link, value._Remote__handle)
        elif name in sys.stdlib_module_names:
            module = _stdlib_module(name)
            if module is not None:
                namespace[name] = module
        elif kind == "module" and type(value) is str and name in (value.split(".")[0], value.split(".")[-1]):
            module = _stdlib_module(value)  # `from os import path as p` and third-party modules: not bound
            if module is not None:
                namespace[name] = module
        elif kind == "value":
            namespace[name] = value
    return namespace


def run(tests: list, link: Link, report) -> None:
    """Run each test; ``report(index, passed, outcome)``."""
    try:
        namespace = namespace_for(link.request(["names"]))
    except (wire.WireError, MemoryError, RecursionError):
        namespace, failure = None, "candidate:unreadable names"
    except CandidateGone:
        namespace, failure = None, f"candidate:{link.spoiled}"
    except BaseException as error:  # the candidate's code raised: its nearest builtin type (SyntaxError, ...)
        namespace, failure = None, f"candidate:{type(error).__name__}"
    if namespace is None:
        for index in range(len(tests)):
            report(index, False, failure)
        return
    for index, test in enumerate(tests):
        link.spoiled = None
        try:
            exec(compile(test, f"<test {index}>", "exec"), namespace)
        except BaseException as error:
            passed, outcome = False, type(error).__name__
        else:
            passed, outcome = True, "ok"
        if link.spoiled is not None:
            passed, outcome = False, f"candidate:{link.spoiled}"
        report(index, passed, outcome)
