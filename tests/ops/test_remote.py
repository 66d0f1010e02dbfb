"""The S3 copy of checkpoints against a real local S3 (a moto server on a free port), never a mock of boto3."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from srl_rlvr.errors import UserInputError
from srl_rlvr.ops.checkpoints import COMPLETE, STAGING, CheckpointSettings, commit, verify_checkpoint


def make_checkpoint(out: Path, step: int, value: float = 1.0) -> Path:
    import torch
    from safetensors.torch import save_file

    staged = out / STAGING / f"checkpoint-{step}"
    staged.mkdir(parents=True)
    (staged / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    save_file({"w": torch.full((2, 2), value)}, str(staged / "model.safetensors"))
    (staged / "optimizer").mkdir()
    (staged / "optimizer" / "state.txt").write_text(f"step {step}")
    return commit(staged, out, "abc123", {"reward": step / 10})


def s3(endpoint):
    import boto3

    return boto3.client("s3", endpoint_url=endpoint)


def test_round_trip_and_skip_of_a_corrupt_newest(tmp_path, s3_endpoint, bucket, capsys):
    from srl_rlvr.ops.remote import RemoteCheckpoints

    out = tmp_path / "srl"
    first, second = make_checkpoint(out, 2), make_checkpoint(out, 4)
    settings = CheckpointSettings(remote=f"s3://{bucket}/runs", endpoint_url=s3_endpoint)
    remote = RemoteCheckpoints.for_stage(settings, out, "abc123")
    assert remote.url == f"s3://{bucket}/runs/srl-abc123"
    assert remote.list_steps() == []
    remote.upload(first)
    remote.upload(second)
    assert remote.list_steps() == [2, 4]
    keys = {o["Key"] for o in s3(s3_endpoint).list_objects_v2(Bucket=bucket)["Contents"]}
    assert f"runs/srl-abc123/checkpoint-4/{COMPLETE}" in keys
    assert "runs/srl-abc123/checkpoint-4/optimizer/state.txt" in keys

    import shutil

    shutil.rmtree(out)
    got = remote.download_newest(out)
    assert got == out / "checkpoint-4"
    assert verify_checkpoint(got, config_hash="abc123") is None
    assert (got / "optimizer" / "state.txt").read_text() == "step 4"
    assert not (out / STAGING).exists()

    # A different (valid safetensors) model file remotely: the hash no longer matches the marker.
    import torch
    from safetensors.torch import save as save_bytes

    s3(s3_endpoint).put_object(Bucket=bucket, Key="runs/srl-abc123/checkpoint-4/model.safetensors",
                               Body=save_bytes({"w": torch.zeros(2, 2)}))
    shutil.rmtree(out)
    got = remote.download_newest(out)
    assert got == out / "checkpoint-2"
    assert verify_checkpoint(got) is None
    assert not (out / "checkpoint-4").exists() and not (out / STAGING).exists()
    said = capsys.readouterr().out
    assert "skipping remote checkpoint-4: model.safetensors: sha256 mismatch (corrupted)" in said

    # Downloading over an existing (here: corrupted) local folder of the same name replaces it.
    (got / "model.safetensors").write_bytes(b"junk")
    assert remote.download_newest(out) == out / "checkpoint-2"
    assert verify_checkpoint(out / "checkpoint-2") is None


def test_without_marker_not_listed_and_delete(tmp_path, s3_endpoint, bucket):
    from srl_rlvr.ops.remote import RemoteCheckpoints

    out = tmp_path / "rlvr"
    remote = RemoteCheckpoints(f"s3://{bucket}", endpoint_url=s3_endpoint)  # an empty prefix
    assert remote.url == f"s3://{bucket}"
    remote.upload(make_checkpoint(out, 3))
    client = s3(s3_endpoint)
    # an upload cut short: files but no marker
    client.put_object(Bucket=bucket, Key="checkpoint-9/model.safetensors", Body=b"partial")
    client.put_object(Bucket=bucket, Key="checkpoint-9-extra/COMPLETE", Body=b"{}")  # not checkpoint-N
    client.put_object(Bucket=bucket, Key="other/checkpoint-7/COMPLETE", Body=b"{}")  # deeper: not ours
    assert remote.list_steps() == [3]
    assert remote.download_newest(tmp_path / "fresh") == tmp_path / "fresh" / "checkpoint-3"

    remote.delete("checkpoint-3")
    remote.delete("checkpoint-9")
    remote.delete("checkpoint-5")  # nothing there: no error
    assert remote.list_steps() == []
    keys = {o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])}
    assert not any(k.startswith(("checkpoint-3/", "checkpoint-9/")) for k in keys)
    assert "other/checkpoint-7/COMPLETE" in keys  # only that checkpoint's objects go
    assert remote.download_newest(tmp_path / "empty") is None


def test_reupload_replaces_stale_files(tmp_path, s3_endpoint, bucket):
    from srl_rlvr.ops.remote import RemoteCheckpoints

    remote = RemoteCheckpoints(f"s3://{bucket}/p/", endpoint_url=s3_endpoint)
    assert remote.url == f"s3://{bucket}/p"
    out = tmp_path / "a"
    ckpt = make_checkpoint(out, 1)
    s3(s3_endpoint).put_object(Bucket=bucket, Key="p/checkpoint-1/stale.bin", Body=b"from an older save")
    remote.upload(ckpt)
    got = remote.download_newest(tmp_path / "b")
    assert got is not None and not (got / "stale.bin").exists()


def test_bad_url_and_missing_bucket(tmp_path, s3_endpoint, aws_env):
    from srl_rlvr.ops.remote import RemoteCheckpoints

    for url in ("http://x", "s3://", "s3:///prefix", "s3://Bad_Bucket/x"):
        with pytest.raises(UserInputError, match="s3://"):
            RemoteCheckpoints(url, endpoint_url=s3_endpoint)
    remote = RemoteCheckpoints("s3://no-such-bucket-here/x", endpoint_url=s3_endpoint)
    with pytest.raises(UserInputError, match="s3://no-such-bucket-here/x.*does not exist"):
        remote.list_steps()
    with pytest.raises(UserInputError, match="s3://no-such-bucket-here/x"):
        remote.download_newest(tmp_path)
    with pytest.raises(UserInputError, match="s3://no-such-bucket-here/x"):
        remote.upload(make_checkpoint(tmp_path / "o", 1))
    with pytest.raises(UserInputError, match="not set"):
        RemoteCheckpoints.for_stage(CheckpointSettings(), tmp_path, "h")


def test_missing_credentials_and_unreachable_endpoint(tmp_path, s3_endpoint, aws_env, monkeypatch):
    from srl_rlvr.ops.remote import RemoteCheckpoints

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    with pytest.raises(UserInputError, match="s3://b-1/x"):
        RemoteCheckpoints("s3://b-1/x", endpoint_url=closed).list_steps()
    with pytest.raises(UserInputError, match="bad endpoint"):
        RemoteCheckpoints("s3://b-1/x", endpoint_url="not a url")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    import boto3

    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    with pytest.raises(UserInputError, match="s3://b-1/x.*credentials"):
        RemoteCheckpoints("s3://b-1/x", endpoint_url=s3_endpoint).list_steps()
