"""``srl-rlvr distill``: verified step-by-step trajectories from an OpenAI-compatible teacher."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("distill")
@click.option("--teacher-url", required=True, metavar="URL",
              help="The teacher's OpenAI-compatible API root (requests go to URL/chat/completions), "
                   "e.g. http://localhost:8000/v1.")
@click.option("--teacher-model", required=True, metavar="NAME", help="The model name sent to the teacher.")
@click.option("--prompts", "prompts_path", required=True, metavar="PROBLEMS.jsonl",
              type=click.Path(dir_okay=False),
              help="Trajectory JSONL rows with 'problem' and 'answer' (math) or 'tests' (code); 'id' optional.")
@click.option("--out", "out_dir", required=True, metavar="DIR", type=click.Path(file_okay=False),
              help="Folder for trajectories.jsonl, rejected.jsonl, manifest.json and the teacher cache.")
@click.option("--samples", default=1, show_default=True, help="Teacher samples per problem (per round).")
@click.option("--max-attempts", default=1, show_default=True,
              help="Rounds: a problem with no verified sample is sampled again, up to this many rounds.")
@click.option("--api-key-env", default=None, metavar="VAR",
              help="Environment variable holding the teacher's API key (sent as a Bearer token).")
@click.option("--concurrency", default=4, show_default=True, help="Requests in flight at once.")
@click.option("--temperature", default=0.7, show_default=True, type=float)
@click.option("--max-tokens", default=1024, show_default=True, help="Most tokens per teacher completion.")
@click.option("--decontaminate", "eval_paths", multiple=True, metavar="EVAL.jsonl", type=click.Path(dir_okay=False),
              help="Drop prompts sharing an 8-gram of words with a problem of this eval file; repeatable.")
@click.option("--retries", default=3, show_default=True,
              help="Retries of a request that failed transiently (connection, timeout, 408/425/429/5xx).")
def distill_command(teacher_url: str, teacher_model: str, prompts_path: str, out_dir: str, samples: int,
                    max_attempts: int, api_key_env: str | None, concurrency: int, temperature: float,
                    max_tokens: int, eval_paths: tuple[str, ...], retries: int) -> None:
    """Ask a teacher to solve each problem step by step; keep the samples whose final answer (math-verify,
    the RLVR reward) or tests (sandbox) check out, as trajectory JSONL that "srl-rlvr data build" reads.

    Every teacher response is cached in DIR as soon as it arrives, so a rerun with the same arguments
    (after a crash, a kill or a teacher outage) asks only what is missing and rewrites the outputs.

    \b
    Example:
      srl-rlvr data demo --out data/demo
      srl-rlvr distill --teacher-url http://localhost:8000/v1 --teacher-model Qwen/Qwen2.5-7B-Instruct \\
          --prompts data/demo/train.jsonl --out out/distill --samples 4 --max-attempts 2 \\
          --decontaminate data/demo/test.jsonl
      srl-rlvr data build --input out/distill/trajectories.jsonl --output out/distill/srl_train.jsonl
    """
    from srl_rlvr.errors import UserInputError
    from srl_rlvr.ops.failures import FailurePolicy
    from srl_rlvr.pipelines.distill import distill

    if retries < 0:
        raise UserInputError(f"--retries must be >= 0, got {retries}")
    manifest = distill(Path(prompts_path), Path(out_dir), teacher_url, teacher_model, samples=samples,
                       max_attempts=max_attempts, api_key_env=api_key_env, concurrency=concurrency,
                       temperature=temperature, max_tokens=max_tokens,
                       decontaminate=[Path(p) for p in eval_paths],
                       policy=FailurePolicy(transient_retries=retries))
    counts = manifest["counts"]
    rejected = {reason: n for reason, n in counts["rejected"].items() if n}
    click.echo(f"problems: {counts['problems']} ({counts['contaminated']} contaminated, dropped); "
               f"rounds: {counts['rounds']}")
    click.echo(f"requests: {counts['requests_sent']} sent, {counts['cached_hits']} cached, "
               f"{counts['retries']} retries")
    click.echo(f"kept: {counts['kept']}; rejected: {sum(rejected.values())}"
               + (f" ({', '.join(f'{r} {n}' for r, n in rejected.items())})" if rejected else ""))
    histogram = ", ".join(f"{n} with {k}" for k, n in counts["kept_per_problem"].items())
    click.echo(f"problems by kept samples: {histogram or 'none'}")
    click.echo(f"wrote {Path(out_dir) / 'trajectories.jsonl'}, rejected.jsonl and manifest.json")
