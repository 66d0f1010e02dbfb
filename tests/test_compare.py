"""`srl-rlvr compare` on the tiny model: six arms, equal budgets, the right starting points, reruns skip."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from srl_rlvr.errors import UserInputError
from srl_rlvr.pipelines.compare import run as compare
from srl_rlvr.pipelines.compare.report import DOCS_BEGIN, DOCS_END, update_docs
from srl_rlvr.pipelines.compare.run import ARMS, BASE_INIT, compare_settings, plan_arms, run_compare
from srl_rlvr.pipelines.config import load_pipeline_config
from srl_rlvr.registry.manifest import STAGE_MANIFEST as MANIFEST
from srl_rlvr.registry.manifest import read_manifest
from srl_rlvr.training.stages import load_stage_checkpoint

REPO = Path(__file__).resolve().parents[1]
AIME25 = REPO / "tests" / "fixtures" / "aime25_sample.jsonl"
STAGE_ARGS = dict(
    num_generations=2, per_device_train_batch_size=4, max_completion_length=8, max_steps=1, learning_rate=1e-2,
    logging_steps=1, report_to=[], save_strategy="no", use_cpu=True, bf16=False, gradient_checkpointing=False,
    disable_tqdm=True, seed=0, max_refill_rounds=1,
)
SFT_ARGS = dict(per_device_train_batch_size=2, learning_rate=1e-2, logging_steps=1, report_to=[], save_strategy="no",
                use_cpu=True, bf16=False, gradient_checkpointing=False, disable_tqdm=True)
TITLES = ["Base", "SFT", "RLVR", "SRL", "SRL→RLVR", "SFT→RLVR"]


def tiny_config(model_dir: Path, **overrides):
    return load_pipeline_config(None, {
        "model": str(model_dir),
        "data.demo": {"n_train": 8, "n_test": 3, "seed": 0},
        "srl": {**STAGE_ARGS, "reward_mode": "lenient", "think_prefill": True},
        "rlvr": STAGE_ARGS,
        "sft": SFT_ARGS,
        "eval": {"max_new_tokens": 4, "batch_size": 4, "limit": 2},  # a set's own limit wins (champ: 3)
        "tracking.mlflow": False,
        "compare": {"eval_data": {"aime25": {"path": str(AIME25), "limit": 2},
                                  "champ": {"path": "champ", "limit": 3}}},
        **overrides,
    })


@pytest.fixture(scope="module")
def finished(tiny_model_dir, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("compare") / "out"
    return out, run_compare(tiny_config(tiny_model_dir), out, command="srl-rlvr compare tiny.yaml --out out")


class Spy:
    def __init__(self, real=None, fail: bool = False):
        self.real, self.fail, self.calls = real, fail, []

    def __call__(self, *args, **kwargs):
        self.calls.append((args, kwargs))
        if self.fail:
            raise AssertionError(f"unexpected call with {args}")
        return self.real(*args, **kwargs)


def test_all_six_arms_are_trained_evaluated_and_tabled(finished):
    out, result = finished
    assert list(result["arms"]) == list(ARMS)
    assert json.loads((out / "compare.json").read_text())["arms"].keys() == result["arms"].keys()
    for arm in result["arms"].values():
        assert set(arm["eval"]) == {"test", "transfer", "aime25", "champ"}  # transfer: the demo data's own
        assert all(0.0 <= m["greedy_accuracy"] <= 1.0 for m in arm["eval"].values())
    assert result["arms"]["base"]["eval"]["test"]["n"] == 2 and result["arms"]["srl"]["eval"]["champ"]["n"] == 3
    md = (out / "compare.md").read_text()
    rows = [line.split("|")[1].strip() for line in md.splitlines() if line.startswith("| ") and "---" not in line]
    assert rows == ["arm", *TITLES]
    assert "test greedy" in md and "champ avg@1" in md and "optimiser steps" in md and "generated tokens" in md
    assert "pass@" not in md.split("Eval sets")[0]  # k = 1: no pass@k column
    assert "Ordering by greedy accuracy on `test`" in md and "srl-rlvr compare tiny.yaml --out out" in md
    assert (out / "compare_reward_curves.png").is_file() and (out / "compare_accuracy.png").is_file()
    skipped = (out / "data" / "eval_champ.skipped.jsonl").read_text().splitlines()
    assert result["eval_sets"]["champ"]["skipped"] == len(skipped) > 0  # CHAMP's prose answers, counted
    assert "problems skipped because the math scorer cannot judge" in md


def test_budgets_are_equal_and_tokens_are_counted(finished):
    _, result = finished
    budget, arms = result["budget"], result["arms"]
    assert budget["equal"] is True and budget["steps_per_trained_arm"] == 2
    assert {a: arms[a]["steps"] for a in ARMS} == {"base": 0, "sft": 2, "rlvr": 2, "srl": 2, "srl_rlvr": 2,
                                                   "sft_rlvr": 2}
    split = {a: [(s["kind"], s["global_step"]) for s in arms[a]["stages"]] for a in ("srl_rlvr", "sft_rlvr")}
    assert split == {"srl_rlvr": [("srl", 1), ("rlvr", 1)], "sft_rlvr": [("sft", 1), ("rlvr", 1)]}
    # 4 completions of 8 tokens per RL step (the tiny model never stops early); SFT generates nothing.
    assert arms["rlvr"]["generated_tokens"] == arms["srl"]["generated_tokens"] == 2 * 4 * 8
    assert arms["srl_rlvr"]["generated_tokens"] == 2 * 4 * 8 and arms["sft_rlvr"]["generated_tokens"] == 4 * 8
    assert arms["sft"]["generated_tokens"] == 0 and arms["sft"]["processed_tokens"] > 0
    assert arms["base"]["generated_tokens"] == arms["base"]["processed_tokens"] == 0


def test_plan_gives_every_trained_arm_the_same_steps():
    plans = plan_arms(3, 5)
    assert {arm: sum(p.steps for p in stages) for arm, stages in plans.items()} == {
        "base": 0, "sft": 8, "rlvr": 8, "srl": 8, "srl_rlvr": 8, "sft_rlvr": 8}
    assert [(p.kind, p.steps, p.init_from) for p in plans["sft_rlvr"]] == [("sft", 3, None), ("rlvr", 5, "sft")]
    assert plans["rlvr"][0].init_from == "base"


def test_rlvr_arm_starts_from_the_base_model_by_name(finished, tiny_model_dir):
    out, result = finished
    init = out / "arms" / "rlvr" / BASE_INIT / "final"
    manifest = read_manifest(init)
    assert manifest["stage"] == "base" and manifest["base_model"] == str(tiny_model_dir)
    assert manifest["think_prefill"] is True  # prompts like the SRL->RLVR arm's RLVR stage
    assert read_manifest(out / "arms" / "rlvr" / "rlvr" / "final")["init_from"] == str(init)
    start = AutoModelForCausalLM.from_pretrained(init).state_dict()
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir).state_dict()
    assert all(torch.equal(start[k], base[k]) for k in base)
    # The handoff stays loud everywhere else: the pipeline's default expectation refuses a base folder.
    with pytest.raises(UserInputError, match="is a 'base' stage"):
        load_stage_checkpoint(init)
    assert result["arms"]["rlvr"]["stages"][0]["init_from"] == str(init)


def test_two_stage_arms_start_rlvr_from_their_own_first_stage(finished):
    out, _ = finished
    for arm, first in (("srl_rlvr", "srl"), ("sft_rlvr", "sft")):
        upstream = out / "arms" / arm / first / "final"
        assert read_manifest(upstream)["stage"] == first
        rlvr = read_manifest(out / "arms" / arm / "rlvr" / "final")
        assert rlvr["stage"] == "rlvr" and rlvr["init_from"] == str(upstream)
    for arm in ("sft", "rlvr", "srl", "srl_rlvr", "sft_rlvr"):  # every final loads like `srl-rlvr eval --model`
        final = Path(json.loads((out / "compare.json").read_text())["arms"][arm]["model"])
        assert (final / MANIFEST).is_file() and (final / "config.json").is_file()


def test_rerun_skips_everything(tiny_model_dir, finished, tmp_path, monkeypatch, capsys):
    from srl_rlvr.eval import harness

    out = tmp_path / "out"
    shutil.copytree(finished[0], out)
    for name in ("train_srl", "train_rlvr", "train_sft"):
        monkeypatch.setattr(compare, name, Spy(fail=True))
    monkeypatch.setattr(harness, "evaluate", Spy(fail=True))
    result = run_compare(tiny_config(tiny_model_dir), out, command="again")
    printed = capsys.readouterr().out
    for step in ("sft/sft", "base_init", "rlvr/rlvr", "srl_rlvr/srl", "srl_rlvr/rlvr", "sft_rlvr/rlvr",
                 "eval base/test", "eval sft_rlvr/champ"):
        assert f"skip {step}: done" in printed
    assert result["budget"]["equal"] and result["arms"]["srl_rlvr"]["steps"] == 2


def test_changed_rlvr_budget_reruns_only_rlvr_stages_and_their_evals(tiny_model_dir, finished, tmp_path, monkeypatch):
    from srl_rlvr.eval import harness

    out = tmp_path / "out"
    shutil.copytree(finished[0], out)
    rlvr, srl, sft = Spy(compare.train_rlvr), Spy(compare.train_srl), Spy(compare.train_sft)
    monkeypatch.setattr(compare, "train_rlvr", rlvr)
    monkeypatch.setattr(compare, "train_srl", srl)
    monkeypatch.setattr(compare, "train_sft", sft)
    evaluated = Spy(harness.evaluate)
    monkeypatch.setattr(harness, "evaluate", evaluated)
    result = run_compare(tiny_config(tiny_model_dir, **{"rlvr": {**STAGE_ARGS, "max_steps": 2}}), out)
    # R 1 -> 2 changes every arm's budget: SFT and SRL alone rerun with 3 steps, the two-stage arms keep
    # their first stage (still S = 1) and rerun only RLVR.
    assert len(srl.calls) == 1 and len(sft.calls) == 1 and len(rlvr.calls) == 3
    assert {str(call[0][0]) for call in evaluated.calls} >= {str(out / "arms" / "srl_rlvr" / "rlvr" / "final")}
    # every trained arm on 4 eval sets (test, transfer, aime25, champ); base is skipped
    assert len(evaluated.calls) == 5 * 4
    assert result["budget"]["steps_per_trained_arm"] == 3 and result["budget"]["equal"]


def test_docs_section_is_replaced_in_place(finished, tmp_path):
    out, result = finished
    docs = tmp_path / "docs" / "results.md"
    docs.parent.mkdir()
    docs.write_text(f"# Results\n\nintro\n\n{DOCS_BEGIN}\nold table\n{DOCS_END}\n\n## Later section\n",
                    encoding="utf-8")
    plots = {"reward_curves": True, "accuracy": True}
    update_docs(docs, result, out, plots)
    once = docs.read_text()
    update_docs(docs, result, out, plots)
    assert docs.read_text() == once
    assert ("old table" not in once and once.startswith("# Results\n\nintro\n\n")
            and once.endswith("## Later section\n"))
    assert once.count(DOCS_BEGIN) == 1 and "| SRL→RLVR |" in once and "srl-rlvr compare tiny.yaml --out out" in once
    assert "![reward per optimiser step](img/compare_reward_curves.png)" in once
    assert (tmp_path / "docs" / "img" / "compare_accuracy.png").is_file()
    fresh = tmp_path / "new.md"
    update_docs(fresh, result, out, {})
    assert fresh.read_text().startswith(DOCS_BEGIN) and "![" not in fresh.read_text()
    broken = tmp_path / "broken.md"
    broken.write_text(f"{DOCS_BEGIN}\nno end marker\n", encoding="utf-8")
    with pytest.raises(UserInputError, match="only one of the markers"):
        update_docs(broken, result, out, plots)


def test_shipped_cpu_config_loads_with_its_command_in_the_header():
    path = REPO / "configs" / "compare-cpu.yaml"
    assert path.read_text().splitlines()[0] == ("# srl-rlvr compare configs/compare-cpu.yaml --out out/compare-cpu "
                                                "--docs docs/results.md")
    config = load_pipeline_config(path)
    settings = compare_settings(config)
    assert config.tier == "cpu" and config.model == "smollm2-135m" and config.data.demo is not None
    assert settings.arms == list(ARMS) and settings.eval_data["champ"].source == "champ"
    assert compare.budget_steps(config) == (config.srl["max_steps"], config.rlvr["max_steps"])
    for kind in ("srl", "rlvr", "sft"):  # every stage config builds
        assert compare.stage_args(config, kind, Path("/tmp/unused"), 1).max_steps == 1


def test_shipped_gpu_config_is_the_papers_setting():
    config = load_pipeline_config(REPO / "configs" / "compare-gold.yaml")
    settings = compare_settings(config)
    assert config.tier == "gold" and config.model == "Qwen/Qwen2.5-7B-Instruct" and config.lora
    assert config.data.train.endswith("data/s1K-1.1.answered.jsonl") and config.data.test.endswith("data/aime24.jsonl")
    assert settings.test_name == "aime24" and set(settings.eval_data) == {"amc23", "aime25"}
    assert config.eval.settings["k"] == 32 and compare.budget_steps(config) == (200, 100)


def test_test_split_can_be_named(tiny_model_dir):
    settings = compare_settings(tiny_config(tiny_model_dir, **{"compare": {"test_name": "demo"}}))
    assert settings.test_name == "demo"


@pytest.mark.parametrize("overrides, message", [
    ({"compare": {"test_name": "champ", "eval_data": {"champ": "champ"}}}, "bad set name 'champ'"),
    ({"compare": {"test_name": "a b"}}, "'compare.test_name' must be a name"),
    ({"compare": {"armz": ["srl"]}}, "section 'compare': unknown key 'armz'"),
    ({"compare": {"arms": ["srl", "rlhf"]}}, "unknown arm 'rlhf'"),
    ({"compare": {"eval_data": {"test": "x.jsonl"}}}, "bad set name 'test'"),
    ({"compare": {"eval_data": {"champ": {"path": "champ", "limt": 3}}}}, "unknown key 'limt'"),
    ({"compare": {"eval_data": {"champ": {"path": "champ", "limit": 0}}}}, "must be a positive integer"),
])
def test_bad_compare_section_is_one_clear_error(tiny_model_dir, overrides, message):
    with pytest.raises(UserInputError, match=message):
        compare_settings(tiny_config(tiny_model_dir, **overrides))


def test_budget_needs_max_steps(tiny_model_dir, tmp_path):
    config = tiny_config(tiny_model_dir, **{"rlvr": {k: v for k, v in STAGE_ARGS.items() if k != "max_steps"}})
    with pytest.raises(UserInputError, match=r"'rlvr.max_steps' must be a positive integer"):
        run_compare(config, tmp_path / "out")


def test_cli_is_registered_and_documents_an_example():
    from click.testing import CliRunner

    from srl_rlvr.cli.main import cli

    result = CliRunner().invoke(cli, ["compare", "--help"])
    assert result.exit_code == 0 and "srl-rlvr compare configs/compare-cpu.yaml" in result.output
