"""Shared-prefix log-probs equal TRL's own computation, values and gradients."""

from __future__ import annotations

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from srl_rlvr.training.srl_config import SRLConfig
from srl_rlvr.training.srl_trainer import SRLTrainer


def test_shared_prefix_logps_and_grads_match_trl(tiny_model_dir, srl_dataset, grpo_kwargs):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    trainer = SRLTrainer(model=model, args=SRLConfig(**grpo_kwargs(), reward_mode="lenient"),
                         train_dataset=srl_dataset, processing_class=tok)
    torch.manual_seed(0)
    # two prompts (left padded to one length) x 3 completions each, completions right padded
    p1, p2 = tok("Mia has 3 boxes of 4 pens")["input_ids"], tok("Tom sells 5")["input_ids"]
    plen = max(len(p1), len(p2))
    rows, masks = [], []
    for p in (p1, p1, p2, p1, p2, p2):
        comp = torch.randint(5, 100, (6,)).tolist()
        cut = int(torch.randint(3, 7, (1,)))
        ids = [tok.pad_token_id] * (plen - len(p)) + p + comp[:cut] + [tok.pad_token_id] * (6 - cut)
        mask = [0] * (plen - len(p)) + [1] * len(p) + [1] * cut + [0] * (6 - cut)
        rows.append(ids)
        masks.append(mask)
    ids, mask = torch.tensor(rows), torch.tensor(masks)
    results = {}
    calls = []
    original = trainer._shared_prefix_logps
    trainer._shared_prefix_logps = lambda *a, **k: calls.append(1) or original(*a, **k)
    for shared in (False, True):
        trainer.args.shared_prefix_training = shared
        model.zero_grad()
        logps, ent, _ = trainer._get_per_token_logps_and_entropies(model, ids, mask, 6, compute_entropy=True)
        (logps * mask[:, -6:]).sum().backward()
        results[shared] = (logps.detach(), ent.detach(), {n: p.grad.clone() for n, p in model.named_parameters()})
    assert len(calls) == 1, "the shared-prefix path did not run (or ran when switched off)"
    (l0, e0, g0), (l1, e1, g1) = results[False], results[True]
    m = mask[:, -6:].bool()
    assert torch.allclose(l0[m], l1[m], atol=1e-5)
    assert torch.allclose(e0[m], e1[m], atol=1e-4)
    for name in g0:
        assert torch.allclose(g0[name], g1[name], atol=1e-5, rtol=1e-3), name
