"""The eval harness: metric definitions on canned completions, real generation on the tiny model, the CLI."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from srl_rlvr.data.schema import Trajectory
from srl_rlvr.eval import EvalConfig, evaluate, generation, rescore_predictions, write_eval_outputs
from srl_rlvr.eval.generation import DecodeSettings, Generation
from srl_rlvr.prompts import full_solution_text

METRIC_KEYS = {"greedy_accuracy", "avg_at_k", "pass_at_k", "format_rate", "mean_length", "n", "k", "mode"}


def _items(n: int) -> list[Trajectory]:
    return [Trajectory(id=f"p{i}", problem=f"Item {i}: what is {i} + 10?", steps=[f"{i} + 10 = {i + 10}."],
                       answer=str(i + 10)) for i in range(n)]


def _write_data(path: Path, items: list[Trajectory]) -> Path:
    path.write_text("".join(t.model_dump_json(exclude_none=True) + "\n" for t in items), encoding="utf-8")
    return path


def _item_index(prompt: list[dict]) -> int:
    return int(re.search(r"Item (\d+):", prompt[-1]["content"]).group(1))


def _step_number(prompt: list[dict]) -> int:
    return int(re.search(r"Write step (\d+)\.", prompt[-1]["content"]).group(1))


class _NoModel(torch.nn.Module):
    """Stands in for a model when generation is faked: evaluate only asks for its device."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))


@pytest.fixture
def fake_full_generation(monkeypatch):
    """Greedy: even items right (with a think block), odd items wrong (no think block).
    Samples for item i: sample j is right iff j < i % 3, so per item 0, 1 or 2 of 4 are right."""
    calls = []

    def fake(model, tokenizer, prompts, settings: DecodeSettings, desc=""):
        calls.append(settings)
        out = []
        for prompt in prompts:
            i = _item_index(prompt)
            if not settings.sample:
                text = f"<think>add</think>Step 1: {i} + 10 = {i + 10}. The answer is {i + 10}." if i % 2 == 0 \
                    else "Step 1: I think it is 999. The answer is 999."
                out.append([Generation(text, 10 + i)])
            else:
                out.append([Generation(f"The answer is {i + 10 if j < i % 3 else 0}.", 5)
                            for j in range(settings.num_samples)])
        return out

    monkeypatch.setattr(generation, "generate", fake)
    return calls


def test_metrics_on_known_completions(fake_full_generation, tmp_path):
    items = _items(6)
    result = evaluate("fake", items, EvalConfig(k=4), model=_NoModel(), tokenizer=object())
    m = result.metrics
    assert set(m) == METRIC_KEYS
    assert m["n"] == 6 and m["k"] == 4 and m["mode"] == "full"
    assert m["greedy_accuracy"] == 0.5
    # right samples per item (i % 3): 0,1,2,0,1,2 of 4 -> avg@4 = 6/24; pass@4: 4 of 6 items have one.
    assert m["avg_at_k"] == pytest.approx(6 / 24)
    assert m["pass_at_k"] == pytest.approx(4 / 6)
    assert m["format_rate"] == 0.5  # only the even items' completions carry a think block
    assert m["mean_length"] == pytest.approx(sum(10 + i for i in range(6)) / 6)
    assert [p["id"] for p in result.predictions] == [t.id for t in items]
    assert [p["correct"] for p in result.predictions] == [True, False] * 3
    assert result.predictions[0]["extracted_answer"] == "10"
    assert result.predictions[2]["samples_correct"] == [True, True, False, False]

    paths = write_eval_outputs(result, tmp_path / "out")
    assert json.loads(paths["metrics"].read_text()) == m
    rescored = rescore_predictions(paths["predictions"], _write_data(tmp_path / "d.jsonl", items))
    assert rescored["greedy_accuracy"] == m["greedy_accuracy"] and rescored["disagreements"] == []


def test_k1_does_not_sample_and_reports_greedy(fake_full_generation):
    result = evaluate("fake", _items(4), EvalConfig(k=1, limit=3), model=_NoModel(), tokenizer=object())
    assert [s.sample for s in fake_full_generation] == [False]
    m = result.metrics
    assert m["n"] == 3 and m["avg_at_k"] == m["pass_at_k"] == m["greedy_accuracy"] == pytest.approx(2 / 3)
    assert "samples_correct" not in result.predictions[0]


def test_rescore_uses_the_data_answers_not_the_recorded_ones(fake_full_generation, tmp_path):
    items = _items(2)
    paths = write_eval_outputs(evaluate("fake", items, EvalConfig(), model=_NoModel(), tokenizer=object()), tmp_path)
    items[0].answer = "11"  # the data now disagrees with item 0's (recorded as correct) completion
    rescored = rescore_predictions(paths["predictions"], _write_data(tmp_path / "d.jsonl", items))
    assert rescored == {"greedy_accuracy": 0.0, "n": 2, "disagreements": ["p0"]}


def test_stepwise_stops_at_the_answer_or_max_steps(monkeypatch):
    """Item 0 answers at step 3; item 1 never states an answer and is cut at max_steps."""
    seen_steps: list[tuple[int, int]] = []

    def fake(model, tokenizer, prompts, settings, desc=""):
        out = []
        for prompt in prompts:
            i, k = _item_index(prompt), _step_number(prompt)
            seen_steps.append((i, k))
            if i == 0 and k == 3:
                text = "<think>done</think>Step 3: so 10. The answer is 10."
            elif k % 2:
                text = f"<think>go</think>Step {k}: keep going {k}"
            else:
                text = f"no tags, step {k}"
            out.append([Generation(text, 7)])
        return out

    monkeypatch.setattr(generation, "generate", fake)
    result = evaluate("fake", _items(2), EvalConfig(mode="stepwise", max_steps=5), model=_NoModel(),
                      tokenizer=object())
    first, second = result.predictions
    assert first["steps"] == ["keep going 1", "no tags, step 2", "so 10. The answer is 10."]
    assert first["completion"] == full_solution_text(first["steps"]) and first["correct"] is True
    assert len(second["steps"]) == 5 and second["correct"] is False
    assert sorted(seen_steps) == [(0, 1), (0, 2), (0, 3), (1, 1), (1, 2), (1, 3), (1, 4), (1, 5)]
    m = result.metrics
    assert m["greedy_accuracy"] == 0.5
    assert m["format_rate"] == pytest.approx(5 / 8)  # steps 1, 3, 5 have tags: 2 for item 0, 3 for item 1
    assert m["mean_length"] == pytest.approx((3 * 7 + 5 * 7) / 2)


def test_tiny_model_run_outputs_and_determinism(tiny_model_dir, tmp_path):
    items = _items(5)
    config = EvalConfig(k=2, batch_size=4, max_new_tokens=6, seed=1)
    first = evaluate(str(tiny_model_dir), items, config)
    second = evaluate(str(tiny_model_dir), items, config)
    assert set(first.metrics) == METRIC_KEYS
    assert len(first.predictions) == first.metrics["n"] == 5
    assert first.predictions == second.predictions
    assert all(len(p["sample_completions"]) == 2 for p in first.predictions)
    other_seed = evaluate(str(tiny_model_dir), items, EvalConfig(k=2, batch_size=4, max_new_tokens=6, seed=2))
    assert ([p["sample_completions"] for p in other_seed.predictions]
            != [p["sample_completions"] for p in first.predictions])

    paths = write_eval_outputs(first, tmp_path / "out")
    rescored = rescore_predictions(paths["predictions"], _write_data(tmp_path / "d.jsonl", items))
    assert rescored["greedy_accuracy"] == json.loads(paths["metrics"].read_text())["greedy_accuracy"]


def test_batched_generation_matches_one_by_one_in_input_order(tiny_model_dir):
    from srl_rlvr.models import load_model_and_tokenizer
    from srl_rlvr.prompts import full_problem_messages

    model, tokenizer = load_model_and_tokenizer(str(tiny_model_dir))
    prompts = [full_problem_messages(p) for p in ("a much longer problem about many pens and boxes", "2+3?", "7 * 6?")]
    settings = DecodeSettings(max_new_tokens=5, batch_size=3, bf16=False)
    batched = generation.generate(model, tokenizer, prompts, settings)
    alone = [generation.generate(model, tokenizer, [p], settings)[0] for p in prompts]
    assert batched == alone
    assert tokenizer.padding_side == "right"  # restored


def test_stepwise_on_tiny_model(tiny_model_dir):
    result = evaluate(str(tiny_model_dir), _items(3), EvalConfig(mode="stepwise", max_steps=2, max_new_tokens=5))
    assert result.metrics["mode"] == "stepwise" and result.metrics["n"] == 3
    assert all(1 <= len(p["steps"]) <= 2 for p in result.predictions)


def test_cli_writes_metrics_and_predictions(tiny_model_dir, tmp_path):
    from srl_rlvr.cli.eval import eval_command

    data = _write_data(tmp_path / "test.jsonl", _items(3))
    out = tmp_path / "eval"
    result = CliRunner().invoke(eval_command, ["--model", str(tiny_model_dir), "--data", str(data), "--out", str(out),
                                               "--k", "2", "--max-new-tokens", "4", "--limit", "2"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == METRIC_KEYS and metrics["n"] == 2
    assert len((out / "predictions.jsonl").read_text().splitlines()) == 2
    assert "greedy_accuracy" in result.output and str(out / "predictions.jsonl") in result.output


def test_cli_help_shows_example():
    from srl_rlvr.cli.eval import eval_command

    result = CliRunner().invoke(eval_command, ["--help"])
    assert result.exit_code == 0
    assert any(line.strip().startswith("srl-rlvr eval --model") for line in result.output.splitlines())


def test_cli_data_without_answers_is_exit_2(tmp_path, capsys):
    from srl_rlvr.cli.eval import eval_command
    from srl_rlvr.cli.main import cli, main

    if "eval" not in cli.commands:  # until cli/main.py registers it
        cli.add_command(eval_command)
    data = tmp_path / "noanswer.jsonl"
    data.write_text('{"id": "a", "problem": "p", "steps": ["x"], "answer": "1"}\n'
                    '{"id": "b", "problem": "q", "steps": ["y"]}\n', encoding="utf-8")
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", "--model", "unused", "--data", str(data), "--out", str(tmp_path / "o")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"{data}: item 'b' has no 'answer'" in err and "Traceback" not in err


def test_think_prefill_follows_the_stage_manifest(fake_full_generation, tmp_path):
    from srl_rlvr.eval.harness import model_think_prefill
    from srl_rlvr.registry.manifest import STAGE_MANIFEST as MANIFEST

    trained = tmp_path / "final"
    trained.mkdir()
    (trained / MANIFEST).write_text(json.dumps({"stage": "srl", "think_prefill": True}))
    assert model_think_prefill(str(trained)) is True and model_think_prefill(str(tmp_path)) is False
    evaluate(str(trained), _items(1), EvalConfig(), model=_NoModel(), tokenizer=object())
    evaluate(str(trained), _items(1), EvalConfig(think_prefill=False), model=_NoModel(), tokenizer=object())
    evaluate("smollm2-135m", _items(1), EvalConfig(), model=_NoModel(), tokenizer=object())
    assert [s.think_prefill for s in fake_full_generation] == [True, False, False]


def test_prefilled_generation_scores_the_whole_think_block(tiny_model_dir):
    from srl_rlvr.models import load_model_and_tokenizer
    from srl_rlvr.prompts import full_problem_messages

    model, tokenizer = load_model_and_tokenizer(str(tiny_model_dir))
    settings = DecodeSettings(max_new_tokens=3, think_prefill=True)
    (gen,), = generation.generate(model, tokenizer, [full_problem_messages("2+3?")], settings)
    assert gen.text.startswith("<think>") and gen.num_tokens <= 3
