"""The real GGUF -> HF conversion of the embedded SmolLM2-135M-Instruct (about 30 s on 2 CPU cores).

Run it with:  PYTHONPATH=src python -m pytest tests/models -m slow -o addopts="" -q
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from transformers import AutoModelForCausalLM, AutoTokenizer

from srl_rlvr.cli.models import models_group
from srl_rlvr.models import EMBEDDED_DEFAULT, load_model_and_tokenizer, prepare_embedded, resolve_model


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir()}


@pytest.mark.slow
def test_prepare_embedded_for_real(isolated_cache: Path) -> None:
    folder = prepare_embedded()
    assert folder.is_relative_to(isolated_cache)
    assert not list(folder.glob("*.gguf"))
    before = _snapshot(folder)

    started = time.perf_counter()
    assert prepare_embedded() == folder
    assert resolve_model(EMBEDDED_DEFAULT) == str(folder)
    assert time.perf_counter() - started < 5, "a prepared folder must be a fast no-op"
    assert _snapshot(folder) == before
    assert sorted(p.name for p in folder.parent.iterdir()) == [folder.name]

    # Plain HF loading, no gguf_file, no quantizer.
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    assert getattr(model, "hf_quantizer", None) is None
    assert getattr(model.config, "quantization_config", None) is None
    assert model.dtype == torch.float32 and model.config.vocab_size == len(tok) == 49152
    assert model.get_input_embeddings().weight.data_ptr() == model.get_output_embeddings().weight.data_ptr()
    assert tok.eos_token == "<|im_end|>" and tok.model_max_length == model.config.max_position_embeddings

    messages = [{"role": "user", "content": "What is the capital of France?"}]
    enc = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=12, do_sample=False)
    reply = tok.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    assert reply.strip(), "the converted model should answer with some text"
    assert "Paris" in reply  # SmolLM2-135M-Instruct knows this one; garbage weights would not

    model2, tok2 = load_model_and_tokenizer(EMBEDDED_DEFAULT)
    assert tok2.pad_token is not None and model2.config.num_hidden_layers == 30

    result = CliRunner().invoke(models_group, ["prepare"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().splitlines()[-1] == str(folder)
    assert _snapshot(folder) == before
