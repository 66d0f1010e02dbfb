"""One pipeline config trained under several training seeds, and one report over all of them.

    srl-rlvr run configs/demo-cpu.yaml --out out/demo3 --seeds 0,1,2

Each seed is an ordinary pipeline run in ``OUT/seed-<s>`` with ``srl.seed``, ``rlvr.seed`` and
``sft.seed`` set to ``s`` (the data, and so the eval sets, are the same for every seed). The base model's
greedy eval does not depend on the training seed, so later seeds reuse the first seed's (hard links; its
recorded config hash makes the run skip it). ``OUT/report.json`` then holds, per eval set, each model's
mean accuracy over seeds with a bootstrap interval over problems, the spread across seeds, and paired
tests on per-problem mean correctness (srl_rlvr.eval.summary).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from srl_rlvr.core.io import link_or_copy
from srl_rlvr.errors import UserInputError
from srl_rlvr.eval import summary
from srl_rlvr.pipelines.config import PipelineConfig

SEED_KEYS = ("srl.seed", "rlvr.seed", "sft.seed")


def parse_seeds(text: str) -> list[int]:
    """``"0,1,2"`` -> ``[0, 1, 2]``; a clear error for anything else.

    >>> parse_seeds("0, 1,2")
    [0, 1, 2]
    """
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UserInputError(f"--seeds {text!r}: expected comma-separated integers, e.g. 0,1,2") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise UserInputError(f"--seeds {text!r}: give at least one seed, each once")
    return seeds


def seed_overrides(seed: int) -> dict[str, Any]:
    return {key: seed for key in SEED_KEYS}


def _share_base_eval(first: Path, target: Path, sets: Sequence[str]) -> None:
    """Hard-link the first seed's base-model evals into another seed's folder (same model, same data)."""
    for set_name in sets:
        src = first / "eval" / set_name / "base"
        dst = target / "eval" / set_name / "base"
        if src.is_dir() and not dst.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copytree(src, dst, copy_function=link_or_copy)


def run_seeds(make_config: Callable[[int], PipelineConfig], out_dir: str | Path, seeds: Sequence[int],
              run: Callable[..., dict[str, Any]], command: str, **run_kwargs: Any) -> dict[str, Any]:
    """Run ``run(config, OUT/seed-<s>, ...)`` for every seed, then write OUT/report.json and report.md."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    reports: dict[int, dict[str, Any]] = {}
    first: Path | None = None
    config = None
    for seed in seeds:
        config = make_config(seed)
        seed_dir = out / f"seed-{seed}"
        if first is not None and "base" in config.eval.models:
            _share_base_eval(first, seed_dir, config.eval.sets)
        reports[seed] = run(config, seed_dir, command=f"{command} (seed {seed})", **run_kwargs)
        first = first or seed_dir
    return write_seeds_report(out, config, seeds, reports, command)


def seed_predictions(labels: Sequence[str], seeds: Sequence[int], path_of: Callable[[int, str], Path],
                     set_name: str) -> dict[str, list[Path]]:
    """label -> its predictions.jsonl of every seed (``path_of(seed, label)``); the base model's of the first
    seed only (the training seed does not touch it). A trained model with some seeds missing is an error."""
    preds: dict[str, list[Path]] = {}
    for label in labels:
        paths = [p for s in seeds if (p := path_of(s, label)).is_file()]
        if label == "base":
            paths = paths[:1]
        elif paths and len(paths) != len(seeds):
            raise UserInputError(f"{label} on {set_name}: predictions for {len(paths)} of {len(seeds)} seeds")
        if paths:
            preds[label] = paths
    return preds


def seeds_summary(out: Path, config: PipelineConfig, seeds: Sequence[int]) -> dict[str, Any]:
    """Per eval set: summary.set_summary over every seed's predictions (base: the first seed's)."""
    result: dict[str, Any] = {}
    for set_name in config.eval.sets:
        data = out / f"seed-{seeds[0]}" / "data" / f"{set_name}.jsonl"
        if not data.is_file():
            continue
        def path_of(seed: int, label: str, set_name: str = set_name) -> Path:
            return out / f"seed-{seed}" / "eval" / set_name / label / "predictions.jsonl"

        preds = seed_predictions(config.eval.models, seeds, path_of, set_name)
        if preds:
            result[set_name] = summary.set_summary(preds, data)
    return result


def write_seeds_report(out: Path, config: PipelineConfig, seeds: Sequence[int], reports: dict[int, dict[str, Any]],
                       command: str) -> dict[str, Any]:
    summaries = seeds_summary(out, config, seeds)
    combined = {
        "command": command,
        "seeds": list(seeds),
        "headline_set": next(iter(summaries), None),
        "eval_summary": summaries,
        "accuracy": {label: m["accuracy"]
                     for label, m in (next(iter(summaries.values()), {}).get("models") or {}).items()},
        "per_seed": {str(s): {"accuracy": r.get("accuracy"), "report": str(out / f"seed-{s}" / "report.json"),
                              "stages": {k: {kk: v.get(kk) for kk in ("reward_first10", "reward_last10")}
                                         for k, v in (r.get("stages") or {}).items()}}
                     for s, r in reports.items()},
        "config": config.to_dict(),
    }
    (out / "report.json").write_text(json.dumps(combined, indent=2, default=str), encoding="utf-8")
    _write_seeds_markdown(out / "report.md", "srl-rlvr report over training seeds", command, seeds, summaries,
                          out / "accuracy.png")
    return combined


def run_compare_seeds(make_config: Callable[[int], PipelineConfig], out_dir: str | Path, seeds: Sequence[int],
                      command: str, **compare_kwargs: Any) -> dict[str, Any]:
    """``srl-rlvr compare --seeds``: the comparison once per training seed (OUT/seed-<s>), then
    OUT/compare_seeds.json and .md: every arm's mean accuracy over seeds per eval set, its spread, and paired
    tests of SRL→RLVR against every other arm (and SRL against base) on per-problem mean correctness."""
    from srl_rlvr.pipelines.compare.run import run_compare

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    for seed in seeds:
        results[seed] = run_compare(make_config(seed), out / f"seed-{seed}", command=f"{command} (seed {seed})",
                                    **compare_kwargs)
    first = out / f"seed-{seeds[0]}"
    arms = list(results[seeds[0]]["arms"])
    pairs = [("srl_rlvr", a) for a in arms if a != "srl_rlvr"] + [("srl", "base"), ("sft", "base")]
    summaries = {}
    for set_name in results[seeds[0]]["eval_sets"]:
        data = first / "data" / f"eval_{set_name}.jsonl"
        def path_of(seed: int, arm: str, set_name: str = set_name) -> Path:
            return out / f"seed-{seed}" / "arms" / arm / "eval" / set_name / "predictions.jsonl"

        preds = seed_predictions(arms, seeds, path_of, set_name)
        summaries[set_name] = summary.set_summary(preds, data, pairs=pairs)
    combined = {"command": command, "seeds": list(seeds), "eval_summary": summaries,
                "per_seed": {str(s): str(out / f"seed-{s}" / "compare.json") for s in seeds}}
    (out / "compare_seeds.json").write_text(json.dumps(combined, indent=2, default=str), encoding="utf-8")
    _write_seeds_markdown(out / "compare_seeds.md", "srl-rlvr compare over training seeds", command, seeds, summaries,
                          out / "compare_seeds_accuracy.png")
    return combined


def _write_seeds_markdown(path: Path, title: str, command: str, seeds: Sequence[int], summaries: dict[str, Any],
                          plot: Path) -> None:
    from srl_rlvr.pipelines import report as run_report

    lines = [f"# {title}", "", "Produced by:", "", f"    {command}", "",
             f"Seeds {', '.join(map(str, seeds))}; one run each in `seed-<s>/`. Accuracy is the mean over seeds, its "
             "interval a bootstrap over problems; the base model is evaluated once.", ""]
    for set_name, summ in summaries.items():
        evals = {label: {"n": m["n"]} for label, m in summ["models"].items()}
        lines += run_report.eval_section(set_name, evals, summ)
        lines += ["Accuracy per seed:", "", "| model | " + " | ".join(f"seed {s}" for s in seeds) + " | mean | sd |",
                  "|---|" + "---|" * (len(seeds) + 2)]
        for label, m in summ["models"].items():
            vals = m["per_seed"]["values"]
            cells = ([f"{v:.1%}" for v in vals] if len(vals) == len(seeds)
                     else [f"{vals[0]:.1%} (all)"] + [""] * (len(seeds) - 1))
            lines.append(f"| {label} | " + " | ".join(cells)
                         + f" | {m['per_seed']['mean']:.1%} | {m['per_seed']['std']:.1%} |")
        lines.append("")
    if run_report.plot_accuracy(summaries, plot):
        lines += [f"![accuracy by model]({plot.name})", ""]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
