"""What an eval set says about the models, with its uncertainty: accuracy with a 95% interval, the same
broken down by number of solution steps, and paired tests between models on the same problems.

    srl-rlvr run configs/demo-cpu.yaml --out out/demo        # report.json["eval_summary"] is this module's output

Inputs are the files the eval stage wrote (``OUT/eval/<set>/<label>/predictions.jsonl``) and the eval
set itself (``OUT/data/<set>.jsonl``, for each problem's number of steps). Over several training seeds
(``srl-rlvr run --seeds 0,1,2``) each model has one predictions file per seed; the paired tests then
compare per-problem mean correctness over seeds (srl_rlvr.eval.stats.compare_models), and the spread
across seeds is reported beside them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from srl_rlvr.errors import UserInputError
from srl_rlvr.eval import stats

# (a, b): "does a beat b?" for every pair whose models were evaluated.
COMPARISONS = (("srl_rlvr", "base"), ("srl_rlvr", "srl"), ("srl", "base"), ("sft", "base"), ("srl_rlvr", "sft"))


def read_predictions(path: Path) -> dict[str, bool]:
    """id -> greedy correctness, from one predictions.jsonl."""
    out: dict[str, bool] = {}
    for lineno, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            out[str(row["id"])] = bool(row["correct"])
        except (ValueError, KeyError, TypeError) as exc:
            raise UserInputError(f"{path}:{lineno}: unreadable prediction ({exc})") from None
    if not out:
        raise UserInputError(f"{path}: no predictions")
    return out


def steps_per_item(data_path: Path) -> dict[str, int]:
    """id -> number of solution steps: the demo's ``num_ops``, else the length of ``steps`` (0: unknown)."""
    out: dict[str, int] = {}
    for line in Path(data_path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            steps = row.get("num_ops") or len(row.get("steps") or [])
            out[str(row["id"])] = int(steps)
    return out


def _aligned(per_seed: Sequence[dict[str, bool]], ids: list[str], where: str) -> list[list[bool]]:
    rows = []
    for seed_preds in per_seed:
        missing = [i for i in ids if i not in seed_preds]
        if missing:
            raise UserInputError(f"{where}: no prediction for {len(missing)} problem(s), e.g. {missing[0]!r}")
        rows.append([seed_preds[i] for i in ids])
    return rows


def _mean_accuracy(per_seed: list[list[bool]]) -> dict[str, Any]:
    """Accuracy over several training seeds: the mean of per-problem mean correctness, with a bootstrap
    interval over problems (the seeds' spread is reported separately, by ``per_seed``)."""
    n = len(per_seed[0])
    means = [sum(seed[k] for seed in per_seed) / len(per_seed) for k in range(n)]
    boot = stats.paired_difference(means, [0.0] * n)  # a - 0: the one-sample bootstrap of the mean
    return {"n": n, "accuracy": boot["mean_diff"], "ci": boot["ci"], "ci_level": boot["ci_level"],
            "interval": "bootstrap over problems of per-problem mean correctness across seeds"}


def model_summary(per_seed: list[list[bool]], groups: list[int]) -> dict[str, Any]:
    """Accuracy with its 95% interval, the same per number of steps, and the spread across seeds."""
    if len(per_seed) == 1:
        out = stats.accuracy_summary(per_seed[0])
        out["interval"] = "exact (Clopper-Pearson)"
        out["by_steps"] = stats.by_group(per_seed[0], groups)
    else:
        out = _mean_accuracy(per_seed)
        out["by_steps"] = {str(g): _mean_accuracy([[row[k] for k, x in enumerate(groups) if x == g]
                                                   for row in per_seed])
                           for g in sorted(set(groups))}
    out["per_seed"] = stats.across_seeds([sum(s) / len(s) for s in per_seed])
    return out


def set_summary(predictions: dict[str, list[Path]], data_path: Path,
                pairs: Sequence[tuple[str, str]] = COMPARISONS) -> dict[str, Any]:
    """Summary of one eval set. ``predictions``: label -> one predictions.jsonl per training seed (base: one);
    ``pairs``: the (a, b) comparisons to test, where both were evaluated."""
    steps = steps_per_item(data_path)
    read = {label: [read_predictions(p) for p in paths] for label, paths in predictions.items() if paths}
    # the problems evaluated (eval.limit may take the first N): the first model's, in data order
    first = next(iter(read.values()))[0]
    ids = [i for i in steps if i in first]
    unknown = [i for i in first if i not in steps]
    if unknown:
        raise UserInputError(f"{data_path}: no problem {unknown[0]!r} "
                             f"(predicted by {next(iter(predictions.values()))[0]})")
    groups = [steps[i] for i in ids]
    correct = {label: _aligned(per_seed, ids, str(predictions[label][0])) for label, per_seed in read.items()}
    models = {label: model_summary(rows, groups) for label, rows in correct.items()}
    pairs = [(a, b) for a, b in pairs if a in correct and b in correct]
    comparisons = stats.compare_models(correct, pairs) if pairs else {}
    # the same tests within each number of steps: "does the gain hold on 2-3 step problems?"
    def compare_on(keep: list[int]) -> dict[str, Any]:
        subset = {label: [[row[k] for k in keep] for row in rows] for label, rows in correct.items()}
        return stats.compare_models(subset, pairs) if pairs else {}

    by_steps = {str(g): compare_on([k for k, x in enumerate(groups) if x == g]) for g in sorted(set(groups))}
    multi = [k for k, x in enumerate(groups) if x >= 2]
    if multi and pairs:
        by_steps["2+"] = compare_on(multi)
    return {"n": len(ids), "models": models, "comparisons": comparisons, "comparisons_by_steps": by_steps}
