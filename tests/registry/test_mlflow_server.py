"""The MLflow backend through a real ``mlflow server`` process (REST, not the SQLite store in-process)."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from srl_rlvr.registry.base import Lineage, RegistryError


def _has_full_mlflow() -> bool:
    try:
        importlib.metadata.version("mlflow")  # mlflow-skinny has no `mlflow server`
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_lineage(n_files: int, stage: str = "srl") -> Lineage:
    return Lineage(stage=stage, base_model="HuggingFaceTB/SmolLM2-135M-Instruct", kind="adapter",
                   data_sha256={f"data/train_{i:03d}.jsonl": hashlib.sha256(str(i).encode()).hexdigest()
                                for i in range(n_files)},
                   eval_metrics={"greedy_accuracy": 0.18, "pass_at_8": 1 / 3})


pytestmark = pytest.mark.skipif(not _has_full_mlflow(), reason="`mlflow server` needs the full mlflow package "
                                "(pip install 'mlflow>=3.17,<4'); mlflow-skinny has no server")


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    log = open(tmp / "server.log", "wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{tmp}/db.sqlite", "--default-artifact-root", str(tmp / "art")],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                log.flush()
                pytest.fail(f"mlflow server did not start:\n{(tmp / 'server.log').read_text()[-3000:]}")
            time.sleep(0.3)
        yield url
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)  # the server and its uvicorn worker
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        log.close()


def test_register_alias_resolve_through_a_server(mlflow_server, tmp_path):
    from srl_rlvr.registry.mlflow_backend import MlflowRegistry

    registry = MlflowRegistry(mlflow_server)
    assert registry.uri == mlflow_server
    folder = tmp_path / "models" / "srl rlvr"  # a local absolute folder, with a space
    folder.mkdir(parents=True)
    lineage = make_lineage(80)
    assert len(json.dumps(lineage.to_dict())) > 5000  # split over several tags
    v1 = registry.register("served", str(folder), lineage)
    v2 = registry.register("served", "s3://bucket/models/served", make_lineage(2, stage="rlvr"))
    assert (v1.version, v2.version) == ("1", "2")
    assert registry.get("served", "1").source == str(folder)
    assert registry.get("served", "1").lineage == lineage

    registry.set_alias("served", "champion", "1")
    assert registry.resolve("served", "champion").source == str(folder)
    registry.set_alias("served", "champion", "2")
    assert registry.resolve("served", "champion").version == "2"
    assert [v.aliases for v in registry.versions("served")] == [[], ["champion"]]

    registry.set_status("served", "2", "approved")
    assert registry.get("served", "2").status == "approved"
    registry.set_meta("audit_head", "c" * 64)
    assert registry.get_meta("audit_head") == "c" * 64
    assert registry.names() == ["served"]

    with pytest.raises(RegistryError, match="unknown model 'nope'"):
        registry.get("nope", "1")
    with pytest.raises(RegistryError, match="served has no version 9"):
        registry.resolve("served", "9")
    with pytest.raises(RegistryError, match="no version holds the alias 'staging'"):
        registry.resolve("served", "staging")
