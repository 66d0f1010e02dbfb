"""Drills for docs/playbooks/failures/: each test causes its failure for real, then runs the page's
``bash drill`` blocks in order (Diagnosis, Mitigation, Verification) in one shell; the page passes when
every block exits 0 (the Verification block is the check). ``bash manual`` blocks are listed as skipped.

Training failures use ``srl-rlvr train srl --inject-fault`` on the tiny model (as tests/ops/test_fault_drills.py
does); a bad promotion and a cost overrun use a real ``srl-rlvr serve`` child process; a teacher outage uses
``srl-rlvr distill`` against a port where nothing listens, then a teacher that comes back.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PAGES = ROOT / "docs" / "playbooks" / "failures"
FENCE = re.compile(r"^```(?P<info>[^\n]*)\n(?P<body>.*?)^```$", re.M | re.S)
SECTIONS = ["Meaning", "Impact", "Diagnosis", "Mitigation", "Verification", "Rollback"]
KINDS = ["nan", "oom", "preemption", "disk-full", "corrupted-checkpoint", "bad-promotion", "teacher-outage",
         "cost-overrun"]
PY = sys.executable
CLI = f"{shlex.quote(PY)} -m srl_rlvr.cli.main"
QUIET = {"PYTHONUNBUFFERED": "1", "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1"}
TRAIN_CONFIG = {"tracking": {"mlflow": False}, "srl": {
    "reward_mode": "lenient", "num_generations": 2, "per_device_train_batch_size": 4, "max_completion_length": 16,
    "learning_rate": 1.0e-2, "logging_steps": 1, "save_strategy": "steps", "save_steps": 2, "save_total_limit": 3,
    "use_cpu": True, "bf16": False, "gradient_checkpointing": False, "report_to": [], "seed": 0}}


def page_blocks(kind: str) -> list[tuple[str, int, str]]:
    text = (PAGES / f"{kind}.md").read_text(encoding="utf-8")
    out = []
    for m in FENCE.finditer(text):
        info = m["info"].split()
        if info and info[0] == "bash":
            out.append((info[1] if len(info) > 1 else "", text[: m.start()].count("\n") + 1, m["body"]))
    return out


def _env(**extra: str) -> dict[str, str]:
    bin_dir = str(Path(PY).parent)
    return {**os.environ, **QUIET, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", **extra}


def run_drill(kind: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """The page's drill blocks, in order, in one shell; fails naming the block that failed."""
    script = ["set -euo pipefail"]
    for tag, line, body in page_blocks(kind):
        if tag == "drill":
            script += [f"echo '::: {kind}.md:{line}'", body]
    p = subprocess.run(["bash", "-c", "\n".join(script)], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=900)
    where = re.findall(rf"^::: ({re.escape(kind)}\.md:\d+)$", p.stdout, re.M)
    assert p.returncode == 0, f"drill failed in the block at {where[-1] if where else '?'}:\n" \
                              f"{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    return p


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, timeout: float = 180.0, proc: subprocess.Popen | None = None) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}")
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"{url} did not answer")


# --- structure ---------------------------------------------------------------------------------------------
def test_every_failure_kind_has_a_page_with_the_six_sections_and_a_drill():
    assert sorted(p.stem for p in PAGES.glob("*.md") if p.stem != "README") == sorted(KINDS)
    for kind in KINDS:
        text = (PAGES / f"{kind}.md").read_text(encoding="utf-8")
        assert re.findall(r"^## (\w+)", text, re.M) == SECTIONS, kind
        tags = [tag for tag, _, _ in page_blocks(kind)]
        assert set(tags) <= {"drill", "manual"} and "drill" in tags, (kind, tags)
        verification = text.split("## Verification", 1)[1].split("## Rollback", 1)[0]
        assert "```bash drill" in verification, f"{kind}: the Verification section needs a drill block"
        assert f"test_{kind.replace('-', '_')}" in Path(__file__).read_text(encoding="utf-8"), kind


@pytest.mark.parametrize("kind,line,first", [(k, line, body.strip().splitlines()[0]) for k in KINDS
                                             for tag, line, body in page_blocks(k) if tag == "manual"])
def test_manual_blocks(kind, line, first):
    pytest.skip(f"docs/playbooks/failures/{kind}.md:{line}: a manual step (a human decision): {first}")


# --- training failures ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def training(tiny_model_dir, tmp_path_factory):
    from srl_rlvr.data.demo import make_demo_task
    from srl_rlvr.data.schema import Trajectory
    from srl_rlvr.data.srl import build_instances, write_jsonl

    root = tmp_path_factory.mktemp("playbooks")
    train, _ = make_demo_task(n_train=12, n_test=2, seed=3)
    write_jsonl(root / "srl.jsonl", build_instances([Trajectory(**t) for t in train]).instances)
    (root / "srl.yaml").write_text(yaml.safe_dump(TRAIN_CONFIG), encoding="utf-8")
    return root, tiny_model_dir


def _train_env(training, name: str) -> tuple[dict[str, str], str]:
    root, model = training
    out = root / name / "srl"
    command = (f"{CLI} train srl --model {shlex.quote(str(model))} --data {shlex.quote(str(root / 'srl.jsonl'))} "
               f"--out {shlex.quote(str(out))} --config {shlex.quote(str(root / 'srl.yaml'))} --set max_steps=6")
    return _env(OUT=str(out), TRAIN=command), command


def _cause(command: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(shlex.split(command) + list(extra), capture_output=True, text=True, env=_env(),
                          timeout=600)


@pytest.mark.slow
def test_nan(training):
    env, command = _train_env(training, "nan")
    caused = _cause(command, "--set", "failures.nan_retries=0", "--inject-fault", "nan@3")
    assert caused.returncode != 0 and "still non-finite after 0 rollback(s)" in caused.stderr
    run_drill("nan", env)


@pytest.mark.slow
def test_oom(training):
    env, command = _train_env(training, "oom")
    assert _cause(command, "--inject-fault", "oom@3").returncode == 0  # recovered by itself
    run_drill("oom", env)


@pytest.mark.slow
def test_preemption(training):
    from srl_rlvr.ops.failures import EXIT_PREEMPTED

    env, command = _train_env(training, "preemption")
    assert _cause(command, "--inject-fault", "sigterm@3").returncode == EXIT_PREEMPTED
    assert "final global step 6" in run_drill("preemption", env).stdout


@pytest.mark.slow
def test_disk_full(training):
    from srl_rlvr.ops.failures import EXIT_DISK_FULL

    env, command = _train_env(training, "disk-full")
    assert _cause(command, "--inject-fault", "enospc@4").returncode == EXIT_DISK_FULL
    assert "no half-written checkpoint left" in run_drill("disk-full", env).stdout


@pytest.mark.slow
def test_corrupted_checkpoint(training):
    env, command = _train_env(training, "corrupt")
    assert _cause(command, "--inject-fault", "sigterm@5").returncode != 0
    weights = Path(env["OUT"]) / "checkpoint-5" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte inside a tensor
    weights.write_bytes(bytes(data))
    out = run_drill("corrupted-checkpoint", env).stdout
    assert "a checkpoint is corrupt" in out and "skipping checkpoint-5" in out


# --- serving failures ----------------------------------------------------------------------------------------
class Server:
    """``srl-rlvr serve`` as a child process; ``restart(route_config)`` swaps its route config."""

    def __init__(self, args: list[str], folder: Path):
        self.args, self.folder, self.port = args, folder, _free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *extra: str) -> Server:
        log = (self.folder / f"serve-{time.monotonic_ns()}.log").open("wb")
        self.proc = subprocess.Popen([PY, "-m", "srl_rlvr.cli.main", "serve", *self.args, *extra,
                                      "--port", str(self.port)], stdout=log, stderr=subprocess.STDOUT, env=_env())
        _wait_http(self.url + "/health", proc=self.proc)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=30)


def _route_config(path: Path, tiny: Path) -> Path:
    config = yaml.safe_load((ROOT / "configs" / "loop-route-cpu.yaml").read_text(encoding="utf-8"))
    config["tiers"]["champion"]["model"] = str(tiny)
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


@pytest.mark.slow
def test_bad_promotion(tiny_model_dir, tmp_path):
    from srl_rlvr.registry.lifecycle import Registry

    uri = f"sqlite:///{tmp_path / 'registry.db'}"
    registry = Registry.open(uri)
    from srl_rlvr.registry.manifest import write_manifest

    for name in ("good", "bad"):  # two finished "stages" (the tiny model with a stage manifest, as tests/registry)
        shutil.copytree(tiny_model_dir, tmp_path / name)
        write_manifest(tmp_path / name, {"stage": "rlvr", "base_model": "tiny", "lora": False})
        version = registry.register("m", tmp_path / name)
        registry.promote("m", version.version, force=True, reason=f"drill: {name} version")
    (tmp_path / "serve.yaml").write_text(yaml.safe_dump({"registry": {"poll_s": 0.5}}), encoding="utf-8")
    server = Server(["--model", "models:/m@champion", "--registry", uri, "--config", str(tmp_path / "serve.yaml")],
                    tmp_path).start()
    try:
        out = run_drill("bad-promotion", _env(NAME="m", REGISTRY=uri, SERVER=server.url)).stdout
    finally:
        server.stop()
    assert "server on version 1, champion is 1" in out
    assert Registry.open(uri).backend.alias_version("m", "champion") == "1"


@pytest.mark.slow
def test_cost_overrun(tiny_model_dir, tmp_path):
    from srl_rlvr.data.demo import make_demo_task

    route = _route_config(tmp_path / "route.yaml", tiny_model_dir)
    hard = next(r["problem"] for r in make_demo_task(4, 20, seed=9, min_ops=3, max_ops=3)[1])
    server = Server(["--model", str(tiny_model_dir), "--route-config"], tmp_path)
    server.start(str(route))
    restart = tmp_path / "restart.sh"
    try:
        import urllib.request

        for _ in range(3):  # the spike: hard requests at threshold 1 all go to the expensive teacher
            body = json.dumps({"model": "router-loop-1", "max_tokens": 8,
                               "messages": [{"role": "user", "content": hard}]}).encode()
            request = urllib.request.Request(server.url + "/v1/chat/completions", data=body,
                                             headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=120) as response:
                assert response.headers["x-srl-rlvr-tier"] == "teacher"
        # RESTART_SERVER: stop the child and start it again with the given route config
        pid_file = tmp_path / "pid"
        pid_file.write_text(str(server.proc.pid))
        restart.write_text(f"#!/usr/bin/env bash\nset -euo pipefail\nkill $(cat {pid_file}); sleep 1\n"
                           f"{CLI} serve --model {tiny_model_dir} --port {server.port} --route-config \"$1\" "
                           f"> {tmp_path}/restarted.log 2>&1 &\necho $! > {pid_file}\n"
                           f"for _ in $(seq 180); do curl -sf {server.url}/health >/dev/null && exit 0; "
                           "sleep 0.5; done\n"
                           "exit 1\n", encoding="utf-8")
        restart.chmod(0o755)
        # a budget that pays a small-tier answer (~1e-6 $) but not one teacher call (~1e-3 $)
        out = run_drill("cost-overrun", _env(SERVER=server.url, ROUTE_CONFIG=str(route), RESTART_SERVER=str(restart),
                                             BUDGET_USD="0.0001", ROUTER_MODEL="router-loop-1",
                                             HARD_PROBLEM=hard, CHEAP_TIER="champion")).stdout
    finally:
        pid = (tmp_path / "pid").read_text().strip() if (tmp_path / "pid").exists() else None
        server.stop()
        if pid:
            subprocess.run(["kill", pid], capture_output=True)
    assert "srl_rlvr_routing_cost_usd_total" in out and "answered by tier champion" in out


@pytest.mark.slow
def test_teacher_outage(tiny_model_dir, tmp_path):
    from srl_rlvr.data.demo import make_demo_task

    prompts = tmp_path / "prompts.jsonl"
    rows = make_demo_task(6, 2, seed=4, min_ops=1, max_ops=2)[0]
    prompts.write_text("".join(json.dumps({"id": r["id"], "problem": r["problem"], "answer": r["answer"]}) + "\n"
                               for r in rows), encoding="utf-8")
    port = _free_port()
    out_dir = tmp_path / "distill"
    teacher_url = f"http://127.0.0.1:{port}/v1"
    distill = (f"{CLI} distill --teacher-url {teacher_url} --teacher-model tier-loop-teacher --prompts {prompts} "
               f"--out {out_dir} --retries 1")
    down = subprocess.run(shlex.split(distill), capture_output=True, text=True, env=_env(), timeout=300)
    assert down.returncode != 0 and "Traceback" not in down.stderr
    assert json.loads((out_dir / "manifest.json").read_text())["complete"] is False
    server = Server(["--model", str(tiny_model_dir), "--route-config",
                     str(_route_config(tmp_path / "route.yaml", tiny_model_dir))], tmp_path)
    server.port = port
    server.start()  # the teacher is back
    try:
        out = run_drill("teacher-outage", _env(OUT=str(out_dir), TEACHER_URL=teacher_url, DISTILL=distill)).stdout
    finally:
        server.stop()
    assert "complete: False" in out and "kept 6" in out
