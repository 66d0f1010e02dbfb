"""``srl-rlvr reference``: the CLI reference (docs/cli.md, from every command's ``--help``) and the server's
OpenAPI schema (docs/api/openapi.json, from the FastAPI app), written or checked for drift.

    srl-rlvr reference --out docs            # regenerate both
    srl-rlvr reference --out docs --check    # exit 1 naming the file that drifted (tests/cli run this)
"""

from __future__ import annotations

import json
from pathlib import Path

import click

CLI_FILE = "cli.md"
OPENAPI_FILE = "api/openapi.json"


def _walk(command: click.Command, path: list[str], ctx: click.Context | None):
    settings = {"terminal_width": 100, "max_content_width": 100, **command.context_settings}
    ctx = click.Context(command, info_name=path[-1], parent=ctx, **settings)  # as `srl-rlvr ... --help` makes it
    yield path, command, ctx
    if isinstance(command, click.Group):
        for name in sorted(command.list_commands(ctx)):
            sub = command.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                yield from _walk(sub, [*path, name], ctx)


def cli_markdown(cli: click.Group) -> str:
    """Every command's --help under ``cli`` (the root group: passed in, since this module is one of its commands)."""
    lines = ["# CLI reference", "",
             "Generated from `--help` by `srl-rlvr reference --out docs`; `tests/cli/test_reference.py` fails when "
             "it drifts from the code.", ""]
    for path, command, ctx in _walk(cli, ["srl-rlvr"], None):
        depth = min(len(path) + 1, 4)
        lines += [f"{'#' * depth} `{' '.join(path)}`", "", "```", command.get_help(ctx).rstrip(), "```", ""]
    return "\n".join(lines)


def openapi_json() -> str:
    from srl_rlvr.serving.app import create_app
    from srl_rlvr.serving.settings import ServeSettings

    # The schema does not depend on the model: no model is loaded (the app is never started). With an admin
    # key, so the adapter endpoints (absent on a server without one) are part of it.
    app = create_app(ServeSettings(model="smollm2-135m", api_keys=[{"key": "schema-only", "scope": "admin"}]))
    return json.dumps(app.openapi(), indent=2, sort_keys=True) + "\n"


def generated(cli: click.Group) -> dict[str, str]:
    return {CLI_FILE: cli_markdown(cli), OPENAPI_FILE: openapi_json()}


@click.command("reference")
@click.option("--out", "out_dir", default="docs", show_default=True, help="The docs folder.")
@click.option("--check", is_flag=True, help="Write nothing; exit 1 if a file differs from what the code generates.")
def reference_command(out_dir: str, check: bool) -> None:
    """Write docs/cli.md (every command's --help) and docs/api/openapi.json (the server's OpenAPI schema).

    \b
    Example:
      srl-rlvr reference --out docs --check
    """
    drifted = []
    root = click.get_current_context().find_root().command
    for name, text in generated(root).items():
        path = Path(out_dir) / name
        if check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                drifted.append(str(path))
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        click.echo(f"wrote {path}")
    if drifted:
        click.echo(f"out of date: {', '.join(drifted)}; run: srl-rlvr reference --out {out_dir}", err=True)
        raise SystemExit(1)
