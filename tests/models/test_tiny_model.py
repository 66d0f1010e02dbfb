"""The tiny offline model unit tests use instead of SmolLM2: builds, loads, chats, generates."""

from __future__ import annotations

import filecmp
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from srl_rlvr.models import load_model_and_tokenizer
from srl_rlvr.models.tiny import DEFAULT_SYSTEM_PROMPT, build_tiny_model

CHAT = [{"role": "user", "content": "Mia has 7 boxes with 6 pens in each. How many pens? 7 * 6 = 42"}]


def test_loads_with_auto_classes_and_matches_smollm2_conventions(tiny_model_dir: Path) -> None:
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    cfg = model.config
    assert cfg.model_type == "llama"
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads, cfg.num_key_value_heads) == (64, 2, 4, 2)
    assert cfg.tie_word_embeddings
    assert model.get_input_embeddings().weight.data_ptr() == model.get_output_embeddings().weight.data_ptr()
    assert 512 <= len(tok) <= 1000 and cfg.vocab_size == len(tok)
    # Same special tokens and ids as SmolLM2-135M-Instruct.
    assert tok.convert_ids_to_tokens([0, 1, 2]) == ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    assert (tok.eos_token, tok.pad_token, tok.bos_token) == ("<|im_end|>", "<|im_end|>", "<|im_start|>")
    assert model.generation_config.eos_token_id == tok.eos_token_id == 2


def test_tokenizer_round_trips_text_and_splits_digits(tiny_model_dir: Path) -> None:
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    text = "After buying 15 more, she has 33 + 15 = 48 pens. The answer is 48.\nÜber café ✓"
    ids = tok(text)["input_ids"]
    assert tok.decode(ids) == text  # byte-level: any text survives, nothing becomes unk
    assert tok.unk_token_id not in ids
    assert [t for t in tok.tokenize("1234") if t.strip("Ġ")] == ["1", "2", "3", "4"]


def test_chat_template_default_system_prompt_and_generation_prompt(tiny_model_dir: Path) -> None:
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    text = tok.apply_chat_template(CHAT, tokenize=False, add_generation_prompt=True)
    assert text == (
        f"<|im_start|>system\n{DEFAULT_SYSTEM_PROMPT}<|im_end|>\n"
        f"<|im_start|>user\n{CHAT[0]['content']}<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    own_system = [{"role": "system", "content": "Be brief."}, *CHAT]
    text = tok.apply_chat_template(own_system, tokenize=False, add_generation_prompt=False)
    assert DEFAULT_SYSTEM_PROMPT not in text
    assert text.startswith("<|im_start|>system\nBe brief.<|im_end|>\n") and text.endswith("<|im_end|>\n")


def test_batched_left_padded_generate(tiny_model_dir: Path) -> None:
    model, tok = load_model_and_tokenizer(str(tiny_model_dir))
    tok.padding_side = "left"
    prompts = [
        tok.apply_chat_template(CHAT, tokenize=False, add_generation_prompt=True),
        tok.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True),
    ]
    enc = tok(prompts, return_tensors="pt", padding=True)
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=6, do_sample=False, pad_token_id=tok.pad_token_id)
    assert out.shape[0] == 2 and 1 <= out.shape[1] - enc["input_ids"].shape[1] <= 6
    assert all(isinstance(s, str) for s in tok.batch_decode(out[:, enc["input_ids"].shape[1] :]))


def test_same_seed_same_files_other_seed_other_weights(tmp_path: Path) -> None:
    state = torch.get_rng_state()
    a = build_tiny_model(tmp_path / "a", seed=0)
    b = build_tiny_model(tmp_path / "b", seed=0)
    c = build_tiny_model(tmp_path / "c", seed=1)
    assert torch.equal(torch.get_rng_state(), state), "building must not disturb the caller's RNG"
    names = sorted(p.name for p in a.iterdir())
    assert {"config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja"} <= set(names)
    match, mismatch, errors = filecmp.cmpfiles(a, b, names, shallow=False)
    assert mismatch == [] and errors == []
    assert not filecmp.cmp(a / "model.safetensors", c / "model.safetensors", shallow=False)
    assert filecmp.cmp(a / "tokenizer.json", c / "tokenizer.json", shallow=False)


def test_load_model_and_tokenizer_dtype_and_missing_pad(tiny_model_dir: Path, tmp_path: Path) -> None:
    model, tok = load_model_and_tokenizer(str(tiny_model_dir), dtype="bfloat16")
    assert model.dtype == torch.bfloat16 and not model.training
    # A tokenizer saved without a pad token gets eos as pad.
    folder = tmp_path / "nopad"
    AutoModelForCausalLM.from_pretrained(tiny_model_dir).save_pretrained(folder)
    raw = AutoTokenizer.from_pretrained(tiny_model_dir)
    raw.pad_token = None
    raw.save_pretrained(folder)
    assert AutoTokenizer.from_pretrained(folder).pad_token is None
    _, tok = load_model_and_tokenizer(str(folder))
    assert tok.pad_token == tok.eos_token == "<|im_end|>"


def test_load_model_and_tokenizer_rejects_unknown_dtype(tiny_model_dir: Path) -> None:
    from srl_rlvr.errors import UserInputError

    with pytest.raises(UserInputError, match="unknown dtype"):
        load_model_and_tokenizer(str(tiny_model_dir), dtype="float33")


def test_peft_adapter_folder_loads_base_and_adapter(tiny_model_dir: Path, tmp_path: Path) -> None:
    from peft import LoraConfig, PeftModel, get_peft_model

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    lora = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    adapter_dir = tmp_path / "adapter"
    lora.save_pretrained(adapter_dir)
    assert (adapter_dir / "adapter_config.json").is_file()

    model, tok = load_model_and_tokenizer(str(adapter_dir))
    assert isinstance(model, PeftModel)
    ids = tok("The answer is 48.", return_tensors="pt")["input_ids"]
    lora.eval()
    with torch.no_grad():
        expected, got = lora(ids).logits, model(ids).logits
        plain = AutoModelForCausalLM.from_pretrained(tiny_model_dir)(ids).logits
    assert torch.allclose(got, expected, atol=1e-5)
    assert not torch.allclose(got, plain, atol=1e-5), "the adapter must change the outputs"
