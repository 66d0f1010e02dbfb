"""Roll out a model on SRL prompts and score them: the untrained baseline the demo reports."""

from __future__ import annotations

from typing import Any

from tqdm import tqdm


def probe_srl_reward(model_path: str, rows: list[dict[str, Any]], seed: int = 0, batch_size: int = 8,
                     max_new_tokens: int = 96) -> dict[str, Any]:
    """Sample one completion (temperature 1.0, as SRL training does) per row and score it."""
    import torch

    from srl_rlvr.models import load_model_and_tokenizer
    from srl_rlvr.rewards import srl_step_reward

    torch.manual_seed(seed)
    model, tok = load_model_and_tokenizer(model_path)
    tok.padding_side = "left"  # decoder-only batches must be left padded to generate
    strict, lenient = [], []
    for i in tqdm(range(0, len(rows), batch_size), desc="base rollouts", unit="batch"):
        batch = rows[i : i + batch_size]
        texts = [tok.apply_chat_template(r["prompt"], tokenize=False, add_generation_prompt=True) for r in batch]
        enc = tok(texts, return_tensors="pt", padding=True)
        with torch.no_grad():
            gen = model.generate(**enc, do_sample=True, temperature=1.0, max_new_tokens=max_new_tokens,
                                 pad_token_id=tok.pad_token_id)
        completions = tok.batch_decode(gen[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
        for row, c in zip(batch, completions):
            strict.append(srl_step_reward(c, row["expert_step"], mode="strict"))
            lenient.append(srl_step_reward(c, row["expert_step"], mode="lenient"))
    n = len(strict)
    return {
        "n": n,
        "format_ok_rate": sum(r >= 0 for r in strict) / n,
        "strict_mean": sum(strict) / n,
        "lenient_mean": sum(lenient) / n,
    }
