"""YAML configs into dataclasses: key checks with did-you-mean, type coercion, deep merge, dotted overrides.

One implementation for every config in the product (pipeline, routing, tier profiles, serving's YAML under
its pydantic-settings front), so a wrong key reads the same everywhere:

    >>> check_keys({"max_step": 3}, {"max_steps": int}, "run.yaml", "srl")
    Traceback (most recent call last):
    ...
    srl_rlvr.errors.UserInputError: run.yaml: section 'srl': unknown key 'max_step' (did you mean 'max_steps'?)
    >>> expand_dotted({"srl.max_steps": 5, "model": "m"})
    {'srl': {'max_steps': 5}, 'model': 'm'}
    >>> deep_merge({"srl": {"a": 1, "b": 2}}, {"srl": {"b": 3}})
    {'srl': {'a': 1, 'b': 3}}
"""

from __future__ import annotations

import copy
import dataclasses
import enum
import re
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from srl_rlvr.core.names import did_you_mean
from srl_rlvr.errors import UserInputError

OVERRIDES_SOURCE = "--set"
_FLOAT_TEXT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")  # PyYAML reads "1e-5" as a string


def dataclass_schema(cls: type) -> dict[str, Any]:
    """A dataclass's init fields and their resolved types: the keys its YAML section may set."""
    return {f.name: typing.get_type_hints(cls)[f.name] for f in dataclasses.fields(cls) if f.init}


# --- type checks -----------------------------------------------------------------------------------
def type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "").replace("NoneType", "None")


def coerce(value: Any, tp: Any) -> tuple[bool, Any]:
    """(value fits tp, the value to keep). Lenient on types we cannot check (they are checked on build)."""
    if tp is Any or tp is typing.Any:
        return True, value
    if tp is type(None) or tp is None:
        return value is None, value
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        # Exact type matches first: 3 stays an int in ``int | float``, "7" stays a str in ``str | float``.
        for arg in args:
            if exact_type(value, arg):
                return True, value
        for arg in args:
            ok, new = coerce(value, arg)
            if ok:
                return True, new
        return False, value
    if origin is typing.Literal:
        return value in typing.get_args(tp), value
    if origin in (list, tuple):
        if not isinstance(value, list):
            return False, value
        (item_tp, *_) = typing.get_args(tp) or (Any,)
        out = []
        for item in value:
            ok, new = coerce(item, item_tp)
            if not ok:
                return False, value
            out.append(new)
        return True, out
    if origin is dict or tp is dict:
        return isinstance(value, dict), value
    if tp is bool:
        return isinstance(value, bool), value
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return True, value
        if isinstance(value, str) and _FLOAT_TEXT.match(value.strip()):
            return True, float(value)
        return False, value
    if tp is str:
        return isinstance(value, str), value
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return isinstance(value, tp) or value in {m.value for m in tp}, value
    if tp is list:
        return isinstance(value, list), value
    return True, value  # an object type (e.g. ParallelismConfig): leave it to the class itself


def exact_type(value: Any, tp: Any) -> bool:
    if tp is type(None) or tp is None:
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp in (int, float):
        return isinstance(value, tp) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    return False


# --- keys ------------------------------------------------------------------------------------------
def unknown_key(where: str, section: str | None, key: str, allowed: list[str]) -> UserInputError:
    place = f"section '{section}'" if section else "top level"
    return UserInputError(f"{where}: {place}: unknown key '{key}'{did_you_mean(key, allowed)}")


def check_keys(raw: dict[str, Any], schema: dict[str, Any], where: str, section: str | None,
               refuse: Callable[[str], str | None] | None = None) -> None:
    """Check names and types of one mapping in place (coercing e.g. "1e-5" to a float). ``refuse(key)``
    may return a reason a known key must not be set here (e.g. a field the pipeline owns)."""
    for key in list(raw):
        if not isinstance(key, str):
            raise UserInputError(f"{where}: {section or 'top level'}: key {key!r} is not a string")
        if key not in schema:
            raise unknown_key(where, section, key, list(schema))
        if refuse is not None and (why := refuse(key)):
            raise UserInputError(f"{where}: section '{section}': '{key}' {why}")
        ok, value = coerce(raw[key], schema[key])
        name = f"{section}.{key}" if section else key
        if not ok:
            raise UserInputError(
                f"{where}: '{name}' must be {type_name(schema[key])}, got {type(raw[key]).__name__} {raw[key]!r}"
            )
        raw[key] = value


def unknown_value(where: str, key: str, value: str, allowed: tuple[str, ...]) -> UserInputError:
    hint = did_you_mean(value, allowed, cutoff=0.5)
    return UserInputError(f"{where}: '{key}': unknown value '{value}'{hint}; choose from {', '.join(allowed)}")


# --- paths, merging, overrides ---------------------------------------------------------------------
def resolve_path(value: str, base: Path) -> str:
    """``value`` made absolute against ``base`` (a config file's own folder); ``~`` expanded."""
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else (base / path).resolve())


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Mappings merge key by key; anything else (lists, scalars, null) in ``over`` replaces."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def expand_dotted(overrides: dict[str, Any]) -> dict[str, Any]:
    """``{"srl.max_steps": 5}`` → ``{"srl": {"max_steps": 5}}`` (nested dicts pass through)."""
    out: dict[str, Any] = {}
    for key, value in overrides.items():
        parts = str(key).split(".")
        if not all(parts):
            raise UserInputError(f"{OVERRIDES_SOURCE}: bad key {key!r}")
        nested: Any = value
        for part in reversed(parts[1:]):
            nested = {part: nested}
        out = deep_merge(out, {parts[0]: nested})
    return out


def parse_set_options(items: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """``("srl.max_steps=5", "stages=[srl,eval]")`` → dotted overrides; values are parsed as YAML."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise UserInputError(f"{OVERRIDES_SOURCE} {item!r}: expected KEY=VALUE, e.g. srl.max_steps=5")
        try:
            out[key.strip()] = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError as exc:
            raise UserInputError(f"{OVERRIDES_SOURCE} {item!r}: value is not valid YAML: {exc}") from None
    return out


# --- loading ---------------------------------------------------------------------------------------
def read_yaml(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"{path}: no such config file")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise UserInputError(f"{path}: not valid YAML: {exc}") from None
