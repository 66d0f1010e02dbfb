"""Small file helpers every layer uses: atomic JSON, content digests, hard-link copies.

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "x.json"
    >>> write_json(path, {"a": 1}); read_json(path)
    {'a': 1}
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any


def sha256_file(path: str | Path) -> str:
    """The full sha256 (hex) of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_digest(path: str | Path) -> str:
    """A short content digest (the first 16 hex of the sha256), for config hashes and names."""
    return sha256_file(path)[:16]


def folder_digest(path: str | Path, ignore: tuple[str, ...] = ()) -> str:
    """A digest of every file under ``path`` (but the names in ``ignore``): relative names and contents, in
    sorted order. Two folders digest the same exactly when they hold the same files with the same bytes."""
    root = Path(path)
    digest = hashlib.sha256()
    for file in sorted(p for p in root.rglob("*") if p.is_file() and p.name not in ignore):
        digest.update(file.relative_to(root).as_posix().encode("utf-8") + b"\0")
        with file.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")
    tmp.replace(path)  # a kill never leaves a half-written _DONE.json


def link_or_copy(src: str, dst: str) -> None:
    """``shutil.copytree(copy_function=...)`` that hard-links where the file system allows."""
    try:
        os.link(src, dst)  # a finished final is never written again, so sharing its inodes is safe
    except OSError:
        shutil.copy2(src, dst)
