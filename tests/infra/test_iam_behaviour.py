"""The IAM roles of infra/terraform behave as intended, not just parse: their policy documents, rendered
with real ARNs, are loaded into a moto server that enforces IAM (``INITIAL_NO_AUTH_ACTION_COUNT``), each
role is assumed through STS, and allowed calls must succeed while forbidden ones get AccessDenied.
srl-rlvr's own S3 checkpoint sync and SageMaker registry run under the training role in the same server.

What moto checks: the role's identity policy against each S3 request's action *and* bucket/object ARN.
What it does not: bucket policies, KMS key policies, conditions, and resource ARNs of other services
(moto evaluates SageMaker and CloudWatch actions against resource "*", so an ARN-scoped statement is
always denied there). So the TLS-only bucket policy, SSE-KMS and the SageMaker registry statements are
checked statically (test_terraform.py: every call srl-rlvr's SageMaker backend makes is allowed to the
training role on the registry's prefix, and only the read calls to the serving role), not here.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest
from terraform_model import ACCOUNT, bucket_names, policy_document, references

boto3 = pytest.importorskip("boto3")
from botocore.exceptions import ClientError  # noqa: E402

PREFIX = "srl-rlvr-dev"
KMS_ARN = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/00000000-0000-0000-0000-000000000000"
SETUP_CALLS = 3  # unauthenticated calls before moto enforces IAM: create the admin, its policy, its key


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def iam_moto():
    port = _free_port()
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": str(SETUP_CALLS), "MOTO_ACCOUNT_ID": ACCOUNT}
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.2)
    yield url
    proc.terminate()
    proc.wait(timeout=30)


def _client(service: str, url: str, creds: dict[str, str]):
    return boto3.client(service, endpoint_url=url, region_name="us-east-1", **creds)


@pytest.fixture(scope="module")
def roles(iam_moto):
    url = iam_moto
    anon = {"aws_access_key_id": "setup", "aws_secret_access_key": "setup"}
    iam = _client("iam", url, anon)
    iam.create_user(UserName="admin")
    iam.put_user_policy(UserName="admin", PolicyName="admin", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
    key = iam.create_access_key(UserName="admin")["AccessKey"]
    admin = {"aws_access_key_id": key["AccessKeyId"], "aws_secret_access_key": key["SecretAccessKey"]}
    iam = _client("iam", url, admin)
    s3 = _client("s3", url, admin)
    names = bucket_names(PREFIX)
    for name in names.values():
        s3.create_bucket(Bucket=name)
    s3.put_object(Bucket=names["training_data"], Key="train.jsonl", Body=b'{"id": "1"}\n')
    s3.put_object(Bucket=names["outputs"], Key="models/m/config.json", Body=b"{}")
    refs = references(PREFIX, KMS_ARN)
    sts = _client("sts", url, admin)
    creds = {}
    admin_arn = iam.get_user(UserName="admin")["User"]["Arn"]
    for role in ("training", "serving", "ci"):
        # as with var.<role>_principals = [the admin user]
        trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                         "Principal": {"AWS": admin_arn}}]}
        arn = iam.create_role(RoleName=f"{PREFIX}-{role}", AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
        iam.put_role_policy(RoleName=f"{PREFIX}-{role}", PolicyName=role,
                            PolicyDocument=json.dumps(policy_document(role, refs)))
        c = sts.assume_role(RoleArn=arn, RoleSessionName=f"test-{role}")["Credentials"]
        creds[role] = {"aws_access_key_id": c["AccessKeyId"], "aws_secret_access_key": c["SecretAccessKey"],
                       "aws_session_token": c["SessionToken"]}
    return url, names, creds


def _denied(call, *args, **kwargs) -> bool:
    try:
        call(*args, **kwargs)
    except ClientError as exc:
        return exc.response["Error"]["Code"] in ("AccessDenied", "AccessDeniedException")
    return False


def test_training_reads_data_but_cannot_write_it_and_writes_checkpoints(roles):
    url, names, creds = roles
    s3 = _client("s3", url, creds["training"])
    assert s3.get_object(Bucket=names["training_data"], Key="train.jsonl")["Body"].read().startswith(b'{"id"')
    assert _denied(s3.put_object, Bucket=names["training_data"], Key="poison.jsonl", Body=b"x")
    assert _denied(s3.delete_object, Bucket=names["training_data"], Key="train.jsonl")
    s3.put_object(Bucket=names["checkpoints"], Key="srl/checkpoint-1/COMPLETE", Body=b"{}")
    s3.put_object(Bucket=names["outputs"], Key="report.json", Body=b"{}")
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=names["checkpoints"])["Contents"]] == \
        ["srl/checkpoint-1/COMPLETE"]
    assert _denied(s3.put_object, Bucket=names["access_logs"], Key="x", Body=b"x")


def test_serving_can_read_outputs_and_write_nothing(roles):
    url, names, creds = roles
    s3 = _client("s3", url, creds["serving"])
    assert s3.get_object(Bucket=names["outputs"], Key="models/m/config.json")["Body"].read() == b"{}"
    for bucket in ("training_data", "checkpoints", "outputs", "access_logs"):
        assert _denied(s3.put_object, Bucket=names[bucket], Key="x", Body=b"x"), bucket
    assert _denied(s3.get_object, Bucket=names["training_data"], Key="train.jsonl")
    assert _denied(s3.delete_object, Bucket=names["outputs"], Key="models/m/config.json")


def test_ci_reads_configuration_but_no_data(roles):
    url, names, creds = roles
    s3 = _client("s3", url, creds["ci"])
    s3.get_bucket_versioning(Bucket=names["training_data"])  # what a plan reads
    assert _denied(s3.get_object, Bucket=names["training_data"], Key="train.jsonl")
    assert _denied(s3.list_objects_v2, Bucket=names["training_data"])
    assert _denied(s3.put_object, Bucket=names["checkpoints"], Key="x", Body=b"x")


def test_srl_rlvr_checkpoint_sync_works_under_the_training_role_only(roles, tmp_path, monkeypatch):
    from srl_rlvr.errors import UserInputError
    from srl_rlvr.ops.remote import RemoteCheckpoints

    url, names, creds = roles
    folder = tmp_path / "checkpoint-2"
    folder.mkdir()
    (folder / "weights.bin").write_bytes(b"\0" * 64)
    (folder / "COMPLETE").write_text("{}", encoding="utf-8")

    def as_role(role: str) -> None:
        c = creds[role]
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", c["aws_access_key_id"])
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", c["aws_secret_access_key"])
        monkeypatch.setenv("AWS_SESSION_TOKEN", c["aws_session_token"])
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)

    as_role("training")
    remote = RemoteCheckpoints(f"s3://{names['checkpoints']}/dev/srl-abc", endpoint_url=url)
    remote.upload(folder)
    assert remote.list_steps() == [2]
    as_role("serving")
    with pytest.raises(UserInputError, match="AccessDenied"):
        RemoteCheckpoints(f"s3://{names['checkpoints']}/dev/srl-abc", endpoint_url=url).upload(folder)
