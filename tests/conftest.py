"""Shared fixtures. Tests never download: model tests use the tiny offline model built here."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama + ChatML tokenizer folder (built once per session, ~1 s)."""
    from srl_rlvr.models.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"), seed=0)


@pytest.fixture
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point SRL_RLVR_CACHE at an empty temp folder, so a test never sees or touches the user's cache."""
    cache = tmp_path / "srl-rlvr-cache"
    monkeypatch.setenv("SRL_RLVR_CACHE", str(cache))
    return cache
