"""run_pipeline end to end on the tiny model: outputs, incremental reruns, and a loud RLVR handoff."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from srl_rlvr.errors import UserInputError
from srl_rlvr.ops import ledger
from srl_rlvr.ops.ledger import DONE
from srl_rlvr.pipelines import run as pipeline
from srl_rlvr.pipelines.config import load_pipeline_config
from srl_rlvr.pipelines.data import prepare_data
from srl_rlvr.pipelines.run import run_pipeline

STAGE_ARGS = dict(
    num_generations=2, per_device_train_batch_size=4, max_completion_length=8, max_steps=2, learning_rate=1e-2,
    logging_steps=1, report_to=[], save_strategy="no", use_cpu=True, bf16=False, gradient_checkpointing=False,
    disable_tqdm=True, seed=0, max_refill_rounds=1,
)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Two threads thrash on a loaded 2-core box and make the tiny model ~100x slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_config(model_dir: Path, **overrides):
    return load_pipeline_config(None, {
        "model": str(model_dir),
        "data.demo": {"n_train": 8, "n_test": 4, "n_dev": 3, "n_transfer": 4, "seed": 0},
        "stages": ["srl", "rlvr", "eval"],
        "srl": {**STAGE_ARGS, "reward_mode": "lenient"},
        "rlvr": STAGE_ARGS,
        "eval": {"models": ["base", "srl", "srl_rlvr"], "sets": ["test", "transfer"], "max_new_tokens": 8,
                 "batch_size": 4},
        "tracking.mlflow": False,
        **overrides,
    })


@pytest.fixture(scope="module")
def finished_run(tiny_model_dir, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("pipeline") / "out"
    report = run_pipeline(tiny_config(tiny_model_dir), out)
    return out, report


@pytest.fixture()
def run_copy(finished_run, tmp_path) -> Path:
    """A private copy of the finished run, for tests that rerun or break it."""
    out = tmp_path / "out"
    shutil.copytree(finished_run[0], out)
    return out


class Spy:
    """Counts calls of a stage function; ``fail=True`` turns a call into a test failure."""

    def __init__(self, real=None, fail: bool = False):
        self.real, self.fail, self.calls = real, fail, []

    def __call__(self, *args, **kwargs):
        self.calls.append(args)
        if self.fail:
            raise AssertionError(f"unexpected call with {args}")
        return self.real(*args, **kwargs)


def test_report_has_the_promised_keys_and_types(finished_run):
    out, report = finished_run
    assert json.loads((out / "report.json").read_text()) == json.loads(json.dumps(report, default=str))
    for stage in ("srl", "rlvr"):
        s = report["stages"][stage]
        assert isinstance(s["reward_first10"], float) and isinstance(s["reward_last10"], float)
        assert s["global_step"] == 2 and len(s["steps"]) == 2 and all(isinstance(r, float) for r in s["steps"])
        assert s["halves"] is True  # 2 logged steps < 20: first/last halves
        assert "format_ok_first10" in s and "format_ok_last10" in s
    assert set(report["accuracy"]) == {"base", "srl", "srl_rlvr"}
    assert all(isinstance(a, float) and 0.0 <= a <= 1.0 for a in report["accuracy"].values())
    assert set(report["eval"]) == {"test", "transfer"} and report["headline_set"] == "test"
    assert report["eval"]["test"]["srl"]["n"] == 4 and report["eval"]["transfer"]["srl"]["n"] == 4
    for set_name in ("test", "transfer"):
        summ = report["eval_summary"][set_name]
        assert summ["n"] == 4 and set(summ["models"]) == {"base", "srl", "srl_rlvr"}
        for m in summ["models"].values():
            assert m["ci"][0] <= m["accuracy"] <= m["ci"][1] and sum(g["n"] for g in m["by_steps"].values()) == 4
        assert set(summ["comparisons"]) == {"srl_rlvr_vs_base", "srl_rlvr_vs_srl", "srl_vs_base"}
        assert all(0.0 <= c["p_one_sided"] <= 1.0 for c in summ["comparisons"].values())
    assert report["config"]["stages"] == ["srl", "rlvr", "eval"]
    assert set(report["timings_s"]) >= {"data", "srl", "rlvr", "eval"}
    md = (out / "report.md").read_text()
    assert "## SRL" in md and "## RLVR" in md and "first and last" in md and "| srl_rlvr |" in md
    assert "reward_curves.png" in md and (out / "reward_curves.png").is_file() and (out / "accuracy.png").is_file()
    for stage in ("srl", "rlvr"):
        done = json.loads((out / stage / DONE).read_text())
        assert done["global_step"] == 2 and done["config_hash"] and done["finished_at"]
    assert {p.name for p in (out / "data").iterdir()} >= {"train.jsonl", "test.jsonl", "dev.jsonl", "transfer.jsonl",
                                                         "srl_train.jsonl"}
    assert "## Accuracy (transfer set)" in md and "95% CI" in md and "srl_rlvr vs base" in md


def test_published_models_load(finished_run):
    from srl_rlvr.models import load_model_and_tokenizer
    from srl_rlvr.registry.manifest import read_manifest

    out, _ = finished_run
    for label, stage in (("srl", "srl"), ("srl_rlvr", "rlvr")):
        model, tokenizer = load_model_and_tokenizer(str(out / "models" / label))
        assert model is not None and tokenizer is not None
        assert read_manifest(out / "models" / label)["stage"] == stage


def test_rerun_skips_every_stage(tiny_model_dir, run_copy, monkeypatch, capsys):
    from srl_rlvr.eval import harness

    monkeypatch.setattr(pipeline, "train_srl", Spy(fail=True))
    monkeypatch.setattr(pipeline, "train_rlvr", Spy(fail=True))
    monkeypatch.setattr(harness, "evaluate", Spy(fail=True))
    report = run_pipeline(tiny_config(tiny_model_dir), run_copy)
    printed = capsys.readouterr().out
    assert ("skip srl: done" in printed and "skip rlvr: done" in printed
            and "skip eval srl_rlvr on transfer: done" in printed)
    assert report["stages"]["rlvr"]["global_step"] == 2  # the report is rebuilt from what is on disk


def test_changed_rlvr_config_reruns_only_rlvr_and_its_eval(tiny_model_dir, run_copy, monkeypatch, capsys):
    from srl_rlvr.eval import harness

    rlvr_spy, eval_spy = Spy(pipeline.train_rlvr), Spy(harness.evaluate)
    monkeypatch.setattr(pipeline, "train_srl", Spy(fail=True))
    monkeypatch.setattr(pipeline, "train_rlvr", rlvr_spy)
    monkeypatch.setattr(harness, "evaluate", eval_spy)
    report = run_pipeline(tiny_config(tiny_model_dir, **{"rlvr": {**STAGE_ARGS, "max_steps": 3}}), run_copy)
    assert len(rlvr_spy.calls) == 1
    assert [str(c[0]) for c in eval_spy.calls] == [str(run_copy / "rlvr" / "final")] * 2  # only srl_rlvr, on both sets
    assert "rerun rlvr: rlvr.max_steps: 2 -> 3" in capsys.readouterr().out
    assert report["stages"]["rlvr"]["global_step"] == 3 and report["stages"]["srl"]["global_step"] == 2


def test_rlvr_without_the_srl_final_fails_loudly(tiny_model_dir, run_copy, monkeypatch):
    rlvr_spy = Spy(fail=True)
    monkeypatch.setattr(pipeline, "train_rlvr", rlvr_spy)
    before = (run_copy / "rlvr" / DONE).read_text()
    shutil.rmtree(run_copy / "srl" / "final")
    config = tiny_config(tiny_model_dir, **{"rlvr": {**STAGE_ARGS, "max_steps": 3}})
    with pytest.raises(UserInputError, match=r"rlvr starts from .*srl/final, which is missing"):
        run_pipeline(config, run_copy, only=["rlvr"])
    assert rlvr_spy.calls == [] and (run_copy / "rlvr" / DONE).read_text() == before  # nothing trained or touched


def test_rlvr_stage_itself_refuses_a_missing_checkpoint(tiny_model_dir, tmp_path):
    """Even past the pipeline's own check, stages.train_rlvr never falls back to the base model."""
    from srl_rlvr.training.stages import train_rlvr

    config = tiny_config(tiny_model_dir)
    data = prepare_data(config, tmp_path, need_test=False)
    with pytest.raises(UserInputError, match="not found"):
        train_rlvr(tmp_path / "srl" / "final", data.train, config.rlvr_args(tmp_path / "rlvr"))


def test_unfinished_stage_starts_over_without_resume(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "out"
    (out / "srl" / "checkpoint-1").mkdir(parents=True)
    (out / "srl" / ledger.STARTED).write_text("{}")  # what a killed run leaves behind
    (out / "srl" / "leftover.txt").write_text("from a killed run")
    run_pipeline(tiny_config(tiny_model_dir, stages=["srl"], **{"srl.max_steps": 1}), out)
    assert "srl: unfinished run found; starting over" in capsys.readouterr().out
    assert not (out / "srl" / "leftover.txt").exists() and (out / "srl" / "final").is_dir()


def test_a_folder_that_is_not_a_stage_folder_is_never_wiped(tmp_path):
    precious = tmp_path / "home"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    with pytest.raises(UserInputError, match="refusing to clean"):
        ledger.run_step("srl", precious, {"x": 1}, lambda resuming: 1)
    assert (precious / "thesis.tex").read_text() == "years of work"


def test_trajectory_files_are_normalised_into_out_data(tiny_model_dir, tmp_path):
    fixture = Path(__file__).resolve().parents[1] / "fixtures" / "s1k_sample.jsonl"
    config = tiny_config(tiny_model_dir, **{"data": {"train": str(fixture), "test": str(fixture), "demo": None}})
    data = prepare_data(config, tmp_path, need_test=True)
    rows = [json.loads(line) for line in data.train.read_text().splitlines()]
    assert rows and all("problem" in r and "id" in r for r in rows)  # s1K rows became trajectory rows
    assert data.srl_train.stat().st_size > 0 and data.test is not None
    with pytest.raises(UserInputError, match="data.train is not set"):
        prepare_data(tiny_config(tiny_model_dir, **{"data": {"demo": None}}), tmp_path / "x", need_test=False)


def test_sft_stage_feeds_rlvr(tiny_model_dir, tmp_path):
    sft = dict(max_steps=1, per_device_train_batch_size=2, max_length=1024, learning_rate=1e-3, logging_steps=1,
               report_to=[], save_strategy="no", use_cpu=True, bf16=False, disable_tqdm=True)
    config = tiny_config(tiny_model_dir, stages=["sft", "rlvr", "eval"], sft=sft, **{"rlvr.max_steps": 1},
                         **{"eval.models": ["sft", "srl_rlvr"]})
    report = run_pipeline(config, tmp_path / "out")
    manifest = json.loads((tmp_path / "out" / "rlvr" / "final" / "srl_rlvr_stage.json").read_text())
    assert manifest["init_from"] == str(tmp_path / "out" / "sft" / "final")
    assert set(report["accuracy"]) == {"sft", "srl_rlvr"} and report["stages"]["sft"]["global_step"] == 1
    assert (tmp_path / "out" / "models" / "sft").is_dir()


def test_tracking_turns_on_mlflow_with_a_local_store(tiny_model_dir, tmp_path, monkeypatch):
    import importlib.util

    for key in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_ALLOW_FILE_STORE"):
        monkeypatch.delenv(key, raising=False)
    assert pipeline.tracking_args(tiny_config(tiny_model_dir), tmp_path, "srl") == {}  # tracking.mlflow: false
    config = tiny_config(tiny_model_dir, **{"tracking": {"mlflow": True, "experiment": "exp"}})
    args = pipeline.tracking_args(config, tmp_path, "srl")
    if importlib.util.find_spec("mlflow") is None:
        assert args == {}
        return
    assert args == {"report_to": ["mlflow"], "run_name": "srl"}
    import os

    assert os.environ["MLFLOW_TRACKING_URI"] == f"file:{tmp_path.resolve() / 'mlruns'}"
    assert os.environ["MLFLOW_EXPERIMENT_NAME"] == "exp"
    assert config.srl_args(tmp_path / "srl", **args).report_to == ["mlflow"]


def test_two_process_launch_trains_together_and_writes_once(tiny_model_dir, tmp_path):
    """accelerate launch / torchrun start `srl-rlvr run` in every process: all train, rank 0 alone writes OUT."""
    import os
    import socket
    import subprocess
    import sys

    import yaml

    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({
        "model": str(tiny_model_dir), "data": {"demo": {"n_train": 8, "n_test": 4, "seed": 0}},
        "stages": ["srl", "eval"],
        "srl": {**STAGE_ARGS, "reward_mode": "lenient"}, "tracking": {"mlflow": False},
        "eval": {"models": ["base", "srl"], "max_new_tokens": 8, "batch_size": 4},
    }))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(port), "-m", "srl_rlvr.cli.main", "run", str(config), "--out", str(tmp_path / "out")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.count("srl finished in") == 1  # rank 0 speaks for both
    done = json.loads((tmp_path / "out" / "srl" / DONE).read_text())
    assert done["global_step"] == 2
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert set(report["accuracy"]) == {"base", "srl"}


def _retrain(real, perturb: bool):
    """``train_srl`` that, with ``perturb``, lands on slightly different weights (another machine's run)."""
    def train(*args, **kwargs):
        result = real(*args, **kwargs)
        if perturb:
            from safetensors.torch import load_file, save_file

            path = Path(result.final_dir) / "model.safetensors"
            tensors = load_file(str(path))
            name = sorted(tensors)[0]
            tensors[name] = tensors[name] + 1e-3
            save_file(tensors, str(path), metadata={"format": "pt"})
        return result
    return train


@pytest.mark.parametrize("weights_change", [True, False])
def test_retrained_srl_reruns_downstream_exactly_when_its_weights_change(tiny_model_dir, run_copy, monkeypatch,
                                                                         weights_change):
    from srl_rlvr.eval import harness

    done = json.loads((run_copy / "srl" / DONE).read_text())
    assert done["artifact_digest"]  # the SRL _DONE.json records the digest of its final/
    shutil.rmtree(run_copy / "srl" / "final")  # gone, so SRL retrains under the very same config
    srl_spy = Spy(_retrain(pipeline.train_srl, weights_change))
    rlvr_spy, eval_spy = Spy(pipeline.train_rlvr), Spy(harness.evaluate)
    monkeypatch.setattr(pipeline, "train_srl", srl_spy)
    monkeypatch.setattr(pipeline, "train_rlvr", rlvr_spy)
    monkeypatch.setattr(harness, "evaluate", eval_spy)
    run_pipeline(tiny_config(tiny_model_dir), run_copy)
    assert len(srl_spy.calls) == 1
    if weights_change:  # new weights: RLVR retrains from them, srl and srl_rlvr are re-evaluated, base is not
        assert len(rlvr_spy.calls) == 1
        assert sorted(Path(c[0]).parent.name for c in eval_spy.calls) == ["rlvr", "rlvr", "srl", "srl"]
    else:  # the same weights again (CPU training is deterministic here): nothing downstream reruns
        assert rlvr_spy.calls == [] and eval_spy.calls == []


def test_run_with_an_injected_fault_reports_the_recovery(tiny_model_dir, tmp_path):
    """`srl-rlvr run --inject-fault nan@2`: the first training stage rolls back, and report.json says so."""
    from srl_rlvr.ops.failures import FaultPlan

    config = tiny_config(tiny_model_dir, stages=["srl", "rlvr"])
    report = run_pipeline(config, tmp_path / "out", fault=FaultPlan.parse("nan@2"))
    assert [(r["stage"], r["reason"], r["step"]) for r in report["recoveries"]] == [("srl", "nan", 2)]
    assert "## Recoveries" in (tmp_path / "out" / "report.md").read_text()
    assert report["stages"]["rlvr"]["global_step"] == STAGE_ARGS["max_steps"]  # the fault fired once
