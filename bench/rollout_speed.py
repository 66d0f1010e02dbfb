"""GRPO rollout generation: one decoding feature on against off, the rest equal.

    python bench/rollout_speed.py                           # SmolLM2-135M, 8 SRL prompts x 4 rollouts, 48 tokens
    python bench/rollout_speed.py --feature drop-ended --model out/demo/srl/final --max-new-tokens 32
    python bench/rollout_speed.py --model tiny --repeats 2  # seconds; a smoke run of the script

Both sides run :func:`srl_rlvr.training.generation.generate_shared_prefix` (what SRL/RLVR training and eval
generate with) on the same prompts; only the feature differs:

* ``--feature preallocate`` (default): the KV cache preallocated for the whole decode against transformers'
  appending cache. Sampling at temperature 1 from the same seed with ``min_new_tokens`` = ``max_new_tokens``,
  so every row decodes the full length on both sides (equal work).
* ``--feature drop-ended``: ended rows leave the batch (models/decode.py) against ``generate``, which keeps
  them to the end. Greedy, with each row's natural length (the gain *is* the rows that end early, so use a
  trained model: the untrained one rarely ends before the limit); both sides must write the same tokens.

Repeats alternate which side goes first. Prints each repeat's seconds and the ratio off/on, then the median
ratio with min and max; checks both sides wrote the same tokens.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

from srl_rlvr.data.demo import make_demo_task
from srl_rlvr.data.schema import Trajectory
from srl_rlvr.data.srl import build_instances
from srl_rlvr.models import build_tiny_model, resolve_model
from srl_rlvr.prompts import render_generation_prompt
from srl_rlvr.training.generation import generate_shared_prefix


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m", help="a model name/path, or 'tiny'")
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--rollouts", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--feature", choices=("preallocate", "drop-ended"), default="preallocate")
    args = parser.parse_args(argv)

    if args.model == "tiny":
        path = build_tiny_model("/tmp/srl_rlvr_bench_tiny")
    else:
        path = resolve_model(args.model)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    # greedy (drop-ended) gives one completion per prompt: as many rows, all from distinct prompts
    n_prompts = args.prompts if args.feature == "preallocate" else args.prompts * args.rollouts
    train, _ = make_demo_task(n_train=n_prompts, n_test=1, seed=0, min_ops=2, max_ops=3, numbers="small")
    rows = build_instances([Trajectory(**t) for t in train]).instances[:n_prompts]
    ids = [tok(render_generation_prompt(tok, r["prompt"], "empty"), add_special_tokens=False)["input_ids"]
           for r in rows]
    repeat = args.rollouts if args.feature == "preallocate" else 1
    prompt_ids = [p for p in ids for _ in range(repeat)]
    if args.feature == "preallocate":
        config = GenerationConfig(do_sample=True, temperature=1.0, top_k=0, top_p=1.0,
                                  max_new_tokens=args.max_new_tokens, min_new_tokens=args.max_new_tokens,
                                  pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    else:
        config = GenerationConfig(do_sample=False, max_new_tokens=args.max_new_tokens, pad_token_id=tok.pad_token_id,
                                  eos_token_id=tok.eos_token_id)
    key = "preallocate" if args.feature == "preallocate" else "drop_ended"
    autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if args.bf16 else (lambda: None)

    def run(on: bool) -> tuple[float, torch.Tensor]:
        torch.manual_seed(0)
        start = time.perf_counter()
        with torch.inference_mode():
            out = generate_shared_prefix(model, prompt_ids, config, tok.pad_token_id, autocast=autocast(),
                                         **{key: on})
        return time.perf_counter() - start, out

    run(True), run(False)  # warm-up
    ratios = []
    off_name, on_name = ("appending", "preallocated") if key == "preallocate" else ("kept", "dropped")
    print(f"{len(prompt_ids)} rows x {args.max_new_tokens} new tokens, bf16 autocast {args.bf16}, feature {key}")
    print(f"{'repeat':>6} {off_name + ' s':>12} {on_name + ' s':>15} {'ratio':>7}")
    for r in range(args.repeats):
        order = (False, True) if r % 2 == 0 else (True, False)
        results = {side: run(side) for side in order}
        (t_plain, out_plain), (t_pre, out_pre) = results[False], results[True]
        if not torch.equal(out_plain, out_pre):
            print("the two sides wrote different tokens", file=sys.stderr)
            return 1
        ratios.append(t_plain / t_pre)
        print(f"{r:>6} {t_plain:>12.2f} {t_pre:>15.2f} {ratios[-1]:>6.2f}x")
    print(f"median ratio {off_name}/{on_name}: {statistics.median(ratios):.2f}x "
          f"(min {min(ratios):.2f}x, max {max(ratios):.2f}x, {args.repeats} repeats)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
