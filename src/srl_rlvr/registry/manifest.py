"""The stage manifest: the file that makes a folder a finished srl-rlvr model, defined once.

Every stage (SRL, RLVR, SFT, the compare arms' base) saves its model to ``OUT/<stage>/final/`` and writes
``final/srl_rlvr_stage.json`` last, naming the stage, its base model, global step, whether it is a LoRA
adapter and the prompt format (``think_prefill``) it was trained with. Eval, serving and RLVR read it to
prompt a model the way it was trained and to refuse a folder that is not a finished stage.

    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> read_manifest(folder) is None
    True
    >>> write_manifest(folder, {"stage": "srl", "think_prefill": "empty"})
    >>> read_manifest(folder)["stage"], manifest_think_prefill(folder)
    ('srl', 'empty')
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from srl_rlvr.errors import UserInputError

STAGE_MANIFEST = "srl_rlvr_stage.json"
FINAL = "final"  # OUT/<stage>/final: the loadable model a finished stage leaves


def read_manifest(folder: str | Path) -> dict[str, Any] | None:
    """The manifest of a stage's final folder, or None when the folder has none (e.g. a hub model)."""
    path = Path(str(folder)).expanduser() / STAGE_MANIFEST
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserInputError(f"{path}: unreadable stage manifest ({exc})") from None
    if not isinstance(data, dict):
        raise UserInputError(f"{path}: a stage manifest must be a JSON object")
    return data


def write_manifest(folder: str | Path, manifest: dict[str, Any]) -> None:
    path = Path(folder) / STAGE_MANIFEST
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    tmp.replace(path)  # written last and atomically: its presence means the folder is complete


def is_finished_stage(folder: str | Path) -> bool:
    return (Path(str(folder)).expanduser() / STAGE_MANIFEST).is_file()


def manifest_think_prefill(folder: str | Path) -> bool | str:
    """The ``think_prefill`` a model was trained with, per its manifest (False when it has none)."""
    from srl_rlvr.prompts import normalise_prefill

    manifest = read_manifest(folder)
    if manifest is None:
        return False
    try:
        return normalise_prefill(manifest.get("think_prefill", False))
    except ValueError as exc:
        raise UserInputError(f"{Path(str(folder)) / STAGE_MANIFEST}: {exc}") from None
