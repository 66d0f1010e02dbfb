"""The registry on the SageMaker Model Registry, through boto3.

    SageMakerRegistry("acme")                                   # AWS, credentials and region as boto3 finds them
    SageMakerRegistry("acme", endpoint_url="http://127.0.0.1:5005")   # a moto server in the tests

How the interface maps onto SageMaker:

* a name ``N`` is the model package group ``{prefix}-N``; a version is a versioned model package of the group
  (SageMaker numbers them 1, 2, ...);
* the status is the package's approval status: candidate = PendingManualApproval, approved = Approved,
  rejected = Rejected, and archived = Rejected with the customer-metadata key ``srl_rlvr.status`` = archived
  (SageMaker has no archived state); a status changed in the SageMaker console is read back as such;
* the source and the lineage are one JSON document, zlib-compressed and base64-encoded (customer-metadata values
  may hold only letters, digits, spaces and ``_.:/=+-@``, 256 characters each) and split over the keys
  ``srl_rlvr.lineage.0``, ``.1``, ... with ``srl_rlvr.lineage.parts`` the count (50 keys at most per package);
* SageMaker has no aliases: an alias is the tag ``srl_rlvr.alias.<alias>`` = version on the group;
* registry-wide settings (:meth:`get_meta`) are tags ``srl_rlvr.meta.<key>`` on the reserved group
  ``{prefix}-srl-rlvr-registry-meta``, which :meth:`names` leaves out.

boto3 is imported on first use, so importing this module stays cheap.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import zlib
from datetime import datetime, timezone
from typing import Any

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

META_NAME = "srl-rlvr-registry-meta"
STATUS_KEY = "srl_rlvr.status"
LINEAGE_KEY = "srl_rlvr.lineage"
PARTS_KEY = "srl_rlvr.lineage.parts"
ALIAS_TAG = "srl_rlvr.alias."
META_TAG = "srl_rlvr.meta."
VALUE_CHARS = 256  # a customer-metadata value or a tag value
MAX_METADATA_KEYS = 50
MAX_PARTS = MAX_METADATA_KEYS - 2  # the status and the part count take two keys
ENCODED = "b64:"  # a meta value outside the tag alphabet (or starting with this) is stored base64-encoded
APPROVAL = {"candidate": "PendingManualApproval", "approved": "Approved", "rejected": "Rejected",
            "archived": "Rejected"}
_GROUP = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")  # SageMaker's EntityName
_TAG_SAFE = re.compile(r"^[A-Za-z0-9 _.:/=+\-@]*$")  # (the ASCII part of) SageMaker's tag-value alphabet




def encode_record(source: str, lineage: Lineage) -> dict[str, str]:
    """The source and lineage as customer-metadata entries (each value in SageMaker's alphabet, <= 256 chars)."""
    text = json.dumps({"source": source, "lineage": lineage.to_dict()}, sort_keys=True, separators=(",", ":"))
    blob = base64.b64encode(zlib.compress(text.encode("utf-8"), 9)).decode("ascii")
    parts = [blob[i:i + VALUE_CHARS] for i in range(0, len(blob), VALUE_CHARS)]
    if len(parts) > MAX_PARTS:
        raise RegistryError(f"lineage too long for SageMaker's customer metadata: {len(text)} characters of JSON "
                            f"compress to {len(blob)}, more than {MAX_PARTS} values of {VALUE_CHARS}")
    record = {f"{LINEAGE_KEY}.{i}": part for i, part in enumerate(parts)}
    record[PARTS_KEY] = str(len(parts))
    return record


def decode_record(metadata: dict[str, str]) -> tuple[str, Lineage]:
    if PARTS_KEY not in metadata:  # a package registered outside srl-rlvr
        return "", Lineage(stage="", base_model="", kind="")
    blob = "".join(metadata.get(f"{LINEAGE_KEY}.{i}", "") for i in range(int(metadata[PARTS_KEY])))
    try:
        data = json.loads(zlib.decompress(base64.b64decode(blob)).decode("utf-8"))
    except (binascii.Error, zlib.error, ValueError) as error:
        raise RegistryError(f"the lineage stored in SageMaker is damaged ({error})") from None
    return data.get("source", ""), Lineage.from_dict(data.get("lineage", {}))


def encode_meta(value: str) -> str:
    if _TAG_SAFE.match(value) and not value.startswith(ENCODED):
        return value
    return ENCODED + base64.b64encode(value.encode("utf-8")).decode("ascii")


def decode_meta(value: str) -> str:
    return base64.b64decode(value[len(ENCODED):]).decode("utf-8") if value.startswith(ENCODED) else value


def _iso_utc(value: Any) -> str:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc).isoformat(timespec="milliseconds")
    return str(value or "")


def _description(source: str, lineage: Lineage) -> str:
    text = f"srl-rlvr {lineage.stage} ({lineage.kind}) of {lineage.base_model}, from {source}"
    return "".join(ch if ch.isprintable() else " " for ch in text)[:1024]


class SageMakerRegistry(RegistryBackend):
    """Registry versions as SageMaker model packages; see the module docstring for the mapping."""

    def __init__(self, prefix: str, endpoint_url: str | None = None):
        if not isinstance(prefix, str) or not _GROUP.match(prefix) or len(prefix) > 40:
            raise RegistryError(f"SageMaker registry prefix {prefix!r}: use 1-40 letters, digits and single "
                                "hyphens, starting and ending with a letter or digit")
        import boto3

        self.prefix = prefix
        self.uri = f"sagemaker://{prefix}"
        self.endpoint_url = endpoint_url
        try:
            self.client = boto3.client("sagemaker", endpoint_url=endpoint_url)
        except Exception as error:  # no region configured, a malformed endpoint
            raise RegistryError(f"SageMaker registry {self.uri}: {error}") from None

    # -- calls and errors -----------------------------------------------------------------------------------------

    def _call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self.client, operation)(**kwargs)
        except ClientError as error:
            message = error.response.get("Error", {}).get("Message") or str(error)
            raise RegistryError(f"SageMaker registry {self.uri}: {operation}: {message.splitlines()[0]}") from None
        except BotoCoreError as error:  # no credentials, no connection
            raise RegistryError(f"SageMaker registry {self.uri}: {error}") from None

    def _pages(self, operation: str, key: str, **kwargs: Any) -> list[dict[str, Any]]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return [item for page in self.client.get_paginator(operation).paginate(**kwargs) for item in page[key]]
        except ClientError as error:
            message = error.response.get("Error", {}).get("Message") or str(error)
            raise RegistryError(f"SageMaker registry {self.uri}: {operation}: {message.splitlines()[0]}") from None
        except BotoCoreError as error:
            raise RegistryError(f"SageMaker registry {self.uri}: {error}") from None

    def _group(self, name: str) -> str:
        check_name(name)
        group = f"{self.prefix}-{name}"
        if not _GROUP.match(group):
            raise RegistryError(f"model name {name!r}: the SageMaker group {group!r} must be at most 63 letters, "
                                "digits and single hyphens, ending with a letter or digit")
        return group

    def _describe_group(self, group: str) -> dict[str, Any] | None:
        """The group, or None when it does not exist."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return self.client.describe_model_package_group(ModelPackageGroupName=group)
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            message = error.response.get("Error", {}).get("Message") or str(error)
            if code in ("ValidationException", "ResourceNotFound") and re.search(
                    r"does not exist|not found|could not find", message, re.IGNORECASE):
                return None
            raise RegistryError(f"SageMaker registry {self.uri}: describe_model_package_group: "
                                f"{message.splitlines()[0]}") from None
        except BotoCoreError as error:
            raise RegistryError(f"SageMaker registry {self.uri}: {error}") from None

    def _group_arn(self, name: str) -> str:
        if name == META_NAME:
            raise RegistryError(f"unknown model {name!r} in the registry {self.uri}")
        described = self._describe_group(self._group(name))
        if described is None:
            raise RegistryError(f"unknown model {name!r} in the registry {self.uri}")
        return described["ModelPackageGroupArn"]

    def _ensure_group(self, group: str, description: str) -> str:
        described = self._describe_group(group)
        if described is not None:
            return described["ModelPackageGroupArn"]
        from botocore.exceptions import ClientError

        try:
            return self.client.create_model_package_group(
                ModelPackageGroupName=group, ModelPackageGroupDescription=description)["ModelPackageGroupArn"]
        except ClientError as error:  # created meanwhile by another process
            described = self._describe_group(group)
            if described is None:
                message = error.response.get("Error", {}).get("Message") or str(error)
                raise RegistryError(f"SageMaker registry {self.uri}: create_model_package_group: "
                                    f"{message.splitlines()[0]}") from None
            return described["ModelPackageGroupArn"]

    def _packages(self, name: str) -> dict[str, str]:
        """version -> package ARN, for an existing group."""
        summaries = self._pages("list_model_packages", "ModelPackageSummaryList",
                                ModelPackageGroupName=self._group(name), ModelPackageType="Versioned")
        return {str(s["ModelPackageVersion"]): s["ModelPackageArn"] for s in summaries
                if s.get("ModelPackageVersion")}

    def _package_arn(self, name: str, version: str) -> str:
        self._group_arn(name)
        arn = self._packages(name).get(version)
        if arn is None:
            raise RegistryError(f"{name} has no version {version}")
        return arn

    def _tags(self, arn: str) -> dict[str, str]:
        return {tag["Key"]: tag.get("Value", "") for tag in self._pages("list_tags", "Tags", ResourceArn=arn)}

    def _set_tag(self, arn: str, key: str, value: str) -> None:
        # delete first: moto appends a second tag of the same key where AWS would overwrite it
        self._call("delete_tags", ResourceArn=arn, TagKeys=[key])
        self._call("add_tags", ResourceArn=arn, Tags=[{"Key": key, "Value": value}])

    def _aliases(self, group_arn: str) -> dict[str, list[str]]:
        """version -> aliases, from the group's tags."""
        by_version: dict[str, list[str]] = {}
        for key, value in self._tags(group_arn).items():
            if key.startswith(ALIAS_TAG):
                by_version.setdefault(value, []).append(key[len(ALIAS_TAG):])
        return by_version

    def _to_version(self, name: str, package: dict[str, Any], aliases: list[str]) -> ModelVersion:
        metadata = package.get("CustomerMetadataProperties") or {}
        source, lineage = decode_record(metadata)
        approval = package.get("ModelApprovalStatus", "PendingManualApproval")
        status = {"Approved": "approved", "Rejected": "rejected"}.get(approval, "candidate")
        if status == "rejected" and metadata.get(STATUS_KEY) == "archived":
            status = "archived"
        return ModelVersion(name=name, version=str(package["ModelPackageVersion"]), source=source, status=status,
                            lineage=lineage, aliases=sorted(aliases), created_at=_iso_utc(package.get("CreationTime")))

    # -- versions -------------------------------------------------------------------------------------------------

    def register(self, name: str, source: str, lineage: Lineage) -> ModelVersion:
        group = self._group(name)
        if name == META_NAME:
            raise RegistryError(f"{name!r} is reserved for the registry's own settings; pick another name")
        metadata = {**encode_record(source, lineage), STATUS_KEY: "candidate"}
        self._ensure_group(group, f"srl-rlvr model {name}")
        arn = self._call("create_model_package", ModelPackageGroupName=group,
                         ModelPackageDescription=_description(source, lineage),
                         ModelApprovalStatus=APPROVAL["candidate"],
                         CustomerMetadataProperties=metadata)["ModelPackageArn"]
        package = self._call("describe_model_package", ModelPackageName=arn)
        return self._to_version(name, package, aliases=[])

    def get(self, name: str, version: str) -> ModelVersion:
        version = check_version(name, version)
        group_arn = self._group_arn(name)
        arn = self._packages(name).get(version)
        if arn is None:
            raise RegistryError(f"{name} has no version {version}")
        package = self._call("describe_model_package", ModelPackageName=arn)
        return self._to_version(name, package, self._aliases(group_arn).get(version, []))

    def versions(self, name: str) -> list[ModelVersion]:
        group_arn = self._group_arn(name)
        aliases = self._aliases(group_arn)
        packages = sorted(self._packages(name).items(), key=lambda item: int(item[0]))
        return [self._to_version(name, self._call("describe_model_package", ModelPackageName=arn),
                                 aliases.get(version, [])) for version, arn in packages]

    def names(self) -> list[str]:
        start = f"{self.prefix}-"
        groups = self._pages("list_model_package_groups", "ModelPackageGroupSummaryList", NameContains=self.prefix)
        found = {g["ModelPackageGroupName"][len(start):] for g in groups
                 if g["ModelPackageGroupName"].startswith(start)}
        found.discard(META_NAME)
        return sorted(found)

    def set_status(self, name: str, version: str, status: str) -> None:
        version = check_version(name, version)
        if status not in STATUSES:
            raise RegistryError(f"status {status!r}: expected one of {', '.join(STATUSES)}")
        arn = self._package_arn(name, version)
        package = self._call("describe_model_package", ModelPackageName=arn)
        # the whole map, not only the changed key: AWS merges the keys given, moto replaces the map with them
        metadata = {**(package.get("CustomerMetadataProperties") or {}), STATUS_KEY: status}
        self._call("update_model_package", ModelPackageArn=arn, ModelApprovalStatus=APPROVAL[status],
                   ApprovalDescription=f"srl-rlvr: {status}", CustomerMetadataProperties=metadata)

    # -- aliases --------------------------------------------------------------------------------------------------

    def set_alias(self, name: str, alias: str, version: str) -> None:
        check_alias(alias)
        version = check_version(name, version)
        group_arn = self._group_arn(name)
        if version not in self._packages(name):
            raise RegistryError(f"{name} has no version {version}")
        self._set_tag(group_arn, ALIAS_TAG + alias, version)

    def delete_alias(self, name: str, alias: str) -> None:
        check_alias(alias)
        self._call("delete_tags", ResourceArn=self._group_arn(name), TagKeys=[ALIAS_TAG + alias])

    def alias_version(self, name: str, alias: str) -> str | None:
        check_alias(alias)
        return self._tags(self._group_arn(name)).get(ALIAS_TAG + alias)

    # -- registry-wide settings -----------------------------------------------------------------------------------

    def _meta_group(self) -> str:
        return f"{self.prefix}-{META_NAME}"

    def get_meta(self, key: str) -> str | None:
        check_meta_key(key)
        described = self._describe_group(self._meta_group())
        if described is None:
            return None
        value = self._tags(described["ModelPackageGroupArn"]).get(META_TAG + key)
        return None if value is None else decode_meta(value)

    def set_meta(self, key: str, value: str) -> None:
        check_meta_key(key)
        if not isinstance(value, str):
            raise RegistryError(f"registry setting {key!r}: the value must be a string")
        stored = encode_meta(value)
        if len(stored) > VALUE_CHARS:
            raise RegistryError(f"registry setting {key!r}: the value is too long for a SageMaker tag "
                                f"({len(stored)} characters stored, at most {VALUE_CHARS})")
        arn = self._ensure_group(self._meta_group(), "srl-rlvr's registry-wide settings (the audit log's head); "
                                 "not a model")
        self._set_tag(arn, META_TAG + key, stored)
