"""Shared fixtures. Tests never download: model tests use the tiny offline model built here."""

from __future__ import annotations

from pathlib import Path

import pytest


def pytest_configure(config: pytest.Config) -> None:
    # Tiny models gain nothing from intra-op threads, and on a shared 2-core box two threads per process
    # oversubscribe the CPU (a tiny GRPO step went from 0.1 s to 10 s). Subprocess tests inherit this too.
    import os

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)


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
