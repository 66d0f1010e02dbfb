"""Probe one-step prompts: sample 8 next steps for each step of 20 demo dev problems and count matches.

VARIANT is base (srl_step_messages), fewshot (system prompt plus 3 demo turns) or anything else (system prompt).
Usage: python scripts/experiments/step_demos/probe2.py MODEL_PATH STYLE VARIANT
"""

import re
import sys
import time

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from srl_rlvr.data.demo import make_demo_splits
from srl_rlvr.prompts import EMPTY_THINK_PREFILL, render_step_prompt, srl_step_messages

torch.manual_seed(0)
path = sys.argv[1]
style = sys.argv[2]
variant = sys.argv[3]
tok = AutoTokenizer.from_pretrained(path)
tok.padding_side = "left"
m = AutoModelForCausalLM.from_pretrained(path, torch_dtype=torch.bfloat16).eval()
s = make_demo_splits(
    n_train=1, n_dev=20, n_test=1, n_transfer=1, seed=0, min_ops=1, max_ops=3, numbers="small", style=style
)
rows = s["dev"]
SYS = (
    "You solve problems one step at a time. You are shown a problem and the steps taken so far. "
    "Write only the next step: one calculation with its result. "
    "When the result answers the question, end the step with: The answer is <number>."
)
DEMO = [
    (
        "A shelf has 4 jars. First 3 more jars are put on it, and then 2 jars break. "
        "How many jars are on the shelf at the end?",
        [],
        1,
        "4 + 3 = 7 jars.",
    ),
    (
        "A shelf has 4 jars. First 3 more jars are put on it, and then 2 jars break. "
        "How many jars are on the shelf at the end?",
        ["4 + 3 = 7 jars."],
        2,
        "7 - 2 = 5 jars. The answer is 5.",
    ),
    (
        "A farm has 6 pens with 4 goats in each. How many goats are on the farm?",
        [],
        1,
        "6 * 4 = 24 goats. The answer is 24.",
    ),
]


def msgs(problem, prev, k):
    if variant == "base":
        return srl_step_messages(problem, prev, k)
    out = [{"role": "system", "content": SYS}]
    if variant == "fewshot":
        for p, pv, kk, a in DEMO:
            out += [
                {"role": "user", "content": render_step_prompt(p, pv, kk)},
                {"role": "assistant", "content": EMPTY_THINK_PREFILL + a},
            ]
    out.append({"role": "user", "content": render_step_prompt(problem, prev, k)})
    return out


eq = re.compile(r"(\d+)\s*([-+*/x×])\s*(\d+)\s*=\s*(\d+)")
stats = dict(n=0, eq_exact=0, op_ok=0, val_ok=0, anyeq=0, ans=0, ans_ok=0, last=0)
t = time.time()
greedy_ok = 0
ng = 0
for r in rows:
    for k, step in enumerate(r["steps"], 1):
        p = (
            tok.apply_chat_template(
                msgs(r["problem"], r["steps"][: k - 1], k), tokenize=False, add_generation_prompt=True
            )
            + EMPTY_THINK_PREFILL
        )
        ids = tok([p], return_tensors="pt")
        with torch.no_grad():
            out = m.generate(
                **ids,
                do_sample=True,
                temperature=1.0,
                max_new_tokens=20,
                num_return_sequences=8,
                pad_token_id=tok.eos_token_id,
            )
        gold = eq.search(step)
        last = k == len(r["steps"])
        for o in out:
            txt = tok.decode(o[ids["input_ids"].shape[1] :], skip_special_tokens=True)
            g = eq.search(txt)
            stats["n"] += 1
            if g:
                stats["anyeq"] += 1
            if g and gold:
                stats["eq_exact"] += g.groups() == gold.groups()
                stats["op_ok"] += (g.group(1), g.group(2), g.group(3)) == gold.groups()[:3]
                stats["val_ok"] += g.group(4) == gold.group(4)
            a = re.search(r"answer is (\d+)", txt)
            if a:
                stats["ans"] += 1
                stats["ans_ok"] += last and a.group(1) == r["answer"]
            stats["last"] += last
        if r is rows[1]:
            print(
                repr(step),
                "|",
                [tok.decode(o[ids["input_ids"].shape[1] :], skip_special_tokens=True) for o in out[:4]],
            )
print(variant, style, stats, f"{time.time() - t:.0f}s")
