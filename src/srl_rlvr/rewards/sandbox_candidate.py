"""Candidate child of the code sandbox: run the candidate's code, then answer calls until its pipe closes.

Loaded from source into the child that runs the candidate (stdlib only; see ``_sandbox_child.py``). Calls come
from the reference child (``sandbox_reference.py``) by way of the parent. Answers leave as plain data
(``sandbox_wire.py``); every other object stays here and is named by a handle number. Nothing in this module is
trusted: the candidate may rewrite it or write to its pipe directly, and by doing so changes only its own answers.

Requests and answers (JSON arrays):

* ``["names"]`` -> ``["ok", tree]``: a tree of ``[kind, name, value]`` per top-level name, kind ``module``
  (value: the module's name), ``function`` (a ``def``; value: its handle) or ``value`` (plain data or a handle);
* ``["call", handle, args, kwargs]`` -> ``["ok", result, [[i, arg], ...]]``: also the new value of each list,
  dict or set argument the call changed, so in-place functions work;
* ``["attr", handle, name]``, ``["iter", handle]``, ``["next", handle]`` -> ``["ok", result, []]``;
* a raised exception -> ``["err", its type's name, its nearest builtin ancestor's name]``; a result that cannot
  be sent -> ``["bad", why]``.
"""

from __future__ import annotations

import builtins
import types

try:
    from . import sandbox_wire as wire
except ImportError:  # in the child: a module loaded from source, no package around it
    import sandbox_wire as wire

MAX_HANDLES = 100_000
_MUTABLE = (list, dict, set)


class _Objects:
    """Handle numbers for the objects that stay here; the same object keeps its number."""

    def __init__(self) -> None:
        self.by_handle: dict[int, object] = {}
        self.by_id: dict[int, int] = {}

    def handle_of(self, obj: object) -> int:
        handle = self.by_id.get(id(obj))
        if handle is None:  # the table keeps obj alive, so id(obj) stays unique
            if len(self.by_handle) >= MAX_HANDLES:
                raise wire.WireError("too many objects")
            handle = len(self.by_handle) + 1
            self.by_handle[handle] = obj
            self.by_id[id(obj)] = handle
        return handle

    def get(self, handle: int) -> object:
        return self.by_handle[handle]


def _builtin_base(error_type: type) -> str:
    for cls in error_type.__mro__:
        if getattr(builtins, cls.__name__, None) is cls:
            return cls.__name__
    return "Exception"


def _names(namespace: dict) -> list:
    entries = []
    for name, value in list(namespace.items()):
        if type(name) is not str or name.startswith("__"):
            continue
        if isinstance(value, types.ModuleType):
            module_name = getattr(value, "__name__", "")
            entries.append(["module", name, module_name if type(module_name) is str else ""])
        else:
            entries.append(["function" if type(value) is types.FunctionType else "value", name, value])
    return entries


def _answer(request: list, namespace: dict, objects: _Objects, load_error: BaseException | None):
    """(result, the call's arguments and how they were sent) for one request; exceptions are the candidate's."""
    op = request[0]
    if op == "names":
        if load_error is not None:
            raise load_error
        return _names(namespace), (), ()
    target = objects.get(request[1])
    if op == "call":
        args = wire.from_tree(request[2], objects.get)
        kwargs = wire.from_tree(request[3], objects.get)
        if type(args) is not list or type(kwargs) is not dict:
            raise wire.WireError("malformed call")
        return target(*args, **kwargs), args, request[2][1:]
    if op == "attr" and type(request[2]) is str and not request[2].startswith("__"):
        return getattr(target, request[2]), (), ()
    if op == "iter":
        return iter(target), (), ()
    if op == "next":
        return next(target), (), ()
    raise wire.WireError(f"unknown request {op!r}")


def _changed(args, sent, objects: _Objects) -> list:
    """[index, new tree] for each list, dict or set argument the call changed in place."""
    changed = []
    for index, (arg, tree) in enumerate(zip(args, sent)):
        if type(arg) in _MUTABLE:
            now = wire.to_tree(arg, objects.handle_of)
            if now != tree:
                changed.append([index, now])
    return changed


def serve(code: str, send, recv) -> None:
    """Run ``code``, then answer each request ``recv()`` returns (bytes; None when the pipe closed)."""
    namespace: dict = {"__name__": "__candidate__"}
    objects = _Objects()
    # Code that patches builtins.len & co. would break this loop, not just its own answers: undo that each time
    # control comes back from the candidate.
    pristine, restore = dict(builtins.__dict__), builtins.__dict__.update
    load_error = None
    try:
        exec(compile(code, "<candidate>", "exec"), namespace)
    except BaseException as error:  # SystemExit included: the tests still need a verdict
        load_error = error
    finally:
        restore(pristine)
    while True:
        data = recv()
        if data is None:
            return
        try:
            try:
                result, args, sent = _answer(wire.loads(data), namespace, objects, load_error)
            finally:
                restore(pristine)
            reply = ["ok", wire.to_tree(result, objects.handle_of), _changed(args, sent, objects)]
        except wire.WireError as error:  # too big, too deep, a malformed request
            reply = ["bad", str(error)[:200]]
        except BaseException as error:
            reply = ["err", type(error).__name__, _builtin_base(type(error))]
        try:
            send(wire.dumps(reply))
        except wire.WireError as error:  # e.g. an int beyond the str-digits limit
            send(wire.dumps(["bad", str(error)[:200]]))
