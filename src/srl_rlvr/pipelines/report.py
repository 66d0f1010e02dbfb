"""The run report: OUT/report.json, OUT/report.md and two plots, read back from what the stages wrote.

    srl-rlvr run configs/demo-cpu.yaml --out out/demo      # writes out/demo/report.md at the end

Per training stage it compares the mean logged ``reward`` over the first and the last 10 optimiser
steps (``logging_steps`` must be 1); a run shorter than 20 steps compares its first and last halves,
and report.md says so. The SRL format-OK rate is read from ``rewards/srl_format_ok/mean`` (the 0-weight
reward of training/callbacks.py) when the trainer logs it; it is never guessed from the reward mean.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from srl_rlvr.core.plotting import headless_pyplot
from srl_rlvr.eval import summary
from srl_rlvr.ops.failures import collect_recoveries
from srl_rlvr.registry.manifest import FINAL, STAGE_MANIFEST

WINDOW = 10
TRAINING_STAGES = ("srl", "rlvr", "sft")
STAGE_TITLES = {"srl": "SRL", "rlvr": "RLVR", "sft": "SFT"}
# Where a trainer logs the share of well-formed rollouts: the 0-weight srl_format_ok reward
# (training/callbacks.py) shows up as rewards/srl_format_ok/mean.
FORMAT_OK_KEYS = ("rewards/srl_format_ok/mean", "srl/format_ok")


def _mean(values: list[float]) -> float | None:
    values = [v for v in values if v is not None and not math.isnan(v)]
    return sum(values) / len(values) if values else None


def _per_step(log_history: list[dict[str, Any]], key: str) -> list[tuple[int, float]]:
    """(step, value) for every logged step carrying ``key``, one per step, in step order."""
    by_step: dict[int, float] = {}
    for entry in log_history:
        if key in entry and "step" in entry and isinstance(entry[key], (int, float)):
            by_step[int(entry["step"])] = float(entry[key])
    return sorted(by_step.items())


def stage_summary(stage: str, log_history: list[dict[str, Any]], global_step: int | None = None) -> dict[str, Any]:
    """First/last-window reward (and format-OK rate, when logged) of one training stage."""
    rewards = _per_step(log_history, "reward")
    n = len(rewards)
    window = WINDOW if n >= 2 * WINDOW else max(1, n // 2)
    values = [v for _, v in rewards]
    format_ok = next((vals for key in FORMAT_OK_KEYS if (vals := [v for _, v in _per_step(log_history, key)])), [])
    speed = [v for _, v in _per_step(log_history, "tokens_per_s")]
    steps_logged = [s for s, _ in rewards]
    return {
        "reward_first10": _mean(values[:window]),
        "reward_last10": _mean(values[-window:]) if n else None,
        "format_ok_first10": _mean(format_ok[:window]) if format_ok else None,
        "format_ok_last10": _mean(format_ok[-window:]) if format_ok else None,
        "global_step": int(global_step if global_step is not None else (steps_logged[-1] if steps_logged else 0)),
        "steps": values,
        "window": window,
        "halves": n < 2 * WINDOW,  # True: "first10/last10" are the first and last halves of a short run
        "logged_steps": n,
        "tokens_per_s": _mean(speed) if speed else None,  # from ThroughputCallback, when installed
    }


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def collect(out_dir: Path, config: Any, timings: dict[str, float]) -> dict[str, Any]:
    """Gather report.json's content from OUT (stages that never ran are left out)."""
    stages: dict[str, Any] = {}
    for stage in TRAINING_STAGES:
        history = _read_json(out_dir / stage / "log_history.json")
        if history is None:
            continue
        manifest = _read_json(out_dir / stage / FINAL / STAGE_MANIFEST) or {}
        stages[stage] = stage_summary(stage, history, manifest.get("global_step"))
    evals: dict[str, dict[str, Any]] = {}
    summaries: dict[str, Any] = {}
    for set_name in config.eval.sets:
        found = {label: m for label in config.eval.models
                 if (m := _read_json(out_dir / "eval" / set_name / label / "metrics.json")) is not None}
        if not found:
            continue
        evals[set_name] = found
        data = out_dir / "data" / f"{set_name}.jsonl"
        if data.is_file():
            summaries[set_name] = summary.set_summary(
                {label: [out_dir / "eval" / set_name / label / "predictions.jsonl"] for label in found}, data)
    headline = next(iter(evals.values()), {})
    return {
        "stages": stages,
        "headline_set": next(iter(evals), None),
        "accuracy": {label: m.get("greedy_accuracy") for label, m in headline.items()},
        "eval": evals,
        "eval_summary": summaries,
        "config": config.to_dict(),
        "timings_s": dict(timings),
        # every fault the stages survived (ops/failures.py): NaN rollbacks, batch halvings, preemptions
        "recoveries": collect_recoveries([out_dir / stage for stage in TRAINING_STAGES]),
        "registry": _read_json(out_dir / "registry.json"),  # versions registered, the promotion decision
    }


# --- plots ---------------------------------------------------------------------------------------------
def plot_reward_curves(stages: dict[str, Any], path: Path) -> bool:
    plt = headless_pyplot()
    if plt is None or not stages:
        return False
    fig, axes = plt.subplots(1, len(stages), figsize=(5 * len(stages), 3.5), squeeze=False)
    for ax, (stage, stage_stats) in zip(axes[0], stages.items()):
        ax.plot(range(1, len(stage_stats["steps"]) + 1), stage_stats["steps"], marker=".", linewidth=1)
        ax.set_title(f"{STAGE_TITLES.get(stage, stage)} reward per step")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_xlabel("optimiser step")
        ax.set_ylabel("mean reward")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_accuracy(summaries: dict[str, Any], path: Path) -> bool:
    """Accuracy per model with its 95% interval, one group of bars per eval set."""
    plt = headless_pyplot()
    if plt is None or not summaries:
        return False
    sets = list(summaries)
    labels = list(dict.fromkeys(label for s in summaries.values() for label in s["models"]))
    width = 0.8 / max(1, len(labels))
    fig, ax = plt.subplots(figsize=(2.2 * len(sets) + 2.5, 3.8))
    for j, label in enumerate(labels):
        xs, ys, errs = [], [], [[], []]
        for i, set_name in enumerate(sets):
            m = summaries[set_name]["models"].get(label)
            if m is None:
                continue
            xs.append(i + (j - (len(labels) - 1) / 2) * width)
            ys.append(m["accuracy"])
            errs[0].append(m["accuracy"] - m["ci"][0])
            errs[1].append(m["ci"][1] - m["accuracy"])
        bars = ax.bar(xs, ys, width=width, yerr=errs, capsize=3, label=label)
        ax.bar_label(bars, labels=[f"{v:.0%}" for v in ys], fontsize=8, padding=2)
    ax.set_xticks(range(len(sets)), [f"{s} (n={summaries[s]['n']})" for s in sets])
    ax.set_ylim(0, 1.0)
    ax.set_ylabel("greedy accuracy (95% interval)")
    ax.set_title("Accuracy by model and eval set")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


# --- markdown ------------------------------------------------------------------------------------------
def _fmt(value: Any, pct: bool = False) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.1%}" if pct else f"{value:+.3f}"
    return str(value)


def render_markdown(report: dict[str, Any], command: str, plots: dict[str, bool]) -> str:
    cfg = report["config"]
    lines = ["# srl-rlvr report", "", "Produced by:", "", f"    {command}", "",
             f"Model `{cfg.get('model')}`, tier `{cfg.get('tier') or '-'}`, "
             f"stages {', '.join(cfg.get('stages') or [])}.", ""]
    for stage, s in report["stages"].items():
        first, last = (("first half", "last half") if s["halves"]
                       else (f"first {s['window']} steps", f"last {s['window']} steps"))
        lines += [f"## {STAGE_TITLES.get(stage, stage)}", "", f"| metric | {first} | {last} |", "|---|---|---|",
                  f"| reward | {_fmt(s['reward_first10'])} | {_fmt(s['reward_last10'])} |"]
        if stage == "srl":
            lines.append(f"| format OK | {_fmt(s['format_ok_first10'], True)} | {_fmt(s['format_ok_last10'], True)} |")
        speed = f", {s['tokens_per_s']:.0f} completion tokens/s" if s.get("tokens_per_s") else ""
        lines += ["", f"Global step {s['global_step']}, {s['logged_steps']} logged steps{speed}."]
        if s["halves"]:
            lines.append(f"Fewer than {2 * WINDOW} logged steps, so the columns compare the first and last "
                         f"{s['window']} step(s) instead of 10.")
        if stage == "srl" and s["format_ok_first10"] is None:
            lines.append("Format-OK rate: not logged by the trainer (needs the 0-weight `srl_format_ok` reward).")
        lines.append("")
    for set_name, evals in report["eval"].items():
        lines += eval_section(set_name, evals, report.get("eval_summary", {}).get(set_name))
    if plots.get("reward_curves"):
        lines += ["![reward per step](reward_curves.png)", ""]
    if plots.get("accuracy"):
        lines += ["![accuracy by model](accuracy.png)", ""]
    if not any(plots.values()) and (report["stages"] or report["eval"]):
        lines += ["(Plots skipped: matplotlib is not installed.)", ""]
    if report.get("registry"):
        lines += registry_section(report["registry"])
    if report.get("recoveries"):
        lines += ["## Recoveries", "", "| stage | step | fault | what was done |", "|---|---|---|---|"]
        lines += [f"| {r.get('stage', '')} | {r['step']} | {r['reason']} | {r['action']} |"
                  for r in report["recoveries"]]
        lines.append("")
    lines += ["## Timings", "", "| step | seconds |", "|---|---|"]
    lines += [f"| {name} | {secs:.1f} |" for name, secs in report["timings_s"].items()]
    return "\n".join(lines) + "\n"


def registry_section(registry: dict[str, Any]) -> list[str]:
    lines = ["## Model registry", "", f"Registered as `{registry['name']}` in `{registry['uri']}` "
             f"(eval set: {registry.get('eval_set')}; audit log `{registry.get('audit_log')}`).", "",
             "| model | version | status | aliases | greedy accuracy |", "|---|---|---|---|---|"]
    for label, v in registry.get("versions", {}).items():
        acc = f"{v['greedy_accuracy']:.3f}" if isinstance(v.get("greedy_accuracy"), (int, float)) else "n/a"
        aliases = ", ".join(f"@{a}" for a in v.get("aliases") or []) or "-"
        lines.append(f"| {label} | {v['version']} | {v['status']} | {aliases} | {acc} |")
    promotion = registry.get("promotion")
    if promotion:
        verdict = "promoted" if promotion["passed"] else "not promoted"
        lines += ["", f"Promotion of {promotion['label']} (version {promotion['version']}) to "
                      f"@{promotion['alias']}: **{verdict}**. {promotion['summary']}"]
    holder = (registry.get("alias_holder") or {})
    lines += ["", f"@{holder.get('alias', 'champion')} is now held by "
                  f"{'version ' + str(holder['version']) if holder.get('version') else 'no version'}.", ""]
    return lines


def _ci(m: dict[str, Any]) -> str:
    return f"{m['accuracy']:.1%} [{m['ci'][0]:.1%}, {m['ci'][1]:.1%}]"


def eval_section(set_name: str, evals: dict[str, Any], summ: dict[str, Any] | None) -> list[str]:
    """report.md's tables for one eval set: metrics, accuracy by number of steps, paired comparisons."""
    lines = [f"## Accuracy ({set_name} set)", "",
             "| model | greedy accuracy [95% CI] | avg@k | pass@k | format rate | mean length | n | k |",
             "|---|---|---|---|---|---|---|---|"]
    for label, m in evals.items():
        acc = _ci(summ["models"][label]) if summ and label in summ["models"] else _fmt(m.get("greedy_accuracy"), True)
        lines.append(f"| {label} | {acc} | {_fmt(m.get('avg_at_k'), True)} | "
                     f"{_fmt(m.get('pass_at_k'), True)} | {_fmt(m.get('format_rate'), True)} | "
                     f"{_num(m.get('mean_length'))} | {m.get('n', 'n/a')} | {m.get('k', 'n/a')} |")
    lines.append("")
    if not summ:
        return lines
    groups = list(next(iter(summ["models"].values()))["by_steps"])
    lines += ["By number of solution steps (accuracy [95% CI], n):", "",
              "| model | " + " | ".join(f"{g} step(s)" for g in groups) + " |", "|---|" + "---|" * len(groups)]
    for label, m in summ["models"].items():
        cells = [f"{_ci(m['by_steps'][g])}, n={m['by_steps'][g]['n']}" if g in m["by_steps"] else "n/a"
                 for g in groups]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("")
    if summ["comparisons"]:
        lines += ["Paired comparisons on the same problems (difference in accuracy, bootstrap 95% CI over problems; "
                  "one-sided sign-flip p, which equals exact McNemar for one seed):", "",
                  "| comparison | all: diff [95% CI], p | 2+ steps: diff [95% CI], p |", "|---|---|---|"]
        multi = summ["comparisons_by_steps"].get("2+", {})
        for name, c in summ["comparisons"].items():
            m = multi.get(name)
            cell = f"{c['mean_diff']:+.1%} [{c['ci'][0]:+.1%}, {c['ci'][1]:+.1%}], p={c['p_one_sided']:.3g}"
            mcell = (f"{m['mean_diff']:+.1%} [{m['ci'][0]:+.1%}, {m['ci'][1]:+.1%}], p={m['p_one_sided']:.3g}"
                     if m else "n/a")
            lines.append(f"| {name.replace('_vs_', ' vs ')} | {cell} | {mcell} |")
        lines.append("")
    return lines


def _num(value: Any) -> str:
    return f"{value:.1f}" if isinstance(value, (int, float)) else "n/a"


def write_report(out_dir: str | Path, config: Any, timings: dict[str, float], command: str,
                 models: dict[str, str] | None = None) -> dict[str, Any]:
    """Write report.json, report.md, reward_curves.png and accuracy.png into ``out_dir``; return the report."""
    out = Path(out_dir)
    report = collect(out, config, timings)
    report["models"] = dict(models or {})
    report["command"] = command
    plots = {"reward_curves": plot_reward_curves(report["stages"], out / "reward_curves.png"),
             "accuracy": plot_accuracy(report["eval_summary"], out / "accuracy.png")}
    (out / "report.json").write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")
    (out / "report.md").write_text(render_markdown(report, command, plots), encoding="utf-8")
    return report
