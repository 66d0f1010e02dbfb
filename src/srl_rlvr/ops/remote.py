"""An S3 copy of completed checkpoints, so a run can resume on a machine that lost its disk.

    srl-rlvr train srl ... --set checkpoints.remote=s3://my-bucket/ckpts
    srl-rlvr train srl ... --resume --set checkpoints.remote=s3://my-bucket/ckpts   # on a fresh machine

Each stage gets its own prefix, ``<remote>/<stage folder name>-<config hash>``, so runs with different
configs or seeds never mix. A checkpoint is uploaded file by file with its ``COMPLETE`` marker last, and
only a checkpoint whose marker exists remotely is listed: an upload cut short is never seen. A download
lands in ``OUT/.staging`` and is checked by :func:`~srl_rlvr.ops.checkpoints.verify_checkpoint` before it is
renamed into place, newest first, skipping (and naming) any copy that does not verify. Credentials and the
endpoint come from boto3's usual sources (AWS_* variables, ~/.aws); ``checkpoints.endpoint_url`` points at
MinIO or a moto server.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

from srl_rlvr.core.console import say
from srl_rlvr.errors import UserInputError
from srl_rlvr.ops.checkpoints import COMPLETE, PREFIX, STAGING, CheckpointSettings, checkpoint_step, verify_checkpoint

_BUCKET = re.compile(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]")


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` → ``("bucket", "some/prefix")``; the prefix may be empty.

    >>> parse_s3_url("s3://my-bucket/ckpts/")
    ('my-bucket', 'ckpts')
    """
    if not isinstance(url, str) or not url.startswith("s3://"):
        raise UserInputError(f"checkpoints.remote must be an s3://bucket/prefix URL, got {url!r}")
    bucket, _, prefix = url[len("s3://"):].partition("/")
    if not _BUCKET.fullmatch(bucket):
        raise UserInputError(f"checkpoints.remote {url!r}: {bucket!r} is not an S3 bucket name "
                             "(3-63 lowercase letters, digits, dots and hyphens)")
    if "//" in prefix.strip("/") or any(c.isspace() for c in prefix):
        raise UserInputError(f"checkpoints.remote {url!r}: the prefix has an empty part or a space")
    return bucket, prefix.strip("/")


class RemoteCheckpoints:
    """Completed checkpoints under one S3 prefix: ``<prefix>/checkpoint-N/<file>``."""

    def __init__(self, url: str, endpoint_url: str | None = None):
        self.bucket, self.prefix = parse_s3_url(url)
        self.url = f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"
        self.endpoint_url = endpoint_url
        with self._errors():
            import boto3  # lazy: boto3 takes a moment to import and only remote runs need it

            try:
                self.client = boto3.client("s3", endpoint_url=endpoint_url)
            except ValueError as exc:  # botocore rejects a malformed endpoint URL with a ValueError
                raise UserInputError(f"S3 {self.url}: bad endpoint {endpoint_url!r} ({exc})") from None

    @classmethod
    def for_stage(cls, settings: CheckpointSettings, stage_dir: Path, config_hash: str) -> RemoteCheckpoints:
        """This stage's prefix: ``<settings.remote>/<stage folder name>-<config hash>``."""
        if not settings.remote:
            raise UserInputError("checkpoints.remote is not set")
        return cls(f"{settings.remote.rstrip('/')}/{Path(stage_dir).name}-{config_hash}", settings.endpoint_url)

    # --- keys --------------------------------------------------------------------------------------------
    def _key(self, *parts: str) -> str:
        return "/".join([self.prefix, *parts] if self.prefix else list(parts))

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """boto3/botocore failures (no bucket, no credentials, no endpoint) as one line naming the URL."""
        from boto3.exceptions import Boto3Error
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            yield
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code, message = error.get("Code", "?"), error.get("Message") or str(exc)
            if code == "NoSuchBucket":
                message = f"bucket {self.bucket!r} does not exist"
            raise UserInputError(f"S3 {self.url}: {code}: {message}") from None
        except (BotoCoreError, Boto3Error) as exc:
            raise UserInputError(f"S3 {self.url}: {exc}") from None

    def _keys(self, prefix: str) -> list[str]:
        """Every object key that starts with ``prefix`` (paginated; "" lists the whole bucket)."""
        keys = []
        with self._errors():
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
                keys.extend(obj["Key"] for obj in page.get("Contents", []))
        return keys

    # --- the API -----------------------------------------------------------------------------------------
    def upload(self, folder: Path) -> None:
        """Upload every file of a completed checkpoint folder, the ``COMPLETE`` marker last.

        An older remote copy of the same name is deleted first (its marker first), so a checkpoint that
        looks complete remotely never mixes files from two saves."""
        folder = Path(folder)
        marker = folder / COMPLETE
        if checkpoint_step(folder) is None or not marker.is_file():
            raise ValueError(f"{folder} is not a completed checkpoint-N folder (no {COMPLETE} marker)")
        self.delete(folder.name)
        files = sorted(p for p in folder.rglob("*") if p.is_file() and p != marker)
        with self._errors():
            for path in [*files, marker]:
                self.client.upload_file(str(path), self.bucket,
                                        self._key(folder.name, path.relative_to(folder).as_posix()))

    def list_steps(self) -> list[int]:
        """Steps whose ``COMPLETE`` marker exists remotely, ascending."""
        steps = set()
        base = self._key("")
        for key in self._keys(base):
            parts = key[len(base):].split("/")
            if len(parts) == 2 and parts[1] == COMPLETE:
                step = checkpoint_step(Path(parts[0]))
                if step is not None:
                    steps.add(step)
        return sorted(steps)

    def _download(self, name: str, dest: Path) -> None:
        """Copy ``<prefix>/<name>/`` into ``dest``: every file first, the marker last."""
        base = self._key(name) + "/"
        rels = [key[len(base):] for key in self._keys(base)]
        rels = [r for r in rels if r and not r.endswith("/")]  # skip "folder" placeholder objects
        for rel in rels:
            parts = PurePosixPath(rel).parts
            if PurePosixPath(rel).is_absolute() or ".." in parts:
                raise UserInputError(f"S3 {self.url}: refusing to download {base}{rel} (path leaves the folder)")
        rels.sort(key=lambda r: r == COMPLETE)
        with self._errors():
            for rel in rels:
                path = dest.joinpath(*PurePosixPath(rel).parts)
                path.parent.mkdir(parents=True, exist_ok=True)
                self.client.download_file(self.bucket, base + rel, str(path))

    def download_newest(self, out: Path, check_finite: bool = True) -> Path | None:
        """Download the newest remote checkpoint that verifies into ``out/checkpoint-N``; None if none does."""
        out = Path(out)
        staging = out / STAGING
        for step in reversed(self.list_steps()):
            name = f"{PREFIX}{step}"
            staged = staging / name
            if staged.exists():
                shutil.rmtree(staged)
            staged.mkdir(parents=True)
            try:
                self._download(name, staged)
                reason = verify_checkpoint(staged, check_finite=check_finite)
                if reason is None:
                    target = out / name
                    if target.exists():
                        shutil.rmtree(target)
                    os.replace(staged, target)
                    return target
            finally:
                if staged.exists():
                    shutil.rmtree(staged, ignore_errors=True)
                if staging.is_dir() and not any(staging.iterdir()):
                    staging.rmdir()
            say(f"  skipping remote {name}: {reason}")
        return None

    def delete(self, name: str) -> None:
        """Delete every object under ``<prefix>/<name>/`` (mirrors local rotation); the marker goes first."""
        if not name or "/" in name or name in (".", ".."):
            raise ValueError(f"not a checkpoint folder name: {name!r}")
        marker = self._key(name, COMPLETE)
        keys = self._keys(self._key(name) + "/")
        with self._errors():
            if marker in keys:  # the marker first: a half-deleted checkpoint must not look complete
                self.client.delete_object(Bucket=self.bucket, Key=marker)
                keys.remove(marker)
            for start in range(0, len(keys), 1000):  # delete_objects takes at most 1000 keys
                batch = keys[start:start + 1000]
                result = self.client.delete_objects(Bucket=self.bucket,
                                                    Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True})
                if result.get("Errors"):
                    first = result["Errors"][0]
                    raise UserInputError(f"S3 {self.url}: could not delete {first.get('Key')}: "
                                         f"{first.get('Code')}: {first.get('Message')}")
