"""Where the registry and its audit log live.

    srl-rlvr registry list --registry sqlite:////srv/srl-rlvr/registry.db
    SRL_RLVR_REGISTRY=sagemaker://acme-math srl-rlvr registry list

``--registry URI`` or ``$SRL_RLVR_REGISTRY``: an MLflow tracking URI (``sqlite:////abs/registry.db``,
``http://mlflow:5000``) or ``sagemaker://GROUP-PREFIX`` (boto3's own credentials and endpoint, e.g.
``AWS_ENDPOINT_URL``). Default: ``registry/registry.db`` (SQLite) in the srl-rlvr cache. The audit log is
``audit.jsonl`` beside a SQLite file, else in the cache under the URI's digest, unless
``$SRL_RLVR_AUDIT_LOG`` names a path.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from srl_rlvr.registry.base import RegistryBackend, RegistryError

REGISTRY_ENV = "SRL_RLVR_REGISTRY"
AUDIT_ENV = "SRL_RLVR_AUDIT_LOG"
AUDIT_FILE = "audit.jsonl"


def registry_uri(explicit: str | None = None) -> str:
    from srl_rlvr.models.provision import cache_root

    uri = explicit or os.environ.get(REGISTRY_ENV)
    if uri:
        return uri
    return f"sqlite:///{(cache_root() / 'registry' / 'registry.db').resolve()}"


def _sqlite_file(uri: str) -> Path | None:
    return Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else None


def audit_path(uri: str) -> Path:
    from srl_rlvr.models.provision import cache_root

    if os.environ.get(AUDIT_ENV):
        return Path(os.environ[AUDIT_ENV]).expanduser()
    db = _sqlite_file(uri)
    if db is not None:
        return db.parent / AUDIT_FILE
    return cache_root() / "registry" / hashlib.sha256(uri.encode()).hexdigest()[:16] / AUDIT_FILE


def open_backend(uri: str) -> RegistryBackend:
    if uri.startswith("sagemaker://"):
        from srl_rlvr.registry.sagemaker import SageMakerRegistry

        prefix = uri[len("sagemaker://"):].strip("/")
        if not prefix:
            raise RegistryError(f"{uri}: give a model package group prefix, e.g. sagemaker://acme-math")
        return SageMakerRegistry(prefix)
    if uri.startswith(("sqlite:///", "http://", "https://", "postgresql://", "mysql://", "databricks")):
        db = _sqlite_file(uri)
        if db is not None:
            db.parent.mkdir(parents=True, exist_ok=True)
        from srl_rlvr.registry.mlflow_backend import MlflowRegistry

        return MlflowRegistry(uri)
    raise RegistryError(f"registry {uri!r}: expected an MLflow tracking URI (sqlite:////abs/path.db, "
                        "http://host:port) or sagemaker://GROUP-PREFIX")
