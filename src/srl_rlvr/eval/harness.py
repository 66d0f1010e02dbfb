"""Evaluate a model on math problems with answers: greedy accuracy, avg@k, pass@k, format rate, length.

Command line (see ``srl-rlvr eval --help``)::

    srl-rlvr eval --model smollm2-135m --data data/demo/test.jsonl --out out/eval_base --k 4 --mode full

Modes:

* ``full``: one call per item with the RLVR prompt :func:`srl_rlvr.prompts.full_problem_messages`
  (chat template, ``add_generation_prompt=True``); the model writes every step and the answer.
* ``stepwise`` (SRL-native inference): one call per step with the SRL step prompt
  :func:`srl_rlvr.prompts.srl_step_messages`; the step is the text after ``</think>``
  (:func:`srl_rlvr.eval.scoring.step_text`), appended to the steps so far. An item stops when a step
  states an answer ("The answer is" / ``\\boxed``) or after ``max_steps`` calls. The recorded completion
  is the steps rendered by :func:`srl_rlvr.prompts.full_solution_text`.

Scoring is :func:`srl_rlvr.rewards.math.math_answer_reward` (and ``extract_answer`` for the printed
answer), the RLVR reward itself, so eval and training can never disagree on what "correct" means.

Metrics (``EvalResult.metrics``, exactly these keys):

* ``greedy_accuracy``: fraction of items whose greedy completion is correct.
* ``avg_at_k``: mean over items of the fraction of the k sampled completions (temperature
  ``config.temperature``, top-k/top-p off) that are correct.
* ``pass_at_k``: mean over items of the unbiased pass@k estimator (Chen et al. 2021) from n = k samples,
  which with n == k is 1 when any sample is correct.
* With ``k == 1`` nothing is sampled: ``avg_at_k == pass_at_k == greedy_accuracy`` (one sample would
  only add noise to the number greedy already gives).
* ``format_rate``: full mode, the fraction of greedy completions with well-formed think blocks
  (:func:`srl_rlvr.eval.scoring.full_format_ok`); stepwise, the fraction of greedy step calls that
  :func:`srl_rlvr.rewards.srl.parse_think_action` accepts.
* ``mean_length``: mean generated tokens per greedy completion (stepwise: summed over its step calls);
  the closing eos token is not counted.
* ``n``, ``k``, ``mode``.

Predictions (``predictions.jsonl``, input order): ``id``, ``answer``, ``completion`` (greedy),
``extracted_answer``, ``correct``, ``num_tokens``; stepwise adds ``steps`` and ``step_completions``
(the raw output of each step call); k > 1 adds ``samples_correct`` and ``sample_completions``.

Prompt format: a model trained with ``think_prefill`` (its ``srl_rlvr_stage.json`` says so) is prompted
the same way here: the generation prompt ends with ``<think>`` and the completion is scored as
``<think>`` + generated text, exactly as the trainers' rewards see it. ``EvalConfig.think_prefill=None``
reads that setting from the model folder (off for anything without a stage manifest, e.g. the base model).

Determinism: greedy is deterministic; sampling seeds torch with ``config.seed`` first, so a rerun with
the same seed, data, batch size and hardware gives identical predictions. bf16 autocast (on by default
where the CPU/GPU runs bf16 natively, ~3-8x faster on this CPU) changes the numerics slightly versus
float32, so compare runs with the same ``bf16`` setting.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from srl_rlvr.data.schema import Trajectory
from srl_rlvr.errors import UserInputError
from srl_rlvr.eval import generation
from srl_rlvr.eval.generation import DecodeSettings, Generation
from srl_rlvr.eval.scoring import full_format_ok, pass_at_k, states_answer, step_text
from srl_rlvr.prompts import full_problem_messages, full_solution_text, srl_step_messages
from srl_rlvr.registry.manifest import manifest_think_prefill
from srl_rlvr.rewards.math import extract_answer, math_answer_reward
from srl_rlvr.rewards.srl import parse_think_action

MODES = ("full", "stepwise")
METRICS_FILE = "metrics.json"
PREDICTIONS_FILE = "predictions.jsonl"
RUN_FILE = "eval_run.json"


@dataclass
class EvalConfig:
    k: int = 1  # samples per item for avg@k / pass@k (1: no sampling, see module docstring)
    limit: int | None = None  # evaluate only the first N items
    seed: int = 0
    batch_size: int = 16  # sequences generated at once
    max_new_tokens: int = 256  # per call: the whole solution (full) or one step (stepwise)
    temperature: float = 1.0  # for the k samples
    mode: str = "full"  # "full" | "stepwise"
    max_steps: int = 8  # stepwise: step calls per item at most
    bf16: bool | None = None  # None: bf16 autocast where the hardware supports it natively
    think_prefill: bool | str | None = None  # None: as the model was trained (its stage manifest); "empty" too

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise UserInputError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        for name in ("k", "batch_size", "max_new_tokens", "max_steps"):
            if getattr(self, name) < 1:
                raise UserInputError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.limit is not None and self.limit < 1:
            raise UserInputError(f"limit must be >= 1, got {self.limit}")
        if self.temperature <= 0:
            raise UserInputError(f"temperature must be > 0, got {self.temperature}")


@dataclass
class EvalResult:
    metrics: dict[str, Any]
    predictions: list[dict[str, Any]]
    run: dict[str, Any] = field(default_factory=dict)  # model, settings and wall time, for eval_run.json


@dataclass
class _Rollout:
    """One solution attempt on one item; full mode fills it in one call, stepwise one step per call."""

    item: int
    steps: list[str] = field(default_factory=list)
    step_completions: list[str] = field(default_factory=list)
    completion: str = ""
    num_tokens: int = 0
    well_formed_calls: int = 0
    done: bool = False


def _is_correct(completion: str, answer: str) -> bool:
    return math_answer_reward(completion, answer) == 1.0


def _full_rollouts(model: Any, tokenizer: Any, problems: list[str], settings: DecodeSettings,
                   desc: str) -> list[list[_Rollout]]:
    prompts = [full_problem_messages(p) for p in problems]
    outputs: list[list[Generation]] = generation.generate(model, tokenizer, prompts, settings, desc=desc)
    rollouts = []
    for item, gens in enumerate(outputs):
        rollouts.append([_Rollout(item, completion=g.text, num_tokens=g.num_tokens) for g in gens])
    return rollouts


def _stepwise_rollouts(
    model: Any, tokenizer: Any, problems: list[str], settings: DecodeSettings, max_steps: int, desc: str
) -> list[list[_Rollout]]:
    """``settings.num_samples`` independent step-by-step rollouts per problem, batched across all still running."""
    per_call = DecodeSettings(**{**asdict(settings), "num_samples": 1})
    rollouts = [[_Rollout(item) for _ in range(settings.num_samples)] for item in range(len(problems))]
    flat = [r for group in rollouts for r in group]
    for k in range(1, max_steps + 1):
        running = [r for r in flat if not r.done]
        if not running:
            break
        prompts = [srl_step_messages(problems[r.item], r.steps, k) for r in running]
        outputs = generation.generate(model, tokenizer, prompts, per_call, desc=f"{desc} step {k}")
        for rollout, (gen,) in zip(running, outputs):
            step = step_text(gen.text)
            rollout.steps.append(step)
            rollout.step_completions.append(gen.text)
            rollout.num_tokens += gen.num_tokens
            rollout.well_formed_calls += parse_think_action(gen.text) is not None
            rollout.done = states_answer(step)
    for rollout in flat:
        rollout.completion = full_solution_text(rollout.steps)
    return rollouts


def _rollouts(model: Any, tokenizer: Any, problems: list[str], config: EvalConfig, settings: DecodeSettings,
              desc: str) -> list[list[_Rollout]]:
    if config.mode == "full":
        return _full_rollouts(model, tokenizer, problems, settings, desc)
    return _stepwise_rollouts(model, tokenizer, problems, settings, config.max_steps, desc)


def _require_answers(trajectories: Sequence[Trajectory]) -> None:
    for traj in trajectories:
        if traj.answer is None or not traj.answer.strip():
            raise UserInputError(f"item {traj.id!r} has no 'answer', so it cannot be scored")


def model_think_prefill(model_name_or_path: str) -> bool | str:
    """The ``think_prefill`` the model was trained with, per its stage manifest (False if none)."""
    return manifest_think_prefill(model_name_or_path)


def _load(model_name_or_path: str) -> tuple[Any, Any]:
    import torch

    from srl_rlvr.models import load_model_and_tokenizer

    return load_model_and_tokenizer(model_name_or_path, device="cuda" if torch.cuda.is_available() else None)


def evaluate(
    model_name_or_path: str,
    trajectories: Sequence[Trajectory],
    config: EvalConfig | None = None,
    model: Any = None,
    tokenizer: Any = None,
) -> EvalResult:
    """Generate and score; see the module docstring for modes and metrics.

    ``model``/``tokenizer`` may be passed already loaded (then ``model_name_or_path`` is only recorded);
    otherwise they are loaded with :func:`srl_rlvr.models.load_model_and_tokenizer` (the embedded
    ``smollm2-135m``, a folder, a hub id, or a PEFT adapter folder), on GPU when there is one.
    """
    import torch

    config = config or EvalConfig()
    items = list(trajectories)[: config.limit]
    if not items:
        raise UserInputError("no items to evaluate")
    _require_answers(items)
    if model is None or tokenizer is None:
        model, tokenizer = _load(model_name_or_path)
    bf16 = generation.resolve_bf16(config.bf16, next(model.parameters()).device.type)
    prefill = model_think_prefill(model_name_or_path) if config.think_prefill is None else config.think_prefill
    started = time.perf_counter()

    problems = [t.problem for t in items]
    base = DecodeSettings(max_new_tokens=config.max_new_tokens, batch_size=config.batch_size, bf16=bf16,
                          think_prefill=prefill)
    torch.manual_seed(config.seed)
    greedy = [group[0] for group in _rollouts(model, tokenizer, problems, config, base, desc=f"{config.mode} greedy")]
    samples: list[list[_Rollout]] = []
    if config.k > 1:
        sampled = DecodeSettings(**{**asdict(base), "sample": True, "num_samples": config.k,
                                    "temperature": config.temperature})
        torch.manual_seed(config.seed)  # the samples depend on the seed alone, not on what greedy drew
        samples = _rollouts(model, tokenizer, problems, config, sampled, desc=f"{config.mode} sample k={config.k}")

    predictions = [_prediction(t, greedy[i], samples[i] if samples else None, config.mode)
                   for i, t in enumerate(items)]
    metrics = _metrics(predictions, greedy, config)
    run = {
        "model": str(model_name_or_path),
        "config": {**asdict(config), "bf16": bf16, "think_prefill": prefill},
        "seconds": round(time.perf_counter() - started, 1),
    }
    return EvalResult(metrics=metrics, predictions=predictions, run=run)


def _prediction(traj: Trajectory, greedy: _Rollout, samples: list[_Rollout] | None, mode: str) -> dict[str, Any]:
    answer = traj.answer or ""
    row: dict[str, Any] = {
        "id": traj.id,
        "answer": answer,
        "completion": greedy.completion,
        "extracted_answer": extract_answer(greedy.completion),
        "correct": _is_correct(greedy.completion, answer),
        "num_tokens": greedy.num_tokens,
    }
    if mode == "stepwise":
        row["steps"] = greedy.steps
        row["step_completions"] = greedy.step_completions
    if samples is not None:
        row["samples_correct"] = [_is_correct(s.completion, answer) for s in samples]
        row["sample_completions"] = [s.completion for s in samples]
    return row


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def _metrics(predictions: list[dict[str, Any]], greedy: list[_Rollout], config: EvalConfig) -> dict[str, Any]:
    greedy_accuracy = _mean([float(p["correct"]) for p in predictions])
    if config.k > 1:
        avg_at_k = _mean([_mean([float(c) for c in p["samples_correct"]]) for p in predictions])
        pass_k = _mean([pass_at_k(config.k, sum(p["samples_correct"]), config.k) for p in predictions])
    else:
        avg_at_k = pass_k = greedy_accuracy
    if config.mode == "full":
        format_rate = _mean([float(full_format_ok(r.completion)) for r in greedy])
    else:
        format_rate = sum(r.well_formed_calls for r in greedy) / sum(len(r.steps) for r in greedy)
    return {
        "greedy_accuracy": greedy_accuracy,
        "avg_at_k": avg_at_k,
        "pass_at_k": pass_k,
        "format_rate": format_rate,
        "mean_length": _mean([float(r.num_tokens) for r in greedy]),
        "n": len(predictions),
        "k": config.k,
        "mode": config.mode,
    }


def write_eval_outputs(result: EvalResult, out_dir: str | Path) -> dict[str, Path]:
    """Write ``metrics.json``, ``predictions.jsonl`` (one row per item, input order) and ``eval_run.json``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"metrics": out / METRICS_FILE, "predictions": out / PREDICTIONS_FILE, "run": out / RUN_FILE}
    paths["metrics"].write_text(json.dumps(result.metrics, indent=2) + "\n", encoding="utf-8")
    with paths["predictions"].open("w", encoding="utf-8") as f:
        for row in result.predictions:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    paths["run"].write_text(json.dumps(result.run, indent=2) + "\n", encoding="utf-8")
    return paths


def rescore_predictions(predictions_path: str | Path, data_path: str | Path) -> dict[str, Any]:
    """Recompute greedy accuracy from ``predictions.jsonl`` and the data file's own answers.

    Ignores the ``correct``/``answer`` fields written by the eval: it looks up each prediction's id in
    the data and scores the completion with ``math_answer_reward`` again. Returns ``greedy_accuracy``,
    ``n`` and ``disagreements`` (ids whose recorded ``correct`` differs from the re-score)::

        python -c "from srl_rlvr.eval import rescore_predictions as r; \
            print(r('out/eval/predictions.jsonl', 'data/demo/test.jsonl'))"
    """
    from srl_rlvr.data.loaders.registry import load_source

    answers = {t.id: t.answer for t in load_source(str(data_path)).rows}
    lines = Path(predictions_path).read_text(encoding="utf-8").splitlines()
    rows = [json.loads(line) for line in lines if line.strip()]
    if not rows:
        raise UserInputError(f"{predictions_path}: no predictions")
    correct, disagreements = [], []
    for row in rows:
        answer = answers.get(row["id"])
        if answer is None:
            raise UserInputError(f"{predictions_path}: id {row['id']!r} has no answer in {data_path}")
        ok = _is_correct(row["completion"], answer)
        correct.append(ok)
        if ok != row.get("correct"):
            disagreements.append(row["id"])
    return {"greedy_accuracy": sum(correct) / len(correct), "n": len(correct), "disagreements": disagreements}
