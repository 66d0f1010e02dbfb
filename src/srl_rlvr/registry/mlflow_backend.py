"""The registry on MLflow's own model registry: a SQLite file (``sqlite:////abs/registry.db``) or any MLflow server.

    MlflowRegistry("sqlite:////work/out/registry.db")
    MlflowRegistry("http://127.0.0.1:5000")

How the interface maps onto MLflow:

* a name is a registered model; a version is a model version (MLflow numbers them 1, 2, ...);
* the lineage is the JSON of :class:`Lineage` in the model-version tag ``srl_rlvr.lineage`` (split into
  ``srl_rlvr.lineage.0``, ``.1``, ... plus ``srl_rlvr.lineage.parts`` above 5000 characters, the column size of
  MLflow servers before 3.2); the status is the tag ``srl_rlvr.status``;
* aliases are MLflow's registered-model aliases (``models:/demo-math@champion`` works in MLflow too);
* registry-wide settings (:meth:`get_meta`) are tags of the reserved registered model ``srl-rlvr-registry-meta``,
  which :meth:`names` leaves out.

A local folder is stored as the source ``srl-rlvr-file:///abs/path``: an MLflow server refuses plain paths and
``file://`` URIs as a model-version source unless they lie inside a run's artifacts. Any other source (``s3://...``)
is stored as given. MLflow is imported on first use, so importing this module stays cheap.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from srl_rlvr.registry.base import (
    STATUSES,
    Lineage,
    ModelVersion,
    RegistryBackend,
    RegistryError,
    check_alias,
    check_meta_key,
    check_name,
    check_version,
)

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

META_MODEL = "srl-rlvr-registry-meta"
STATUS_TAG = "srl_rlvr.status"
LINEAGE_TAG = "srl_rlvr.lineage"
LINEAGE_PARTS_TAG = "srl_rlvr.lineage.parts"
LOCAL_SOURCE_SCHEME = "srl-rlvr-file://"
TAG_CHUNK = 5000  # model_version_tags.value was VARCHAR(5000) before MLflow 3.2; registered-model tags still are
MAX_LINEAGE_CHARS = 1_000_000
MAX_META_CHARS = 5000
_QUIET_LOGGERS = ("alembic", "mlflow.store.db.utils", "mlflow.store.model_registry.abstract_store")


def _quiet_mlflow_logs() -> None:
    """MLflow logs every schema migration of a new SQLite store and every wait for a version at INFO."""
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)




def encode_source(source: str) -> str:
    return LOCAL_SOURCE_SCHEME + source if source.startswith("/") else source


def decode_source(source: str) -> str:
    return source[len(LOCAL_SOURCE_SCHEME):] if source.startswith(LOCAL_SOURCE_SCHEME) else source


def lineage_tags(lineage: Lineage) -> dict[str, str]:
    text = json.dumps(lineage.to_dict(), sort_keys=True)
    if len(text) <= TAG_CHUNK:
        return {LINEAGE_TAG: text}
    if len(text) > MAX_LINEAGE_CHARS:
        raise RegistryError(f"lineage is {len(text)} characters of JSON; the MLflow registry keeps at most "
                            f"{MAX_LINEAGE_CHARS}")
    parts = [text[i:i + TAG_CHUNK] for i in range(0, len(text), TAG_CHUNK)]
    tags = {f"{LINEAGE_TAG}.{i}": part for i, part in enumerate(parts)}
    tags[LINEAGE_PARTS_TAG] = str(len(parts))
    return tags


def lineage_from_tags(tags: dict[str, str]) -> Lineage:
    if LINEAGE_TAG in tags:
        text = tags[LINEAGE_TAG]
    elif LINEAGE_PARTS_TAG in tags:
        text = "".join(tags.get(f"{LINEAGE_TAG}.{i}", "") for i in range(int(tags[LINEAGE_PARTS_TAG])))
    else:  # a version registered outside srl-rlvr
        return Lineage(stage="", base_model="", kind="")
    return Lineage.from_dict(json.loads(text))


def iso_utc_ms(timestamp_ms: int | None) -> str:
    if not timestamp_ms:
        return ""
    return datetime.fromtimestamp(timestamp_ms / 1000, tz=timezone.utc).isoformat(timespec="milliseconds")


def _first_line(error: Exception) -> str:
    text = getattr(error, "message", None) or str(error)
    return str(text).strip().splitlines()[0] if str(text).strip() else type(error).__name__


class MlflowRegistry(RegistryBackend):
    """Registry versions as MLflow model versions; see the module docstring for the mapping."""

    def __init__(self, uri: str):
        _quiet_mlflow_logs()
        from mlflow.tracking import MlflowClient

        self.uri = uri
        try:
            self.client: MlflowClient = MlflowClient(tracking_uri=uri, registry_uri=uri)
        except Exception as error:  # an unusable URI: one line, not MLflow's traceback
            raise RegistryError(f"MLflow registry {uri}: {_first_line(error)}") from error

    # -- errors ---------------------------------------------------------------------------------------------------

    def _call(self, fn, *args: Any, name: str, version: str | None = None, **kwargs: Any) -> Any:
        """Run one MLflow client call; a missing model/version becomes a RegistryError that names it."""
        from mlflow.exceptions import MlflowException

        try:
            return fn(*args, **kwargs)
        except MlflowException as error:
            if error.error_code == "RESOURCE_DOES_NOT_EXIST":
                raise self._missing(name, version) from None
            raise RegistryError(f"MLflow registry {self.uri}: {_first_line(error)}") from None
        except RegistryError:
            raise
        except Exception as error:  # a server that does not answer, a broken store
            raise RegistryError(f"MLflow registry {self.uri}: {_first_line(error)}") from None

    def _exists(self, name: str) -> bool:
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_registered_model(name)
        except MlflowException as error:
            if error.error_code == "RESOURCE_DOES_NOT_EXIST":
                return False
            raise RegistryError(f"MLflow registry {self.uri}: {_first_line(error)}") from None
        return True

    def _missing(self, name: str, version: str | None) -> RegistryError:
        if version is None or not self._exists(name):
            return RegistryError(f"unknown model {name!r} in the registry {self.uri}")
        return RegistryError(f"{name} has no version {version}")

    def _model(self, name: str):
        check_name(name)
        if name == META_MODEL:
            raise RegistryError(f"unknown model {name!r} in the registry {self.uri}")
        return self._call(self.client.get_registered_model, name, name=name)

    # -- versions -------------------------------------------------------------------------------------------------

    def _to_version(self, mv, aliases: list[str] | None = None) -> ModelVersion:
        tags = dict(mv.tags or {})
        status = tags.get(STATUS_TAG, "candidate")
        return ModelVersion(
            name=mv.name,
            version=str(mv.version),
            source=decode_source(mv.source or ""),
            status=status if status in STATUSES else "candidate",
            lineage=lineage_from_tags(tags),
            aliases=sorted(mv.aliases or []) if aliases is None else sorted(aliases),
            created_at=iso_utc_ms(mv.creation_timestamp),
        )

    def register(self, name: str, source: str, lineage: Lineage) -> ModelVersion:
        from mlflow.exceptions import MlflowException

        check_name(name)
        if name == META_MODEL:
            raise RegistryError(f"{name!r} is reserved for the registry's own settings; pick another name")
        tags = {STATUS_TAG: "candidate", **lineage_tags(lineage)}
        try:
            self.client.create_registered_model(name)
        except MlflowException as error:
            if error.error_code != "RESOURCE_ALREADY_EXISTS":
                raise RegistryError(f"MLflow registry {self.uri}: {_first_line(error)}") from None
        except Exception as error:
            raise RegistryError(f"MLflow registry {self.uri}: {_first_line(error)}") from None
        mv = self._call(self.client.create_model_version, name, source=encode_source(source), tags=tags,
                        await_creation_for=0, name=name)
        return self._to_version(mv, aliases=[])

    def get(self, name: str, version: str) -> ModelVersion:
        check_name(name)
        version = check_version(name, version)
        if name == META_MODEL:
            raise self._missing(name, None)
        mv = self._call(self.client.get_model_version, name, version, name=name, version=version)
        return self._to_version(mv)

    def versions(self, name: str) -> list[ModelVersion]:
        model = self._model(name)
        by_version: dict[str, list[str]] = {}
        for alias, version in (model.aliases or {}).items():
            by_version.setdefault(str(version), []).append(alias)
        found, token = [], None
        while True:
            page = self._call(self.client.search_model_versions, f"name='{name}'", max_results=1000,
                              page_token=token, name=name)
            found.extend(page)
            token = page.token
            if not token:
                break
        found.sort(key=lambda mv: int(mv.version))
        return [self._to_version(mv, aliases=by_version.get(str(mv.version), [])) for mv in found]

    def names(self) -> list[str]:
        found, token = [], None
        while True:
            page = self._call(self.client.search_registered_models, max_results=1000, page_token=token, name="")
            found.extend(model.name for model in page if model.name != META_MODEL)
            token = page.token
            if not token:
                break
        return sorted(found)

    def set_status(self, name: str, version: str, status: str) -> None:
        check_name(name)
        version = check_version(name, version)
        if status not in STATUSES:
            raise RegistryError(f"status {status!r}: expected one of {', '.join(STATUSES)}")
        self._call(self.client.set_model_version_tag, name, version, STATUS_TAG, status, name=name, version=version)

    # -- aliases --------------------------------------------------------------------------------------------------

    def set_alias(self, name: str, alias: str, version: str) -> None:
        check_name(name)
        check_alias(alias)
        version = check_version(name, version)
        self.get(name, version)  # "x has no version 7" rather than MLflow's wording
        self._call(self.client.set_registered_model_alias, name, alias, version, name=name, version=version)

    def delete_alias(self, name: str, alias: str) -> None:
        check_alias(alias)
        model = self._model(name)
        if alias in (model.aliases or {}):
            self._call(self.client.delete_registered_model_alias, name, alias, name=name)

    def alias_version(self, name: str, alias: str) -> str | None:
        check_alias(alias)
        version = (self._model(name).aliases or {}).get(alias)
        return None if version is None else str(version)

    # -- registry-wide settings -----------------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        from mlflow.exceptions import MlflowException

        check_meta_key(key)
        try:
            model = self.client.get_registered_model(META_MODEL)
        except MlflowException as error:
            if error.error_code == "RESOURCE_DOES_NOT_EXIST":
                return None
            raise RegistryError(f"MLflow registry {self.uri}: {_first_line(error)}") from None
        except Exception as error:
            raise RegistryError(f"MLflow registry {self.uri}: {_first_line(error)}") from None
        return (model.tags or {}).get(key)

    def set_meta(self, key: str, value: str) -> None:
        from mlflow.exceptions import MlflowException

        check_meta_key(key)
        if not isinstance(value, str) or len(value) > MAX_META_CHARS:
            raise RegistryError(f"registry setting {key!r}: the value must be a string of at most {MAX_META_CHARS} "
                                "characters")
        try:
            self.client.create_registered_model(
                META_MODEL, description="srl-rlvr's registry-wide settings (the audit log's head); not a model")
        except MlflowException as error:
            if error.error_code != "RESOURCE_ALREADY_EXISTS":
                raise RegistryError(f"MLflow registry {self.uri}: {_first_line(error)}") from None
        except Exception as error:
            raise RegistryError(f"MLflow registry {self.uri}: {_first_line(error)}") from None
        self._call(self.client.set_registered_model_tag, META_MODEL, key, value, name=META_MODEL)
