"""``srl-rlvr compare``'s outputs from its result dict: the Table-1-shaped markdown, the two plots, the docs section.

    srl-rlvr compare configs/compare-cpu.yaml --out out/compare --docs docs/results.md

``result`` is what :func:`srl_rlvr.pipelines.compare.run.run_compare` writes to ``OUT/compare.json``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from srl_rlvr.errors import UserInputError

DOCS_BEGIN, DOCS_END = "<!-- compare:begin -->", "<!-- compare:end -->"
PLOTS = {"reward_curves": "compare_reward_curves.png", "accuracy": "compare_accuracy.png"}


def _pct(value: Any) -> str:
    return f"{value:.1%}" if isinstance(value, (int, float)) else "n/a"


def _count(value: int) -> str:
    return f"{value:,}"


def render_table(result: dict[str, Any]) -> list[str]:
    """Table 1's shape: rows = arms; per eval set greedy, avg@k, pass@k (k > 1), format rate; then budgets."""
    k, sets = result["k"], list(result["eval_sets"])
    metrics = [("greedy", "greedy_accuracy"), (f"avg@{k}", "avg_at_k")]
    if k > 1:
        metrics.append((f"pass@{k}", "pass_at_k"))
    metrics.append(("format", "format_rate"))
    header = ["arm"] + [f"{s} {label}" for s in sets for label, _ in metrics] + ["optimiser steps", "generated tokens",
                                                                                 "processed tokens"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for arm in result["arms"].values():
        cells = [arm["title"]]
        for s in sets:
            m = arm["eval"].get(s) or {}
            cells += [_pct(m.get(key)) for _, key in metrics]
        cells += [str(arm["steps"]), _count(arm["generated_tokens"]), _count(arm["processed_tokens"])]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def render_section(result: dict[str, Any], image_links: dict[str, str]) -> list[str]:
    """The markdown body shared by compare.md and the docs section."""
    budget, k = result["budget"], result["k"]
    lines = ["Produced by:", "", f"    {result['command']}", ""]
    lines += render_table(result)
    lines.append("")
    notes = []
    for name, s in result["eval_sets"].items():
        skipped = (f"; {s['skipped']} of {s['total']} problems skipped because the math scorer cannot judge their "
                   f"answer (listed in OUT/data/eval_{name}.skipped.jsonl)") if s["skipped"] else ""
        notes.append(f"- `{name}`: {s['n']} problems from `{s['source']}`{skipped}.")
    lines += ["Eval sets (greedy decoding; avg@k/pass@k from k sampled completions"
              + (", so with k = 1 avg@1 equals greedy" if k == 1 else "") + "):", "", *notes, ""]
    verdict = ("equal" if budget["equal"]
               else "**UNEQUAL**: " + ", ".join(f"{a} {s}" for a, s in budget["actual"].items()))
    lines += [f"Budgets: every trained arm gets {budget['steps_per_trained_arm']} optimiser steps "
              f"(SRL→RLVR and SFT→RLVR: {budget['srl_steps']} + {budget['rlvr_steps']}); actual steps {verdict}. "
              "Generated tokens are rollout completions (SFT generates none); processed tokens are the prompt and "
              "completion tokens the optimiser saw.", ""]
    for name, groups in result["ordering"].items():
        ranked = " > ".join(" = ".join(f"{result['arms'][a]['title']} "
                                       f"({_pct(result['arms'][a]['eval'][name]['greedy_accuracy'])})"
                                       for a in group) for group in groups)
        lines.append(f"Ordering by greedy accuracy on `{name}`: {ranked}.")
    lines.append("")
    for key, title in (("reward_curves", "reward per optimiser step"), ("accuracy", "greedy accuracy by arm")):
        if key in image_links:
            lines += [f"![{title}]({image_links[key]})", ""]
    return lines


def render_markdown(result: dict[str, Any], image_links: dict[str, str]) -> str:
    return "\n".join(["# srl-rlvr compare", "", *render_section(result, image_links)]) + "\n"


# --- plots ---------------------------------------------------------------------------------------------
def plot_reward_curves(result: dict[str, Any], path: Path) -> bool:
    """One panel per stage kind (SRL reward, RLVR reward, SFT loss); one line per arm, x = the arm's step."""
    from srl_rlvr.core.plotting import headless_pyplot

    plt = headless_pyplot()
    panels: dict[str, list[tuple[str, list[int], list[float]]]] = {"srl": [], "rlvr": [], "sft": []}
    for arm in result["arms"].values():
        offset = 0
        for stage in arm["stages"]:
            values = stage["losses"] if stage["kind"] == "sft" else stage["rewards"]
            if values:
                xs = [offset + i for i in range(1, len(values) + 1)]
                panels[stage["kind"]].append((arm["title"], xs, values))
            offset += int(stage["global_step"] or 0)
    panels = {k: v for k, v in panels.items() if v}
    if plt is None or not panels:
        return False
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6), squeeze=False)
    titles = {"srl": ("SRL stages", "step reward"), "rlvr": ("RLVR stages", "answer reward"),
              "sft": ("SFT stages", "loss")}
    for ax, (kind, lines) in zip(axes[0], panels.items()):
        for label, xs, ys in lines:
            ax.plot(xs, ys, marker=".", linewidth=1, label=label)
        ax.set_title(titles[kind][0])
        ax.set_xlabel("optimiser step of the arm")
        ax.set_ylabel(f"mean {titles[kind][1]}" if kind != "sft" else titles[kind][1])
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_accuracy(result: dict[str, Any], path: Path) -> bool:
    """Greedy accuracy per arm, one bar per eval set."""
    from srl_rlvr.core.plotting import headless_pyplot

    plt = headless_pyplot()
    sets, arms = list(result["eval_sets"]), list(result["arms"].values())
    if plt is None or not arms or not sets:
        return False
    width = 0.8 / len(sets)
    fig, ax = plt.subplots(figsize=(1.5 * len(arms) + 2.5, 3.8))
    top = 0.0
    for i, name in enumerate(sets):
        values = [float(((a["eval"].get(name) or {}).get("greedy_accuracy")) or 0.0) for a in arms]
        top = max([top, *values])
        xs = [j + (i - (len(sets) - 1) / 2) * width for j in range(len(arms))]
        bars = ax.bar(xs, values, width=width, label=name)
        ax.bar_label(bars, labels=[f"{v:.0%}" for v in values], fontsize=7)
    ax.set_xticks(range(len(arms)), [a["title"] for a in arms])
    ax.set_ylim(0, max(1.0, top * 1.15))
    ax.set_ylabel("greedy accuracy")
    ax.set_title("Accuracy by arm")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


# --- docs ----------------------------------------------------------------------------------------------
def update_docs(docs_file: str | Path, result: dict[str, Any], out: Path, plots: dict[str, bool]) -> Path:
    """Write the table, plots and command between the compare markers of ``docs_file`` (appended if absent);
    the PNGs are copied to ``<docs folder>/img/``."""
    docs = Path(docs_file)
    img_dir = docs.parent / "img"
    links = {}
    for key, name in PLOTS.items():
        if plots.get(key):
            img_dir.mkdir(parents=True, exist_ok=True)
            shutil.copy2(out / name, img_dir / name)
            links[key] = os.path.relpath(img_dir / name, docs.parent).replace(os.sep, "/")
    body = "\n".join([DOCS_BEGIN, "## SRL vs. the baselines (`srl-rlvr compare`)", "", *render_section(result, links),
                      DOCS_END])
    text = docs.read_text(encoding="utf-8") if docs.is_file() else ""
    begin, end = text.find(DOCS_BEGIN), text.find(DOCS_END)
    if begin != -1 and end > begin:
        text = text[:begin] + body + text[end + len(DOCS_END):]
    elif begin != -1 or end != -1:
        raise UserInputError(f"{docs}: has only one of the markers {DOCS_BEGIN} / {DOCS_END}; fix or remove it")
    else:
        text = (text.rstrip("\n") + "\n\n" if text.strip() else "") + body + "\n"
    docs.parent.mkdir(parents=True, exist_ok=True)
    docs.write_text(text, encoding="utf-8")
    return docs
