"""The registry contract: the same tests on every backend (MLflow on SQLite, SageMaker on a moto server)."""

from __future__ import annotations

import hashlib
from datetime import datetime

import pytest

from srl_rlvr.registry.base import STATUSES, Lineage, RegistryError


def make_lineage(n_files: int = 2, **overrides) -> Lineage:
    fields = dict(
        stage="srl",
        base_model="HuggingFaceTB/SmolLM2-135M-Instruct",
        kind="adapter",
        config_hash="c0ffee" * 4,
        training_run_id="0123456789abcdef",
        git_commit="a" * 40,
        data_sha256={f"data/train_{i:03d}.jsonl": hashlib.sha256(str(i).encode()).hexdigest()
                     for i in range(n_files)},
        eval_metrics={"greedy_accuracy": 0.18, "pass_at_8": 1 / 3, "mean_length": 123.456789012345, "n": 100.0},
        eval_set_digest=hashlib.sha256(b"eval").hexdigest(),
        eval_predictions="/work/out/demo/eval/test/srl_rlvr/predictions.jsonl",
    )
    fields.update(overrides)
    return Lineage(**fields)


def test_register_two_versions_round_trip(backend):
    first = make_lineage()
    second = make_lineage(stage="rlvr", kind="full", eval_metrics={"greedy_accuracy": 0.2500000000000001})
    v1 = backend.register("demo-math", "/work/out/demo/models/srl", first)
    v2 = backend.register("demo-math", "/work/out/demo/models/rlvr", second)

    assert (v1.version, v2.version) == ("1", "2")
    assert v1.status == v2.status == "candidate"
    assert v1.lineage == first and v2.lineage == second
    assert v1.aliases == []
    assert v1.ref == "demo-math@1"

    got = backend.get("demo-math", "1")
    assert got.name == "demo-math"
    assert got.source == "/work/out/demo/models/srl"
    assert got.lineage == first
    assert got.lineage.data_sha256 == first.data_sha256
    assert got.lineage.eval_metrics == first.eval_metrics  # floats exactly, not rounded
    assert got.status == "candidate"
    assert backend.get("demo-math", "2").lineage == second
    created = datetime.fromisoformat(got.created_at)
    assert created.utcoffset().total_seconds() == 0


def test_versions_oldest_first_and_names(backend):
    for i in range(3):
        backend.register("alpha", f"/models/alpha-{i}", make_lineage(config_hash=str(i)))
    backend.register("beta", "/models/beta", make_lineage())
    backend.set_meta("audit_head", "0" * 64)  # creates the reserved meta model/group

    versions = backend.versions("alpha")
    assert [v.version for v in versions] == ["1", "2", "3"]
    assert [v.source for v in versions] == ["/models/alpha-0", "/models/alpha-1", "/models/alpha-2"]
    assert [v.lineage.config_hash for v in versions] == ["0", "1", "2"]
    assert backend.names() == ["alpha", "beta"]  # not the meta model


def test_non_path_source_round_trips(backend):
    assert backend.register("s3-model", "s3://bucket/models/x", make_lineage()).source == "s3://bucket/models/x"
    assert backend.get("s3-model", "1").source == "s3://bucket/models/x"


def test_aliases(backend):
    for i in range(2):
        backend.register("demo", f"/models/{i}", make_lineage())
    assert backend.alias_version("demo", "champion") is None

    backend.set_alias("demo", "champion", "1")
    backend.set_alias("demo", "challenger", "2")
    assert backend.alias_version("demo", "champion") == "1"
    assert backend.get("demo", "1").aliases == ["champion"]
    assert backend.resolve("demo", "champion").version == "1"
    assert backend.resolve("demo", "2").aliases == ["challenger"]

    backend.set_alias("demo", "champion", "2")  # moving
    assert backend.alias_version("demo", "champion") == "2"
    assert backend.get("demo", "1").aliases == []
    assert backend.get("demo", "2").aliases == ["challenger", "champion"]
    assert {v.version: v.aliases for v in backend.versions("demo")} == {"1": [], "2": ["challenger", "champion"]}
    assert backend.resolve("demo", "champion").source == "/models/1"

    backend.delete_alias("demo", "champion")
    assert backend.alias_version("demo", "champion") is None
    assert backend.get("demo", "2").aliases == ["challenger"]
    backend.delete_alias("demo", "champion")  # deleting an alias no version holds is a no-op
    with pytest.raises(RegistryError, match="champion"):
        backend.resolve("demo", "champion")


def test_statuses_round_trip(backend):
    backend.register("demo", "/models/0", make_lineage())
    for status in (*STATUSES[1:], STATUSES[0]):
        backend.set_status("demo", "1", status)
        assert backend.get("demo", "1").status == status
        assert backend.versions("demo")[0].status == status
    backend.set_status("demo", "1", "archived")
    assert backend.get("demo", "1").lineage == make_lineage()  # a status change keeps the lineage
    with pytest.raises(RegistryError, match="status"):
        backend.set_status("demo", "1", "deployed")


def test_unknown_name_version_alias(backend):
    backend.register("demo", "/models/0", make_lineage())
    for call in (lambda: backend.get("nope", "1"), lambda: backend.versions("nope"),
                 lambda: backend.set_status("nope", "1", "approved"), lambda: backend.set_alias("nope", "x", "1"),
                 lambda: backend.alias_version("nope", "x"), lambda: backend.delete_alias("nope", "x"),
                 lambda: backend.resolve("nope", "champion")):
        with pytest.raises(RegistryError, match="unknown model 'nope'"):
            call()
    for call in (lambda: backend.get("demo", "7"), lambda: backend.set_status("demo", "7", "approved"),
                 lambda: backend.set_alias("demo", "champion", "7"), lambda: backend.resolve("demo", "7")):
        with pytest.raises(RegistryError, match="demo has no version 7"):
            call()
    with pytest.raises(RegistryError, match="no version holds the alias 'champion'"):
        backend.resolve("demo", "champion")
    with pytest.raises(RegistryError):
        backend.get("demo", "one")
    with pytest.raises(RegistryError, match="reserved"):
        backend.register("srl-rlvr-registry-meta", "/models/0", make_lineage())
    with pytest.raises(RegistryError):
        backend.get("srl-rlvr-registry-meta", "1")


def test_meta_round_trip_and_overwrite(backend):
    assert backend.get_meta("audit_head") is None
    backend.set_meta("audit_head", "a" * 64)
    assert backend.get_meta("audit_head") == "a" * 64
    backend.set_meta("audit_head", "b" * 64)
    assert backend.get_meta("audit_head") == "b" * 64
    assert backend.get_meta("other") is None
    odd = '{"path": "/tmp/a b", "n": 1} # é'
    backend.set_meta("other", odd)
    assert backend.get_meta("other") == odd
    assert backend.get_meta("audit_head") == "b" * 64
    assert backend.names() == []


def test_long_lineage_round_trips(backend):
    lineage = make_lineage(n_files=60, eval_predictions="/work/out/" + "deep/" * 40 + "predictions.jsonl")
    assert len(str(lineage.to_dict())) > 5000  # past one MLflow tag, past many SageMaker metadata values
    v = backend.register("big", "/models/big", lineage)
    assert v.lineage == lineage
    assert backend.get("big", v.version).lineage == lineage
    assert backend.versions("big")[0].lineage == lineage
