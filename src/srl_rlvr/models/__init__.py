"""Model provisioning: the embedded SmolLM2, local folders, Hugging Face ids, and a tiny test model."""

from __future__ import annotations

from srl_rlvr.models.provision import (
    EMBEDDED_DEFAULT,
    INSTALL_HINT,
    cache_root,
    embedded_model_dir,
    find_embedded_gguf,
    load_model_and_tokenizer,
    prepare_embedded,
    resolve_model,
)
from srl_rlvr.models.tiny import build_tiny_model

__all__ = [
    "EMBEDDED_DEFAULT",
    "INSTALL_HINT",
    "build_tiny_model",
    "cache_root",
    "embedded_model_dir",
    "find_embedded_gguf",
    "load_model_and_tokenizer",
    "prepare_embedded",
    "resolve_model",
]
