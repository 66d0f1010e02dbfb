"""The model registry's interface: versions with lineage, a status, and aliases (``models:/N@champion``).

    srl-rlvr registry register --name demo-math --model out/demo/models/srl_rlvr \
        --eval out/demo/eval/test/srl_rlvr/metrics.json

Two backends implement :class:`RegistryBackend` and pass the same contract tests
(``tests/registry/test_contract.py``): MLflow's model registry (``registry.mlflow_backend``; the default,
a SQLite store, or any MLflow server) and the SageMaker Model Registry (``registry.sagemaker``; model
package groups, approval status). Backends only store; the lifecycle (the eval gate, promotion,
rollback) and the audit log sit above them in ``registry.lifecycle`` and ``registry.audit``.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import Any

from srl_rlvr.errors import UserInputError

# candidate: registered, not judged; approved: passed the gate (or forced) at least once; rejected; archived.
STATUSES = ("candidate", "approved", "rejected", "archived")
CHAMPION = "champion"
_NAME = re.compile(r"^[A-Za-z0-9](-*[A-Za-z0-9]){0,62}$")  # SageMaker's group-name rule, so both backends agree
_RESERVED_ALIASES = re.compile(r"^(latest|v\d+)$", re.IGNORECASE)  # MLflow keeps these for itself
_ALIAS = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
_META_KEY = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")  # registry-wide settings: what both backends can store


class RegistryError(UserInputError):
    """An unknown name, version or alias; a refused transition. Printed as one line by the CLI."""


@dataclass
class Lineage:
    """Where a version came from: what a reviewer needs to reproduce it or judge it."""

    stage: str  # srl | rlvr | sft | distill | base
    base_model: str
    kind: str  # "adapter" (LoRA) or "full"
    config_hash: str = ""
    training_run_id: str = ""  # the MLflow run of the stage, when tracked
    git_commit: str = ""
    data_sha256: dict[str, str] = field(default_factory=dict)  # data file name -> sha256
    eval_metrics: dict[str, float] = field(default_factory=dict)  # e.g. {"greedy_accuracy": 0.18, "n": 100}
    eval_set_digest: str = ""  # sha256 of the eval set the metrics were computed on
    eval_predictions: str = ""  # path of the predictions.jsonl beside the metrics (the gate's paired test)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Lineage:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


@dataclass
class ModelVersion:
    name: str
    version: str  # "1", "2", ... as the backend numbers them
    source: str  # the model folder (or URI) the version points at
    status: str
    lineage: Lineage
    aliases: list[str] = field(default_factory=list)
    created_at: str = ""  # ISO 8601, UTC

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


def check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise RegistryError(f"model name {name!r}: use 1-63 letters, digits and hyphens, starting and ending with a "
                            "letter or digit")
    return name


def check_alias(alias: str) -> str:
    if isinstance(alias, str) and _RESERVED_ALIASES.match(alias):
        raise RegistryError(f"alias {alias!r} is reserved (MLflow uses 'latest' and 'v<N>' itself)")
    if not isinstance(alias, str) or not _ALIAS.match(alias) or alias.isdigit():
        raise RegistryError(f"alias {alias!r}: use 1-32 lowercase letters, digits, '_' or '-', starting with a letter")
    return alias


def check_meta_key(key: str) -> str:
    if not isinstance(key, str) or not _META_KEY.match(key):
        raise RegistryError(f"registry setting {key!r}: use 1-100 letters, digits, '_', '.' or '-'")
    return key


def check_version(name: str, version: str) -> str:
    version = str(version)
    if not version.isdigit():
        raise RegistryError(f"{name}@{version}: a version is a number (1, 2, ...)")
    return str(int(version))


class RegistryBackend(ABC):
    """Storage of versions and aliases. Every method raises RegistryError for an unknown name/version."""

    uri: str

    @abstractmethod
    def register(self, name: str, source: str, lineage: Lineage) -> ModelVersion:
        """A new version of ``name`` (created if new), status ``candidate``."""

    @abstractmethod
    def get(self, name: str, version: str) -> ModelVersion: ...

    @abstractmethod
    def versions(self, name: str) -> list[ModelVersion]:
        """Every version of ``name``, oldest first."""

    @abstractmethod
    def names(self) -> list[str]: ...

    @abstractmethod
    def set_status(self, name: str, version: str, status: str) -> None: ...

    @abstractmethod
    def set_alias(self, name: str, alias: str, version: str) -> None:
        """Point ``alias`` at ``version`` (moving it if it pointed elsewhere)."""

    @abstractmethod
    def delete_alias(self, name: str, alias: str) -> None: ...

    @abstractmethod
    def alias_version(self, name: str, alias: str) -> str | None:
        """The version ``alias`` points at, or None."""

    @abstractmethod
    def get_meta(self, key: str) -> str | None:
        """A registry-wide string setting (the audit log's head hash lives here), or None."""

    @abstractmethod
    def set_meta(self, key: str, value: str) -> None: ...

    def resolve(self, name: str, ref: str) -> ModelVersion:
        """``ref`` is a version number or an alias."""
        if ref.isdigit():
            return self.get(name, ref)
        version = self.alias_version(name, check_alias(ref))
        if version is None:
            raise RegistryError(f"{name}@{ref}: no version holds the alias {ref!r}")
        return self.get(name, version)


def parse_ref(text: str) -> tuple[str, str]:
    """``N@VERSION``, ``N@ALIAS`` or ``models:/N@ALIAS`` → (name, ref)."""
    body = text[len("models:/"):] if text.startswith("models:/") else text
    name, sep, ref = body.partition("@")
    if not sep and "/" in body:  # models:/N/3 (MLflow's version form)
        name, _, ref = body.partition("/")
    if not name or not ref:
        raise RegistryError(f"{text!r}: expected NAME@VERSION or NAME@ALIAS (e.g. demo-math@champion)")
    return check_name(name), ref
