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
    assert trainer._shared_prefix_last == {"unique": 2, "common": 0}  # prompts too short for the common-prefix pass
    (l0, e0, g0), (l1, e1, g1) = results[False], results[True]
    m = mask[:, -6:].bool()
    assert torch.allclose(l0[m], l1[m], atol=1e-5)
    assert torch.allclose(e0[m], e1[m], atol=1e-4)
    for name in g0:
        assert torch.allclose(g0[name], g1[name], atol=1e-5, rtol=1e-3), name


# ---------------------------------------------------------------------------------------------------------------
# Second level: the unique prompts share a common (system) prefix that runs once for the whole batch.

TOL = 1e-5  # float32 exactness bound: log-probs, gradients (observed ~1e-6) and generation logits
SYSTEM = "You are a careful assistant. Solve the problem step by step and give the final answer."
PROBLEMS = [
    "Mia has 7 boxes with 6 pens in each.",
    "Tom sells 5",
    "Noah starts with 12 marbles. After losing 3, he has 12 - 3 = 9 marbles. How many?",
]


def _chat_prompts(tok) -> list[list[int]]:
    """Chat prompts of different lengths that share the system message (30 tokens on the tiny tokenizer)."""
    return [list(tok.apply_chat_template([{"role": "system", "content": SYSTEM}, {"role": "user", "content": p}],
                                         add_generation_prompt=True, tokenize=True)["input_ids"]) for p in PROBLEMS]


def _batch(prompts, order, width, pad_id, seed=0):
    """TRL's layout: prompts left padded to one length, completions of 1..width tokens right padded to width."""
    gen = torch.Generator().manual_seed(seed)
    plen = max(len(p) for p in prompts)
    rows, masks = [], []
    for k, i in enumerate(order):
        p = prompts[i]
        cut = 1 + k % width  # every completion length from 1 to width
        comp = torch.randint(5, 100, (width,), generator=gen).tolist()
        rows.append([pad_id] * (plen - len(p)) + p + comp[:cut] + [pad_id] * (width - cut))
        masks.append([0] * (plen - len(p)) + [1] * len(p) + [1] * cut + [0] * (width - cut))
    return torch.tensor(rows), torch.tensor(masks)


def _trainer(tiny_model_dir, srl_dataset, grpo_kwargs):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    trainer = SRLTrainer(model=model, args=SRLConfig(**grpo_kwargs(), reward_mode="lenient"),
                         train_dataset=srl_dataset, processing_class=tok)
    model.train()  # as in a training step (the tiny model has no dropout)
    return trainer, model, tok


def _logps_and_grads(trainer, model, ids, mask, k, shared):
    trainer.args.shared_prefix_training = shared
    model.zero_grad()
    logps, ent, _ = trainer._get_per_token_logps_and_entropies(model, ids, mask, k, compute_entropy=True)
    (logps * mask[:, -k:]).sum().backward()
    return logps.detach(), ent.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


def _max_diffs(a, b, m):
    (l0, e0, g0), (l1, e1, g1) = a, b
    return ((l0 - l1)[m].abs().max().item(), (e0 - e1)[m].abs().max().item(),
            max((g0[n] - g1[n]).abs().max().item() for n in g0))


def _prompt_sets(tok):
    chat = _chat_prompts(tok)
    head = chat[0][:30]
    return {
        "chat": chat,
        # the shortest prompt is the common prefix + its last token: nothing of its own in the remainder pass
        "empty-remainder": [head + [40], head + [41, 42, 43, 44], head + [41, 45]],
        # all prompts differ only in their last token: no remainder pass at all
        "no-remainder": [head + [40], head + [41], head + [42]],
    }


def test_common_prefix_logps_and_grads_match_trl(tiny_model_dir, srl_dataset, grpo_kwargs):
    trainer, model, tok = _trainer(tiny_model_dir, srl_dataset, grpo_kwargs)
    for name, prompts in _prompt_sets(tok).items():
        ids, mask = _batch(prompts, [0, 1, 0, 2, 1, 2, 0, 2], 7, tok.pad_token_id)
        trl = _logps_and_grads(trainer, model, ids, mask, 7, shared=False)
        trainer._shared_prefix_last = None
        ours = _logps_and_grads(trainer, model, ids, mask, 7, shared=True)
        expected = min(len(p) for p in prompts) - 1 if name != "chat" else 30
        assert trainer._shared_prefix_last == {"unique": 3, "common": expected}, name  # the two-level path ran
        d_logp, d_ent, d_grad = _max_diffs(trl, ours, mask[:, -7:].bool())
        print(f"{name}: max |d logp| {d_logp:.2e}, |d entropy| {d_ent:.2e}, |d grad| {d_grad:.2e}")
        assert d_logp < TOL and d_ent < TOL and d_grad < TOL, name


def _sabotage(model, where):
    """Break the two-level path on purpose: shift the remainder's positions, or unmask the padding gap."""
    def hook(module, args, kwargs):
        if where == "remainder-positions" and "labels" not in kwargs and kwargs.get("attention_mask") is not None:
            kwargs["position_ids"] = kwargs["position_ids"] + 1
        if where == "gap-unmasked" and "labels" in kwargs:
            kwargs["attention_mask"] = torch.ones_like(kwargs["attention_mask"])
        return args, kwargs

    return model.register_forward_pre_hook(hook, with_kwargs=True)


def test_common_prefix_check_catches_wrong_positions_and_mask(tiny_model_dir, srl_dataset, grpo_kwargs):
    """The comparison above is sensitive: a one-token position offset or an attended gap breaks it."""
    trainer, model, tok = _trainer(tiny_model_dir, srl_dataset, grpo_kwargs)
    ids, mask = _batch(_chat_prompts(tok), [0, 1, 0, 2, 1, 2, 0, 2], 7, tok.pad_token_id)
    trl = _logps_and_grads(trainer, model, ids, mask, 7, shared=False)
    for where in ("remainder-positions", "gap-unmasked"):
        handle = _sabotage(model, where)
        try:
            broken = _logps_and_grads(trainer, model, ids, mask, 7, shared=True)
        finally:
            handle.remove()
        assert trainer._shared_prefix_last["common"] == 30
        d_logp, _, d_grad = _max_diffs(trl, broken, mask[:, -7:].bool())
        print(f"sabotaged {where}: max |d logp| {d_logp:.2e}, |d grad| {d_grad:.2e}")
        assert d_logp > 10 * TOL and d_grad > 10 * TOL, where


def test_checkpointing_falls_back_to_trl(tiny_model_dir, srl_dataset, grpo_kwargs):
    """Checkpointed layers drop the KV cache while gradients are on: the shared path must not run then."""
    trainer, model, tok = _trainer(tiny_model_dir, srl_dataset, grpo_kwargs)
    ids, mask = _batch(_chat_prompts(tok), [0, 1, 0, 2, 1, 2, 0, 2], 7, tok.pad_token_id)
    m = mask[:, -7:].bool()
    reference = _logps_and_grads(trainer, model, ids, mask, 7, shared=False)  # no checkpointing
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    assert trainer.accelerator.unwrap_model(model).is_activation_checkpointing
    # the bug this guards against: the shared path with checkpointing on scores completions without their prompt
    prompt_len = ids.size(1) - 7
    unique, inverse = torch.unique(ids[:, :prompt_len], dim=0, return_inverse=True)
    trainer.args.shared_prefix_training = True
    wrong, _, _ = trainer._shared_prefix_logps(model, ids, mask, 7, unique, inverse, False)
    bug = (wrong.detach() - reference[0])[m].abs().max().item()
    print(f"shared path under checkpointing (the bug): max |d logp| {bug:.2e}")
    assert bug > 1e-2
    trainer._shared_prefix_last = None
    ours = _logps_and_grads(trainer, model, ids, mask, 7, shared=True)
    d_logp, _, d_grad = _max_diffs(reference, ours, m)
    assert d_logp < TOL and d_grad < TOL
    assert trainer._shared_prefix_last is None  # TRL's path ran
    # without gradients nothing is checkpointed, the cache is kept and the shared path is exact
    with torch.no_grad():
        trainer.args.shared_prefix_training = False
        plain, _, _ = trainer._get_per_token_logps_and_entropies(model, ids, mask, 7)
        trainer.args.shared_prefix_training = True
        shared, _, _ = trainer._get_per_token_logps_and_entropies(model, ids, mask, 7)
    assert trainer._shared_prefix_last == {"unique": 3, "common": 30}
    assert (plain - shared)[m].abs().max() < TOL


def _decode_logits(model, n_rows):
    """Collect the logits of every decode step of a batch of ``n_rows`` (hook on the model)."""
    seen = []

    def hook(module, args, kwargs, output):
        if kwargs["input_ids"].shape == (n_rows, 1):
            seen.append(output.logits[:, -1].detach().clone())

    return seen, model.register_forward_hook(hook, with_kwargs=True)


def test_common_prefix_generation_matches_plain_generate(tiny_model_dir):
    from transformers import GenerationConfig

    from srl_rlvr.training.generation import generate_shared_prefix

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    cfg = GenerationConfig(max_new_tokens=10, do_sample=False, pad_token_id=tok.pad_token_id,
                           eos_token_id=tok.eos_token_id)
    order = [0, 1, 0, 2, 1, 2]
    for name, prompts in _prompt_sets(tok).items():
        rows = [prompts[i] for i in order]
        calls = []
        # B023 is a false alarm here: the hook is removed in the finally below, before the loop rebinds `calls`.
        spy = model.register_forward_pre_hook(lambda m, a, k: calls.append(tuple(k["input_ids"].shape)),  # noqa: B023
                                              with_kwargs=True)
        seen, handle = _decode_logits(model, len(rows))
        try:
            ours = generate_shared_prefix(model, rows, cfg, tok.pad_token_id)
        finally:
            spy.remove()
            handle.remove()
        shared = 30 if name == "chat" else min(len(p) for p in prompts) - 1
        assert calls[0] == (1, shared), name  # the common prefix ran once, batch 1
        worst = 0.0
        for i, ids in enumerate(rows):
            alone = torch.tensor([ids])
            plain = model.generate(input_ids=alone, attention_mask=torch.ones_like(alone), generation_config=cfg,
                                   output_logits=True, return_dict_in_generate=True)
            plain_ids = plain.sequences[0, len(ids):]
            assert ours[i, : plain_ids.numel()].tolist() == plain_ids.tolist(), (name, i)
            for step, logits in enumerate(plain.logits):
                worst = max(worst, (seen[step][i] - logits[0]).abs().max().item())
        print(f"generation {name}: max |d logit| {worst:.2e}")
        assert worst < TOL, name


def test_common_prefix_generation_check_catches_wrong_positions(tiny_model_dir):
    from transformers import GenerationConfig

    from srl_rlvr.training.generation import generate_shared_prefix

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    cfg = GenerationConfig(max_new_tokens=3, do_sample=False, pad_token_id=tok.pad_token_id,
                           eos_token_id=tok.eos_token_id)
    rows = [_chat_prompts(tok)[i] for i in (0, 1, 2, 0)]
    seen, handle = _decode_logits(model, len(rows))
    broken = _sabotage(model, "remainder-positions")  # the remainder prefill is the only call with a mask
    try:
        generate_shared_prefix(model, rows, cfg, tok.pad_token_id)
    finally:
        broken.remove()
        handle.remove()
    plain = model.generate(input_ids=torch.tensor([rows[1]]), generation_config=cfg, output_logits=True,
                           return_dict_in_generate=True)
    worst = (seen[0][1] - plain.logits[0][0]).abs().max().item()
    print(f"sabotaged generation: max |d logit| {worst:.2e}")
    assert worst > 10 * TOL


def test_preallocated_decode_cache_samples_the_same_tokens(tiny_model_dir):
    """The decode cache with room for every new token (models/kv_cache.py) changes where keys are written,
    not what is computed: sampling from one seed gives the same tokens as transformers' appending cache,
    and the cache that ran really was the preallocated one."""
    from transformers import GenerationConfig

    from srl_rlvr.models import kv_cache
    from srl_rlvr.training.generation import generate_shared_prefix

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    cfg = GenerationConfig(max_new_tokens=12, min_new_tokens=12, do_sample=True, temperature=1.0, top_k=0,
                           pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    rows = [_chat_prompts(tok)[i] for i in (0, 0, 1, 1, 2, 2)]
    writes = []
    original = kv_cache.PreallocatedLayer.update
    kv_cache.PreallocatedLayer.update = lambda self, k, v, *a, **kw: writes.append(1) or original(self, k, v, *a, **kw)
    try:
        outputs = {}
        for preallocate in (True, False):
            torch.manual_seed(0)
            outputs[preallocate] = generate_shared_prefix(model, rows, cfg, tok.pad_token_id, preallocate=preallocate)
    finally:
        kv_cache.PreallocatedLayer.update = original
    assert writes  # the preallocated side decoded through it
    assert torch.equal(outputs[True], outputs[False])
    torch.manual_seed(1)
    other = generate_shared_prefix(model, rows, cfg, tok.pad_token_id)
    assert not torch.equal(other, outputs[True])  # the comparison can fail: another seed samples otherwise
