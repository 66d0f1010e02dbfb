"""Greedy stepwise eval of MODEL on the first LIMIT trajectories of DATA; prints its scalar metrics.

Writes one prediction per line to OUT.jsonl. Env: EVAL_MAX_STEPS (default 4), EVAL_MAX_NEW (default 20).
Usage: python scripts/experiments/step_demos/evalx.py MODEL DATA LIMIT OUT.jsonl
"""

import json
import os
import sys

from srl_rlvr.data.loaders.registry import load_source
from srl_rlvr.eval.harness import EvalConfig, evaluate

model, data, limit = sys.argv[1], sys.argv[2], int(sys.argv[3])
trajs = load_source(data).rows[:limit]
cfg = EvalConfig(
    mode="stepwise",
    max_steps=int(os.environ.get("EVAL_MAX_STEPS", 4)),
    max_new_tokens=int(os.environ.get("EVAL_MAX_NEW", 20)),
    think_prefill="empty",
    batch_size=32,
)
res = evaluate(model, trajs, cfg)
print(model, {k: v for k, v in res.metrics.items() if not isinstance(v, dict)} if hasattr(res, "metrics") else res)
out = sys.argv[4]
with open(out, "w") as f:
    for p in res.predictions:
        f.write(json.dumps(p if isinstance(p, dict) else p.__dict__) + "\n")
