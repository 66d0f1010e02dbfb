"""docs/cli.md and docs/api/openapi.json are what the code generates (srl-rlvr reference --out docs)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from srl_rlvr.cli.main import cli
from srl_rlvr.cli.reference import CLI_FILE, OPENAPI_FILE, generated

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_committed_reference_docs_match_the_code():
    for name, text in generated(cli).items():
        assert (DOCS / name).read_text(encoding="utf-8") == text, \
            f"docs/{name} drifted from the code: run `srl-rlvr reference --out docs`"


def test_the_reference_covers_every_command_and_endpoint():
    cli = (DOCS / CLI_FILE).read_text(encoding="utf-8")
    for command in ("srl-rlvr loop", "srl-rlvr distill", "srl-rlvr registry promote", "srl-rlvr serve",
                    "srl-rlvr monitor generate", "srl-rlvr checkpoints verify"):
        assert f"`{command}`" in cli, command
    paths = json.loads((DOCS / OPENAPI_FILE).read_text(encoding="utf-8"))["paths"]
    for path in ("/v1/chat/completions", "/v1/completions", "/v1/models", "/v1/load_lora_adapter", "/health",
                 "/metrics"):
        assert path in paths, path


def test_check_mode_names_the_drifted_file(tmp_path):
    (tmp_path / "api").mkdir()
    for name, text in generated(cli).items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    (tmp_path / CLI_FILE).write_text("# stale\n", encoding="utf-8")
    p = subprocess.run([sys.executable, "-m", "srl_rlvr.cli.main", "reference", "--out", str(tmp_path), "--check"],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 1 and f"{tmp_path / CLI_FILE}" in p.stderr and "openapi" not in p.stderr
