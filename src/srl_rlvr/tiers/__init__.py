"""Hardware tiers: packaged YAML defaults (cpu, gold, silver, bronze) plus their accelerate/DeepSpeed files.

A tier file has the pipeline-config schema (see :mod:`srl_rlvr.pipelines.config`); ``hardware`` and ``throughput``
are free-form. This module only finds and reads the files (plain YAML, no torch/trl import), so the
``srl-rlvr tiers`` commands stay fast; :func:`srl_rlvr.pipelines.config.load_tier` is the validating loader.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from srl_rlvr.core.names import did_you_mean
from srl_rlvr.core.yamlconf import deep_merge, read_yaml
from srl_rlvr.errors import UserInputError

TIERS_DIR = Path(__file__).parent
ACCELERATE_DIR = TIERS_DIR / "accelerate"
DEEPSPEED_DIR = TIERS_DIR / "deepspeed"


def tier_names() -> list[str]:
    """Names of the packaged tiers, sorted.

    >>> {"cpu", "gold", "silver", "bronze"} <= set(tier_names())
    True
    """
    return sorted(p.stem for p in TIERS_DIR.glob("*.yaml"))


def _looks_like_path(value: str) -> bool:
    return value.endswith((".yaml", ".yml")) or "/" in value or Path(value).is_file()


def tier_file(name_or_path: str) -> Path:
    """A tier name (``gold``) or a YAML path → the file; UserInputError naming the known tiers if neither."""
    if _looks_like_path(name_or_path):
        path = Path(name_or_path).expanduser()
        if not path.is_file():
            raise UserInputError(f"{name_or_path}: no such tier/config file")
        return path
    return named_tier(name_or_path)


def named_tier(name: str) -> Path:
    """A packaged tier's file; UserInputError naming the known tiers (and the closest) if there is none."""
    path = TIERS_DIR / f"{name}.yaml"
    if not path.is_file():
        known = tier_names()
        raise UserInputError(f"unknown tier {name!r}{did_you_mean(name, known, cutoff=0.5)}; "
                             f"known tiers: {', '.join(known) or 'none'} (or give a YAML path)")
    return path


def _read(path: Path) -> dict[str, Any]:
    data = read_yaml(path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserInputError(f"{path}: expected a mapping of config keys, got {type(data).__name__}")
    return data


def read_tier(name_or_path: str) -> tuple[str, dict[str, Any]]:
    """(label, raw YAML) of a tier, or of a config file merged over the tier it names with ``tier:``."""
    path = tier_file(name_or_path)
    data = _read(path)
    base = data.get("tier")
    if base:
        data = deep_merge(_read(named_tier(str(base))), {k: v for k, v in data.items() if k != "tier"})
    label = path.stem if path.parent == TIERS_DIR else str(path)
    return label, data
