"""``srl-rlvr eval``: score a model (base, SFT, SRL or RLVR checkpoint, or LoRA adapter) on math problems."""

from __future__ import annotations

from pathlib import Path

import click

from srl_rlvr.data.loaders.registry import LOADERS


def _load_items(data_path: str, limit: int | None, fmt: str = "auto"):
    """The first ``limit`` scorable rows (each row needs an answer; the first one without is named).

    Rows whose answer the math scorer cannot judge (CHAMP's prose answers) are skipped with a printed
    count: see :mod:`srl_rlvr.eval.datasets`.
    """
    from srl_rlvr.eval.datasets import load_eval_items

    items = load_eval_items(data_path, fmt=fmt, limit=limit)
    if items.skipped:
        click.echo(items.summary())
    return items


def write_skipped(rows: list[dict], path: Path) -> None:
    """The problems left out of the score, one JSON object per line: id, answer, reason."""
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def _print_metrics(metrics: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"eval ({metrics['mode']}, n={metrics['n']}, k={metrics['k']})")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name in ("greedy_accuracy", "avg_at_k", "pass_at_k", "format_rate"):
        table.add_row(name, f"{metrics[name]:.3f}")
    table.add_row("mean_length", f"{metrics['mean_length']:.1f} tokens")
    Console(highlight=False).print(table)


@click.command("eval")
@click.option("--model", "model_name", required=True,
              help="'smollm2-135m', a model or LoRA adapter folder, or a HF id.")
@click.option("--data", "data_path", required=True,
              help="Trajectory JSONL whose rows have an 'answer', a benchmark file (amc23/aime24/aime25 rows), "
              "or 'champ'.")
@click.option("--format", "fmt", type=click.Choice(["auto", *LOADERS]), default="auto", show_default=True,
              help="Data format (auto: detected from the first row).")
@click.option("--out", "out_dir", required=True, help="Folder for metrics.json and predictions.jsonl.")
@click.option("--k", default=1, show_default=True, help="Samples per problem for avg@k / pass@k (1: greedy only).")
@click.option("--limit", default=None, type=int, help="Evaluate only the first N problems.")
@click.option("--seed", default=0, show_default=True)
@click.option("--mode", type=click.Choice(["full", "stepwise"]), default="full", show_default=True,
              help="full: one call writes the whole solution; stepwise: one SRL step prompt per step.")
@click.option("--batch-size", default=16, show_default=True, help="Sequences generated at once.")
@click.option("--max-new-tokens", default=256, show_default=True, help="Per call (per step in stepwise mode).")
@click.option("--temperature", default=1.0, show_default=True, help="Sampling temperature for the k samples.")
@click.option("--max-steps", default=8, show_default=True, help="Stepwise: step calls per problem at most.")
@click.option("--think-prefill/--no-think-prefill", default=None,
              help="End prompts with '<think>'. Default: as the model was trained (its srl_rlvr_stage.json), "
              "else off.")
def eval_command(model_name: str, data_path: str, fmt: str, out_dir: str, k: int, limit: int | None, seed: int,
                 mode: str, batch_size: int, max_new_tokens: int, temperature: float, max_steps: int,
                 think_prefill: bool | None) -> None:
    """Greedy accuracy, avg@k, pass@k, format rate and length on problems with answers.

    \b
    Example:
      srl-rlvr eval --model smollm2-135m --data data/demo/test.jsonl --out out/eval_base --k 4 --mode full
      srl-rlvr eval --model out/demo/models/srl_rlvr --data champ --out out/eval_champ
    """
    from srl_rlvr.eval import EvalConfig, evaluate, write_eval_outputs

    config = EvalConfig(k=k, limit=limit, seed=seed, batch_size=batch_size, max_new_tokens=max_new_tokens,
                        temperature=temperature, mode=mode, max_steps=max_steps, think_prefill=think_prefill)
    items = _load_items(data_path, limit, fmt)
    result = evaluate(model_name, items.rows, config)
    result.run["data"] = data_path if data_path == "champ" else str(Path(data_path))
    result.run["skipped_unscorable"] = len(items.skipped)
    paths = write_eval_outputs(result, out_dir)
    if items.skipped:
        write_skipped(items.skipped, Path(out_dir) / "skipped.jsonl")
        click.echo(f"skipped: {Path(out_dir) / 'skipped.jsonl'}")
    _print_metrics(result.metrics)
    run_config = result.run["config"]
    click.echo(f"done in {result.run['seconds']:.0f}s (bf16 autocast: {run_config['bf16']}, "
               f"think prefill: {run_config['think_prefill']})")
    click.echo(f"metrics: {paths['metrics']}")
    click.echo(f"predictions: {paths['predictions']}")
