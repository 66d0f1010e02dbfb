"""The data CLI as a user runs it: real subprocesses, exit codes, no tracebacks for user mistakes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def run_cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "srl_rlvr.cli.main", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300)


def test_build_and_inspect_demo_data(tmp_path):
    r = run_cli("data", "demo", "--out", str(tmp_path), "--n-train", "20", "--n-test", "5")
    assert r.returncode == 0, r.stderr
    # Four splits; dev and transfer default to 100 problems each, and every file is printed.
    counts = {"train": 20, "dev": 100, "test": 5, "transfer": 100}
    assert "wrote 20 train, 100 dev, 5 test and 100 transfer problems" in r.stdout
    for name, n in counts.items():
        assert f"{tmp_path / (name + '.jsonl')}  ({n} problems)" in r.stdout
        assert len((tmp_path / f"{name}.jsonl").read_text().splitlines()) == n
    train = [json.loads(x) for x in (tmp_path / "train.jsonl").read_text().splitlines()]
    expected = sum(len(t["steps"]) for t in train)
    out = tmp_path / "srl.jsonl"
    r = run_cli("data", "build", "--input", str(tmp_path / "train.jsonl"), "--output", str(out))
    assert r.returncode == 0, r.stderr
    assert len(out.read_text().splitlines()) == expected
    assert f"instances written: {expected}" in r.stdout
    r = run_cli("data", "inspect", "--input", str(tmp_path / "train.jsonl"))
    assert r.returncode == 0, r.stderr
    assert "20 valid trajectories" in r.stdout and f"{expected} SRL instances" in r.stdout
    assert "step length" in r.stdout


def test_demo_split_sizes(tmp_path):
    r = run_cli("data", "demo", "--out", str(tmp_path), "--n-train", "6", "--n-dev", "4", "--n-test", "3",
                "--n-transfer", "2", "--numbers", "small", "--min-ops", "1", "--max-ops", "3")
    assert r.returncode == 0, r.stderr
    rows = {name: [json.loads(x) for x in (tmp_path / f"{name}.jsonl").read_text().splitlines()]
            for name in ("train", "dev", "test", "transfer")}
    assert {name: len(v) for name, v in rows.items()} == {"train": 6, "dev": 4, "test": 3, "transfer": 2}
    assert rows["dev"][0]["id"] == "demo-dev-0001" and rows["transfer"][0]["phrasing"] == "transfer"
    problems = [r["problem"] for v in rows.values() for r in v]
    assert len(set(problems)) == len(problems) == 15
    r = run_cli("data", "demo", "--out", str(tmp_path / "x"), "--n-dev", "-1")
    assert r.returncode == 2 and "--n-dev must be >= 0" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize(
    "content, where",
    [
        (b'{"id": "a", "problem": "p", "steps": ["x"]}\n{"id": "b", "problem": "p", "steps": "not a list"}\n',
         ":2: field 'steps'"),
        (b'{"id": "a", "problem": "p", "steps": ["x"]}\n{oops\n', ":2: field '<json>'"),
        (b'{"id": "a", "problem": "\xff", "steps": ["x"]}\n', ":1: field '<line>'"),
    ],
)
def test_bad_input_is_one_clear_line(tmp_path, content, where):
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(content)
    r = run_cli("data", "build", "--input", str(bad), "--output", str(tmp_path / "o.jsonl"))
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert f"{bad}{where}" in r.stderr


def test_skip_invalid_counts_and_reports(tmp_path):
    bad = tmp_path / "mixed.jsonl"
    bad.write_bytes(b'{"id": "a", "problem": "p", "steps": ["x", "y"]}\n{"id": 3}\n'
                    b'{"id": "c", "problem": "p", "steps": ["z"]}\n')
    r = run_cli("data", "build", "--input", str(bad), "--output", str(tmp_path / "o.jsonl"), "--skip-invalid")
    assert r.returncode == 0, r.stderr
    assert "2 valid, 1 invalid rows skipped" in r.stdout and "instances written: 3" in r.stdout
    assert f"{bad}:2: field 'id'" in r.stderr
    r = run_cli("data", "inspect", "--input", str(bad))
    assert f"{bad}:2: field 'id'" in r.stdout


def test_user_errors_have_no_traceback(tmp_path):
    r = run_cli("data", "build", "--input", str(tmp_path / "missing.jsonl"), "--output", str(tmp_path / "o.jsonl"))
    assert r.returncode == 2 and "no such file" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("data", "build", "--input", "x", "--output", "y", "--format", "nope")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    r = run_cli("data", "build", "--input", "x.jsonl", "--output", "y", "--format", "champ")
    assert r.returncode == 2 and "--input champ" in r.stderr


def test_every_command_help_shows_an_example():
    for cmd in (["data", "build"], ["data", "demo"], ["data", "inspect"], ["models", "prepare"], ["demo"]):
        r = run_cli(*cmd, "--help")
        assert r.returncode == 0, r.stderr
        assert "Example" in r.stdout and "srl-rlvr " + " ".join(cmd) in r.stdout
