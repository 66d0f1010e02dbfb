"""Serving fixtures: LoRA adapters for the tiny model, a tokenizer, a clean API-key environment."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from serving_helpers import make_lora


@pytest.fixture(scope="session")
def lora_dirs(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("loras")
    # Different target modules: loading lora-b creates new LoRA layers rather than adding to lora-a's.
    return {"lora-a": make_lora(tiny_model_dir, root / "lora-a", 1),
            "lora-b": make_lora(tiny_model_dir, root / "lora-b", 2, targets=("k_proj", "o_proj", "up_proj"))}


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture
def clean_api_key_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("SRL_RLVR_API_KEYS", raising=False)
    yield
