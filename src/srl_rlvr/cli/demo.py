"""``srl-rlvr demo``: the main job on the embedded default model.

Today it runs the data half of the pipeline end to end — provision the embedded model, write the demo
task, build SRL instances — and scores the untrained model's rollouts with the SRL reward, which is the
starting point training has to improve on. Training stages join in the training issue.
"""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.command("demo")
@click.option("--out", "out_dir", default="out/demo", show_default=True, help="Output folder.")
@click.option("--model", default="smollm2-135m", show_default=True, help="Model name, HF id or folder.")
@click.option("--probe", default=16, show_default=True, help="SRL instances to roll out with the base model (0: skip).")
@click.option("--seed", default=0, show_default=True)
def demo_command(out_dir: str, model: str, probe: int, seed: int) -> None:
    """Run the main job on the embedded default model.

    \b
    Example:
      srl-rlvr demo --out out/demo
    """
    from srl_rlvr.data.demo import write_demo_task
    from srl_rlvr.data.loaders.trajectories import load_trajectories
    from srl_rlvr.data.srl import build_instances, write_jsonl
    from srl_rlvr.models import resolve_model

    out = Path(out_dir)
    model_path = resolve_model(model)
    click.echo(f"[1/3] model ready: {model_path}")

    info = write_demo_task(out / "data", n_train=400, n_test=100, seed=seed)
    click.echo(f"[2/3] demo task: {info['n_train']} train / {info['n_test']} test problems in {out / 'data'}")

    for split in ("train", "test"):
        trajs = load_trajectories(out / "data" / f"{split}.jsonl").rows
        result = build_instances(trajs)
        n = write_jsonl(out / "data" / f"srl_{split}.jsonl", result.instances)
        click.echo(f"      srl_{split}.jsonl: {n} step instances from {result.trajectories} trajectories")

    summary: dict = {"model": model_path, "data": info}
    if probe > 0:
        from srl_rlvr.cli._probe import probe_srl_reward

        rows = [json.loads(line) for line in (out / "data" / "srl_train.jsonl").open(encoding="utf-8")][:probe]
        summary["base_probe"] = probe_srl_reward(model_path, rows, seed=seed)
        p = summary["base_probe"]
        click.echo(
            f"[3/3] base model on {p['n']} SRL prompts: format-OK {p['format_ok_rate']:.0%}, "
            f"strict reward {p['strict_mean']:+.3f}, lenient reward {p['lenient_mean']:+.3f}"
        )
    (out / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    click.echo(f"summary: {out / 'summary.json'}")
