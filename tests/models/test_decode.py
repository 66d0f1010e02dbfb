"""models/decode.py: rows leave the batch when they end, and the tokens are generate's."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

from srl_rlvr.models import decode
from srl_rlvr.training.generation import generate_shared_prefix


@pytest.fixture(scope="module")
def model_and_rows(tiny_model_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    texts = ["Mia has 3 apples and 4 pears.", "Tom has 5 cars", "Ann buys 12 eggs and eats 2 of them", "Go"]
    rows = [tok(t)["input_ids"] for t in texts for _ in range(2)]
    return model, tok, rows


def _batch_sizes(model):
    sizes = []
    handle = model.register_forward_pre_hook(lambda m, a, k: sizes.append(k["input_ids"].shape[0]), with_kwargs=True)
    return sizes, handle


def _eos_that_ends_rows_early(model, tok, rows):
    """Tokens the tiny random model writes at different steps of different rows: taken as EOS, rows end apart."""
    free = GenerationConfig(max_new_tokens=12, do_sample=False, pad_token_id=tok.pad_token_id, eos_token_id=[])
    out = generate_shared_prefix(model, rows, free, tok.pad_token_id, drop_ended=False)
    return sorted({int(out[0, 2]), int(out[4, 7])})


@pytest.mark.parametrize("preallocate", [True, False])
def test_greedy_drops_ended_rows_and_matches_generate(model_and_rows, preallocate):
    model, tok, rows = model_and_rows
    eos = _eos_that_ends_rows_early(model, tok, rows)
    cfg = GenerationConfig(max_new_tokens=12, do_sample=False, pad_token_id=tok.pad_token_id, eos_token_id=eos)
    plain = generate_shared_prefix(model, rows, cfg, tok.pad_token_id, preallocate=preallocate, drop_ended=False)
    sizes, handle = _batch_sizes(model)
    try:
        ours = generate_shared_prefix(model, rows, cfg, tok.pad_token_id, preallocate=preallocate)
    finally:
        handle.remove()
    lengths = [(row != tok.pad_token_id).sum().item() for row in plain]
    assert len(set(lengths)) > 1, lengths  # rows really ended at different steps
    assert ours.tolist() == plain.tolist()
    decode_sizes = sizes[-ours.size(1):]
    assert min(decode_sizes) < len(rows), decode_sizes  # and ended rows left the batch


def test_sampling_settings_match_generate_while_no_row_ends(model_and_rows):
    """Temperature, top-k, top-p and min_new_tokens are processed as generate does: with every row running to
    max_new_tokens the draws are the same ones, so one seed gives the same tokens."""
    model, tok, rows = model_and_rows
    cfg = GenerationConfig(max_new_tokens=8, min_new_tokens=8, do_sample=True, temperature=0.7, top_k=20, top_p=0.9,
                           pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    outs = {}
    for drop_ended in (True, False):
        torch.manual_seed(0)
        outs[drop_ended] = generate_shared_prefix(model, rows, cfg, tok.pad_token_id, drop_ended=drop_ended)
    assert torch.equal(outs[True], outs[False])
    torch.manual_seed(1)
    assert not torch.equal(generate_shared_prefix(model, rows, cfg, tok.pad_token_id), outs[True])


def test_sampling_with_ended_rows_keeps_each_rows_tokens_until_its_eos(model_and_rows):
    model, tok, rows = model_and_rows
    eos = _eos_that_ends_rows_early(model, tok, rows)
    cfg = GenerationConfig(max_new_tokens=12, do_sample=True, temperature=1e-4, pad_token_id=tok.pad_token_id,
                           eos_token_id=eos)  # near-greedy sampling: the same tokens as greedy
    greedy = GenerationConfig(max_new_tokens=12, do_sample=False, pad_token_id=tok.pad_token_id, eos_token_id=eos)
    torch.manual_seed(0)
    sampled = generate_shared_prefix(model, rows, cfg, tok.pad_token_id)
    assert sampled.tolist() == generate_shared_prefix(model, rows, greedy, tok.pad_token_id).tolist()


def test_supports_only_what_it_processes():
    base = dict(max_new_tokens=8, do_sample=True, temperature=0.9, top_k=0, top_p=1.0, pad_token_id=0,
                eos_token_id=[1])
    assert decode.supports(GenerationConfig(**base))
    # what TRL's GRPOTrainer passes on its transformers path
    assert decode.supports(GenerationConfig(**base, bos_token_id=1, min_p=None, repetition_penalty=1.0,
                                            cache_implementation=None, disable_compile=True))
    for extra in ({"repetition_penalty": 1.2}, {"num_beams": 2}, {"no_repeat_ngram_size": 3},
                  {"bad_words_ids": [[5]]}, {"output_scores": True, "return_dict_in_generate": True}):
        assert not decode.supports(GenerationConfig(**base, **extra)), extra
    assert not decode.supports(GenerationConfig(do_sample=False))  # no max_new_tokens
