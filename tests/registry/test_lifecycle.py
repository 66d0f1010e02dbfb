"""The registry's lifecycle through the CLI: register with lineage, the eval gate, force, rollback, history,
and a tampered audit log. On the default backend (MLflow, SQLite), as a user runs it."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from srl_rlvr.cli.main import cli

N = 60


def fake_model(root: Path, label: str) -> Path:
    folder = root / "models" / label
    folder.mkdir(parents=True)
    (folder / "srl_rlvr_stage.json").write_text(json.dumps({
        "stage": "rlvr", "base_model": "tiny", "lora": False, "config_hash": f"hash-{label}",
        "mlflow_run_id": f"run-{label}", "data_sha256": {"train.jsonl": "ab" * 32}}))
    (folder / "model.safetensors").write_bytes(label.encode())
    return folder


def fake_eval(root: Path, label: str, correct_ids: set[int], ids: range = range(N)) -> Path:
    folder = root / "eval" / label
    folder.mkdir(parents=True)
    rows = [{"id": f"q{i}", "correct": i in correct_ids} for i in ids]
    (folder / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    metrics = {"greedy_accuracy": sum(r["correct"] for r in rows) / len(rows), "n": len(rows), "k": 1}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    return folder / "metrics.json"


@pytest.fixture
def reg(tmp_path, monkeypatch):
    monkeypatch.setenv("SRL_RLVR_REGISTRY", f"sqlite:///{tmp_path / 'reg' / 'registry.db'}")
    monkeypatch.delenv("SRL_RLVR_AUDIT_LOG", raising=False)
    monkeypatch.setenv("SRL_RLVR_ACTOR", "ci-bot")
    runner = CliRunner()

    def run(*args: str, ok: bool = True):
        result = runner.invoke(cli, ["registry", *args])
        if ok:
            assert result.exit_code == 0, result.output + repr(result.exception)
        return result

    return run


def register(reg, tmp_path: Path, label: str, correct: set[int], ids: range = range(N)) -> str:
    out = reg("register", "--name", "math", "--model", str(fake_model(tmp_path, label)),
              "--eval", str(fake_eval(tmp_path, label, correct, ids)))
    return out.output.split("math@")[1].split(" ")[0]


def test_register_records_lineage_and_show_gives_it_back(reg, tmp_path):
    version = register(reg, tmp_path, "a", set(range(10)))
    shown = json.loads(reg("show", f"math@{version}").output)
    lineage = shown["lineage"]
    assert shown["status"] == "candidate" and shown["source"].endswith("models/a")
    assert lineage["stage"] == "rlvr" and lineage["kind"] == "full" and lineage["config_hash"] == "hash-a"
    assert lineage["training_run_id"] == "run-a" and lineage["data_sha256"] == {"train.jsonl": "ab" * 32}
    assert lineage["eval_metrics"]["greedy_accuracy"] == pytest.approx(10 / N)
    assert len(lineage["eval_set_digest"]) == 64
    assert len(lineage["git_commit"]) in (0, 40)
    assert "math@1" in reg("list").output


def test_the_gate_refuses_a_worse_candidate_with_the_numbers_and_force_needs_a_reason(reg, tmp_path):
    good = register(reg, tmp_path, "good", set(range(30)))
    reg("promote", "math", good)  # the first holder
    worse = register(reg, tmp_path, "worse", set(range(20)))
    refused = reg("promote", "math", worse, ok=False)
    assert refused.exit_code != 0
    message = str(refused.exception) + refused.output
    assert "gate refused" in message and "0.333 vs math@1 0.500" in message and "p=" in message
    no_reason = reg("promote", "math", worse, "--force", ok=False)
    assert no_reason.exit_code != 0 and "--force needs --reason" in str(no_reason.exception) + no_reason.output
    forced = reg("promote", "math", worse, "--force", "--reason", "drill: forced on purpose")
    assert "(forced)" in forced.output
    history = reg("history", "math", "--alias", "champion").output
    assert "force_promote" in history and "drill: forced on purpose" in history


def test_a_better_candidate_passes_only_when_significant_and_on_the_same_eval_set(reg, tmp_path):
    base = register(reg, tmp_path, "base", set(range(10)))
    reg("promote", "math", base)
    slightly = register(reg, tmp_path, "slightly", set(range(11)))
    assert "gate refused" in str(reg("promote", "math", slightly, ok=False).exception)  # +1 of 60: not significant
    other_set = register(reg, tmp_path, "other", set(range(50)), ids=range(100, 160))
    assert "different eval sets" in str(reg("promote", "math", other_set, ok=False).exception)
    clearly = register(reg, tmp_path, "clearly", set(range(30)))
    passed = reg("promote", "math", clearly)
    assert "gate passes" in passed.output and "+0.333" in passed.output


def test_history_answers_who_held_the_alias_at_three_times_after_promote_promote_rollback(reg, tmp_path):
    v1 = register(reg, tmp_path, "v1", set(range(10)))
    v2 = register(reg, tmp_path, "v2", set(range(40)))
    times = []

    def now() -> str:
        return dt.datetime.now(dt.timezone.utc).isoformat()

    reg("promote", "math", v1)
    times.append(now())
    reg("promote", "math", v2)
    times.append(now())
    assert "-> 1 (rolled back)" in reg("rollback", "math", "--reason", "v2 regressed in production").output
    times.append(now())
    answers = [reg("history", "math", "--alias", "champion", "--at", t).output.strip().split(": ")[-1] for t in times]
    assert answers == [v1, v2, v1]
    before = reg("history", "math", "--alias", "champion", "--at", "2000-01-01").output
    assert before.strip().endswith("no version")
    assert json.loads(reg("show", "math@champion").output)["version"] == v1


def test_one_edited_byte_in_the_audit_log_fails_verify_naming_the_line(reg, tmp_path):
    v1 = register(reg, tmp_path, "v1", set(range(10)))
    reg("promote", "math", v1)
    assert "2 entries, chain and head intact" in reg("audit", "verify").output
    log = tmp_path / "reg" / "audit.jsonl"
    data = bytearray(log.read_bytes())
    second = data.index(b"\n") + 1
    at = data.index(b'"promote"', second) + 2
    data[at] = ord("q")  # "promote" -> "pqomote" on line 2
    log.write_bytes(bytes(data))
    bad = reg("audit", "verify", ok=False)
    assert bad.exit_code == 1 and "line 2" in bad.output and "TAMPERED" in bad.output
    blocked = reg("promote", "math", v1, ok=False)  # a tampered log blocks every change
    assert blocked.exit_code != 0 and "line 2" in str(blocked.exception)


def test_deleting_the_last_audit_line_is_caught_by_the_head_the_registry_keeps(reg, tmp_path):
    v1 = register(reg, tmp_path, "v1", set(range(10)))
    reg("promote", "math", v1)
    log = tmp_path / "reg" / "audit.jsonl"
    lines = log.read_bytes().splitlines(keepends=True)
    log.write_bytes(b"".join(lines[:-1]))
    bad = reg("audit", "verify", ok=False)
    assert bad.exit_code == 1 and "missing" in bad.output


def test_unknown_names_and_versions_are_one_line_errors(reg, tmp_path):
    register(reg, tmp_path, "v1", set(range(10)))
    for args in (("show", "nope@1"), ("show", "math@9"), ("show", "math@champion"), ("rollback", "math"),
                 ("promote", "math", "7")):
        result = reg(*args, ok=False)
        assert result.exit_code != 0 and "Traceback" not in result.output, args
