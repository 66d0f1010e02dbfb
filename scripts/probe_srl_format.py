"""How often does an untrained model write the SRL format? Samples one completion per SRL prompt.

    python scripts/probe_srl_format.py --n 24                  # system prompt as shipped, no prefill
    python scripts/probe_srl_format.py --n 24 --think-prefill  # generation prompt ends with "<think>"
    python scripts/probe_srl_format.py --n 24 --no-example     # the system prompt without its format example

Prints the strict format-OK rate and the mean strict/lenient SRL reward (temperature 1.0, seeded).
"""

from __future__ import annotations

import argparse

import torch

from srl_rlvr.data.demo import make_demo_task
from srl_rlvr.data.schema import Trajectory
from srl_rlvr.data.srl import build_instances
from srl_rlvr.models import load_model_and_tokenizer
from srl_rlvr.prompts import FORMAT_EXAMPLE, SRL_SYSTEM_PROMPT, render_generation_prompt, with_prefill
from srl_rlvr.rewards import srl_step_reward


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--n", type=int, default=24)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--think-prefill", action="store_true")
    p.add_argument("--no-example", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    train, _ = make_demo_task(n_train=max(8, a.n), n_test=1, seed=a.seed)
    rows = build_instances([Trajectory(**t) for t in train]).instances[: a.n]
    system = SRL_SYSTEM_PROMPT.replace("\n\n" + FORMAT_EXAMPLE, "") if a.no_example else SRL_SYSTEM_PROMPT
    model, tok = load_model_and_tokenizer(a.model)
    tok.padding_side = "left"
    texts = [render_generation_prompt(tok, [{"role": "system", "content": system}, *r["prompt"][1:]], a.think_prefill)
             for r in rows]
    enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    torch.manual_seed(a.seed)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model.generate(**enc, do_sample=True, temperature=1.0, max_new_tokens=a.max_new_tokens,
                             pad_token_id=tok.pad_token_id)
    completions = [with_prefill(c, a.think_prefill)
                   for c in tok.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)]
    strict = [srl_step_reward(c, r["expert_step"]) for c, r in zip(completions, rows)]
    lenient = [srl_step_reward(c, r["expert_step"], mode="lenient") for c, r in zip(completions, rows)]
    n = len(rows)
    print(f"{a.model} prefill={a.think_prefill} example={not a.no_example}: "
          f"format-OK {sum(s >= 0 for s in strict)}/{n}, "
          f"strict {sum(strict) / n:+.3f}, lenient {sum(lenient) / n:+.3f}")


if __name__ == "__main__":
    main()
