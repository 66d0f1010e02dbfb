"""Extra training metrics: a 0-weight format-rate reward changes nothing TRL optimises, tokens/s is logged,
and a tiny SRL run reaches a local MLflow file store without a server."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer

from srl_rlvr.rewards import get_reward_func
from srl_rlvr.training.callbacks import (
    add_throughput_callback,
    srl_format_ok,
    tokens_per_second,
    with_format_ok_metric,
)
from srl_rlvr.training.srl_config import SRLConfig
from srl_rlvr.training.srl_trainer import SRLTrainer


def char_sum_mod_7(completions, **_):
    """A metric that varies within groups, so a non-zero weight would move the advantages."""
    return [float(sum(map(ord, c[0]["content"])) % 7) for c in completions]


def _trainer(tiny_model_dir, dataset, kwargs, reward_funcs, reward_weights=None):
    model, tok = AutoModelForCausalLM.from_pretrained(tiny_model_dir), AutoTokenizer.from_pretrained(tiny_model_dir)
    args = SRLConfig(**kwargs, reward_mode="lenient", reward_weights=reward_weights)
    return SRLTrainer(model=model, args=args, train_dataset=dataset, processing_class=tok, reward_funcs=reward_funcs)


def _train_recording(trainer) -> dict:
    """Train, recording every optimiser batch and every weighted reward vector dynamic sampling filtered on."""
    seen: dict = {"batches": [], "rewards": []}
    generate, calculate = trainer._generate_and_score_completions, trainer._calculate_rewards

    def spy_generate(inputs):
        out = generate(inputs)
        seen["batches"].append(out)
        return out

    def spy_rewards(*args):
        out = calculate(*args)
        seen["rewards"].append(trainer._last_rewards.clone())
        return out

    trainer._generate_and_score_completions, trainer._calculate_rewards = spy_generate, spy_rewards
    trainer.train()
    seen["logs"] = trainer.state.log_history
    return seen


@pytest.fixture(scope="module")
def one_step(tiny_model_dir, srl_rows, tmp_path_factory) -> dict[str, dict]:
    """Same seed and data, one step with dynamic sampling (2 rounds max), under three reward sets."""
    dataset = Dataset.from_list([{"prompt": r["prompt"], "expert_step": r["expert_step"]} for r in srl_rows])
    srl = get_reward_func("srl_lenient")
    reward_sets = {
        "base": ([srl], None),
        "zero_weight_metrics": ([srl, srl_format_ok, char_sum_mod_7], [1.0, 0.0, 0.0]),
        "leaked_metric": ([srl, char_sum_mod_7], [1.0, 1.0]),  # the control: a metric at weight 1
    }
    runs = {}
    for name, (funcs, weights) in reward_sets.items():
        kwargs = dict(output_dir=str(tmp_path_factory.mktemp(name)), per_device_train_batch_size=8, num_generations=4,
                      max_completion_length=12, max_steps=1, learning_rate=1e-2, logging_steps=1, report_to=[],
                      save_strategy="no", use_cpu=True, bf16=False, gradient_checkpointing=False, disable_tqdm=True,
                      seed=0, max_refill_rounds=2)
        runs[name] = _train_recording(_trainer(tiny_model_dir, dataset, kwargs, funcs, weights))
    return runs


def test_zero_weight_metrics_leave_advantages_and_dynamic_sampling_untouched(one_step):
    base, with_metrics = one_step["base"], one_step["zero_weight_metrics"]
    for a, b in zip(base["batches"], with_metrics["batches"], strict=True):
        assert torch.equal(a["completion_ids"], b["completion_ids"]), "same seed must give the same rollouts"
        assert torch.equal(a["advantages"], b["advantages"])
    assert len(base["rewards"]) == len(with_metrics["rewards"])  # same number of generation rounds
    for a, b in zip(base["rewards"], with_metrics["rewards"], strict=True):
        assert torch.equal(a, b)  # the weighted sum that dynamic sampling's group filter reads
    log_a, log_b = base["logs"][0], with_metrics["logs"][0]
    for key in ("reward", "reward_std", "dynamic_sampling/rounds", "dynamic_sampling/informative_fraction"):
        assert log_a[key] == log_b[key], key
    assert 0.0 <= log_b["rewards/srl_format_ok/mean"] <= 1.0
    assert log_b["rewards/char_sum_mod_7/std"] > 0, "the metric must vary, or the check above proves nothing"


def test_the_same_metric_at_weight_one_does_move_advantages(one_step):
    """Control for the test above: it would notice a metric that leaked into the optimised reward."""
    base, leaked = one_step["base"]["batches"][0], one_step["leaked_metric"]["batches"][0]
    assert torch.equal(base["completion_ids"], leaked["completion_ids"])
    assert not torch.equal(base["advantages"], leaked["advantages"])


def test_with_format_ok_metric_appends_a_zero_weight():
    funcs, weights = with_format_ok_metric([len, abs], [2.0, 0.5])
    assert funcs[-1] is srl_format_ok and weights == [2.0, 0.5, 0.0]
    with pytest.raises(ValueError, match="2 reward weights for 1"):
        with_format_ok_metric([len], [1.0, 1.0])


def test_tokens_per_second_counts_all_processes_refills_and_reuse():
    args = SimpleNamespace(per_device_train_batch_size=8, gradient_accumulation_steps=2, world_size=4,
                           num_iterations=2)
    logs = {"completions/mean_length": 10.0, "step_time": 4.0, "dynamic_sampling/generated_per_kept": 1.5}
    # 8 x 2 x 4 = 64 trained rows; / 2 reuse = 32 generated; x 1.5 refill = 48 rows x 10 tokens / 4 s
    assert tokens_per_second(args, logs) == pytest.approx(120.0)
    assert tokens_per_second(args, {"loss": 1.0}) is None


def test_throughput_callback_and_mlflow_file_store(tiny_model_dir, srl_dataset, stage_kwargs, tmp_path, monkeypatch):
    """A 2-step tiny SRL run with report_to=["mlflow"] and a file: URI: no server, metrics read back per step,
    tokens_per_s and the format rate among them (and tokens_per_s in the trainer's own log history)."""
    mlflow = pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    uri = f"file:{tmp_path / 'mlruns'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "srl-rlvr-test")
    # MLflow 3 refuses its file store (maintenance mode) unless asked; the file store needs no database packages
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    funcs, weights = with_format_ok_metric([get_reward_func("srl_lenient")])
    trainer = _trainer(tiny_model_dir, srl_dataset, stage_kwargs(report_to=["mlflow"], run_name="srl-tiny"), funcs,
                       weights)
    add_throughput_callback(trainer)
    try:
        trainer.train()
    finally:
        if mlflow.active_run() is not None:  # never leak a run into the next test
            mlflow.end_run()

    logs = [h for h in trainer.state.log_history if "step_time" in h]
    assert len(logs) == 2
    rows = trainer.args.per_device_train_batch_size  # one process, one generation round (max_refill_rounds=1)
    for h in logs:
        assert h["tokens_per_s"] == pytest.approx(h["completions/mean_length"] * rows / h["step_time"])

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("srl-rlvr-test")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == "srl-tiny" and run.info.status == "FINISHED"
    for key in ("loss", "reward", "rewards/srl_format_ok/mean", "tokens_per_s", "dynamic_sampling/rounds"):
        history = client.get_metric_history(run.info.run_id, key)
        assert [m.step for m in history] == [1, 2], key
    tokens_per_s = [m.value for m in client.get_metric_history(run.info.run_id, "tokens_per_s")]
    assert tokens_per_s == pytest.approx([h["tokens_per_s"] for h in logs])
    assert run.data.params["num_generations"] == "4"
