"""Shared fixtures. Tests never download: model tests use the tiny offline model built here."""

from __future__ import annotations

import shutil
import socket
import uuid
from pathlib import Path

import pytest


def pytest_configure(config: pytest.Config) -> None:
    # Tiny models gain nothing from intra-op threads, and on a shared 2-core box two threads per process
    # oversubscribe the CPU (a tiny GRPO step went from 0.1 s to 10 s). Subprocess tests inherit this too.
    import os

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama + ChatML tokenizer folder (built once per session, ~1 s)."""
    from srl_rlvr.models.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"), seed=0)


@pytest.fixture
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point SRL_RLVR_CACHE at an empty temp folder, so a test never sees or touches the user's cache."""
    cache = tmp_path / "srl-rlvr-cache"
    monkeypatch.setenv("SRL_RLVR_CACHE", str(cache))
    return cache


# --- real local AWS (a moto server) and MLflow stores, for the ops and registry tests ---------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def moto_endpoint():
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def aws_env(monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3",
                 "AWS_ENDPOINT_URL_SAGEMAKER"):
        monkeypatch.delenv(name, raising=False)
    # never read the user's ~/.aws
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    import boto3

    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)  # the default session caches credentials it resolved


@pytest.fixture(scope="session")
def mlflow_template_db(tmp_path_factory):
    """An empty MLflow SQLite store, migrated once (about 2 s); each test gets a copy."""
    from srl_rlvr.registry.mlflow_backend import MlflowRegistry

    path = tmp_path_factory.mktemp("mlflow-template") / "registry.db"
    MlflowRegistry(f"sqlite:///{path}").names()
    return path


@pytest.fixture(params=["mlflow", "sagemaker"])
def backend(request, tmp_path):
    if request.param == "mlflow":
        from srl_rlvr.registry.mlflow_backend import MlflowRegistry

        db = tmp_path / "registry.db"
        shutil.copyfile(request.getfixturevalue("mlflow_template_db"), db)
        yield MlflowRegistry(f"sqlite:///{db}")
    else:
        from srl_rlvr.registry.sagemaker import SageMakerRegistry

        endpoint = request.getfixturevalue("moto_endpoint")
        request.getfixturevalue("aws_env")
        # one prefix per test: the moto server is shared by the session
        yield SageMakerRegistry(f"t{uuid.uuid4().hex[:8]}", endpoint_url=endpoint)


@pytest.fixture(scope="session")
def s3_endpoint(moto_endpoint):
    """The product's S3 checkpoint bucket, on the same local moto server."""
    return moto_endpoint


@pytest.fixture
def bucket(s3_endpoint, aws_env) -> str:
    import boto3

    name = f"ckpt-{uuid.uuid4().hex[:12]}"  # one bucket per test: the moto server is shared by the session
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=name)
    return name
