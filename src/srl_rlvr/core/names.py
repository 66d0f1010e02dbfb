"""One name table for every registry (rewards, data loaders, serving backends, route-target backends).

verl's ``register(name)`` shape: names are unique, so registering a taken name raises instead of silently
replacing what another module registered, and an unknown name is answered with the close matches.

    >>> table = NameTable("colour")
    >>> @table.register("red")
    ... def red():
    ...     return "#f00"
    >>> table.get("red")()
    '#f00'
    >>> table.get("rde")
    Traceback (most recent call last):
    ...
    srl_rlvr.errors.UserInputError: unknown colour 'rde' (did you mean 'red'?); known colours: red
    >>> table.register("red")(red)
    Traceback (most recent call last):
    ...
    ValueError: colour 'red' is already registered (to red)
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from srl_rlvr.errors import UserInputError

T = TypeVar("T")


def did_you_mean(name: str, known: list[str] | tuple[str, ...], cutoff: float = 0.6) -> str:
    """`` (did you mean 'x'?)`` for the closest known name, or '' when nothing is close."""
    close = difflib.get_close_matches(str(name), list(known), n=1, cutoff=cutoff)
    return f" (did you mean '{close[0]}'?)" if close else ""


class NameTable(Generic[T]):
    """A name → value mapping that refuses duplicate names and explains unknown ones.

    ``kind`` is what the names name ("reward", "serving backend"), used in error messages. ``lazy`` maps
    names to a loader called on first ``get`` (for entries whose module imports something heavy); the loader
    must register the name.
    """

    def __init__(self, kind: str, plural: str | None = None, lazy: dict[str, Callable[[], None]] | None = None):
        self.kind = kind
        self.plural = plural or f"{kind}s"
        self._entries: dict[str, T] = {}
        self._lazy = dict(lazy or {})

    def add(self, name: str, value: T) -> T:
        if not name or not isinstance(name, str):
            raise ValueError(f"{self.kind} name must be a non-empty string, got {name!r}")
        if name in self._entries:
            taken = self._entries[name]
            raise ValueError(f"{self.kind} {name!r} is already registered (to {getattr(taken, '__name__', taken)!s})")
        self._entries[name] = value
        return value

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator form of :meth:`add`."""
        if not name or not isinstance(name, str):
            raise ValueError(f"{self.kind} name must be a non-empty string, got {name!r}")

        def decorator(value: T) -> T:
            return self.add(name, value)

        return decorator

    def remove(self, name: str) -> None:
        """Drop a name (tests and doctests that register a throwaway entry)."""
        self._entries.pop(name, None)

    def names(self) -> list[str]:
        return sorted({*self._entries, *self._lazy})

    def get(self, name: str) -> T:
        if name not in self._entries and name in self._lazy:
            self._lazy[name]()
        if name not in self._entries:
            known = self.names()
            raise UserInputError(
                f"unknown {self.kind} {name!r}{did_you_mean(name, known)}; known {self.plural}: {', '.join(known)}"
            )
        return self._entries[name]

    def __contains__(self, name: object) -> bool:
        return name in self._entries or name in self._lazy

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())
