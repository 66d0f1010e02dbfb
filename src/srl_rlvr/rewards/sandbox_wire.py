"""Plain data across the code sandbox's process boundary: an exact-type whitelist, as JSON, never pickle.

Both sandbox children load this file from source (stdlib only, no package imports), and the parent's tests
import it. A value becomes a JSON tree: ``None``, ``bool``, ``int``, ``float`` (``NaN``/``Infinity``
included) and ``str`` stand for themselves; every JSON array is a tagged container and JSON objects never
occur::

    ["l", ...] list    ["t", ...] tuple    ["s", ...] set    ["f", ...] frozenset
    ["d", k1, v1, ...] dict    ["b", "<hex>"] bytes    ["h", n] handle n: an object that stays in the
                                                       candidate's process (see sandbox_candidate.py)

Only exact types count (``type(v) is int``, never ``isinstance``): an ``int`` subclass with a lying
``__eq__`` is no plain data. Decoding builds only these builtin types, so nothing the candidate sends can
run code in the process that decodes it.

>>> tree = to_tree({"a": [1, 2.5, (None, True)], 3: {b"x"}})
>>> tree
['d', 'a', ['l', 1, 2.5, ['t', None, True]], 3, ['s', ['b', '78']]]
>>> from_tree(tree) == {"a": [1, 2.5, (None, True)], 3: {b"x"}}
True
>>> class Liar(int):
...     def __eq__(self, other):
...         return True
>>> try:
...     to_tree([Liar(1)])
... except WireError as error:
...     print(error)
not plain data: Liar
"""

from __future__ import annotations

import json

MAX_DEPTH = 100  # nesting levels, both ways
MAX_NODES = 1_000_000  # scalars and containers in one value
MAX_MESSAGE_BYTES = 8 * 1024 * 1024  # one JSON message; the parent drops a child that sends more

_SCALARS = (type(None), bool, int, float, str)
_SEQUENCES = {list: "l", tuple: "t", set: "s", frozenset: "f"}
_BUILD = {"l": list, "t": tuple, "s": set, "f": frozenset}


class WireError(ValueError):
    """A value that is not plain data, or a message that is not well formed."""


def to_tree(value: object, handle_of=None) -> object:
    """``value`` as a JSON-ready tree. A non-plain object becomes ``["h", handle_of(obj)]`` when
    ``handle_of`` is given, else :class:`WireError`."""
    budget = [MAX_NODES]

    def walk(item: object, depth: int) -> object:
        budget[0] -= 1
        if budget[0] < 0 or depth > MAX_DEPTH:
            raise WireError("value too large or too deeply nested")
        kind = type(item)
        if kind in _SCALARS:
            return item
        if kind is bytes:
            return ["b", item.hex()]
        tag = _SEQUENCES.get(kind)
        if tag is not None:
            return [tag, *(walk(element, depth + 1) for element in item)]
        if kind is dict:
            tree: list = ["d"]
            for key, element in item.items():
                tree.append(walk(key, depth + 1))
                tree.append(walk(element, depth + 1))
            return tree
        if handle_of is None:
            raise WireError(f"not plain data: {kind.__name__}")
        return ["h", handle_of(item)]

    return walk(value, 0)


def from_tree(tree: object, make_handle=None) -> object:
    """The value a tree from :func:`to_tree` stands for. ``["h", n]`` becomes ``make_handle(n)`` (when
    given, else :class:`WireError`); anything malformed raises :class:`WireError`."""
    budget = [MAX_NODES]

    def walk(node: object, depth: int) -> object:
        budget[0] -= 1
        if budget[0] < 0 or depth > MAX_DEPTH:
            raise WireError("value too large or too deeply nested")
        kind = type(node)
        if kind in _SCALARS:
            return node
        if kind is not list or not node or type(node[0]) is not str:
            raise WireError("malformed value")
        tag, items = node[0], node[1:]
        if tag in _BUILD:
            try:
                return _BUILD[tag](walk(item, depth + 1) for item in items)
            except TypeError as error:  # an unhashable member of a set
                raise WireError(str(error)) from None
        if tag == "d" and len(items) % 2 == 0:
            result = {}
            for index in range(0, len(items), 2):
                key = walk(items[index], depth + 1)
                try:
                    result[key] = walk(items[index + 1], depth + 1)
                except TypeError as error:  # an unhashable key
                    raise WireError(str(error)) from None
            return result
        if tag == "b" and len(items) == 1 and type(items[0]) is str:
            try:
                return bytes.fromhex(items[0])
            except ValueError:
                raise WireError("malformed bytes") from None
        if tag == "h" and len(items) == 1 and type(items[0]) is int and make_handle is not None:
            return make_handle(items[0])
        raise WireError("malformed value")

    return walk(tree, 0)


def dumps(message: list) -> bytes:
    """One protocol message (a JSON array of trees and strings) as bytes."""
    try:
        data = json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass")
    except (ValueError, TypeError, RecursionError) as error:  # e.g. an int beyond the str-digits limit
        raise WireError(str(error)) from None
    if len(data) > MAX_MESSAGE_BYTES:
        raise WireError("message too large")
    return data


def loads(data: bytes) -> list:
    """A message from :func:`dumps`; :class:`WireError` unless it is a JSON array."""
    if len(data) > MAX_MESSAGE_BYTES:
        raise WireError("message too large")
    try:
        message = json.loads(data.decode("utf-8", "surrogatepass"))
    except (ValueError, RecursionError) as error:
        raise WireError(f"malformed message: {type(error).__name__}") from None
    if type(message) is not list or not message or type(message[0]) is not str:
        raise WireError("malformed message")
    return message
