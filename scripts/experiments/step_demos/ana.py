"""Tally stepwise-eval predictions on the first 60 dev problems by number of operations.

Prints problem and correct counts per num_ops, (num_ops, predicted step count) pairs, and eight examples.
Usage: python scripts/experiments/step_demos/ana.py DEV.jsonl PRED.jsonl
"""

import json
import sys
from collections import Counter

dev = [json.loads(line) for line in open(sys.argv[1])][:60]
P = [json.loads(line) for line in open(sys.argv[2])]
n = Counter()
ok = Counter()
ns = Counter()
for d, p in zip(dev, P):
    n[d["num_ops"]] += 1
    ok[d["num_ops"]] += p["correct"]
    ns[(d["num_ops"], len(p["steps"]))] += 1
print(dict(n), dict(ok), sorted(ns.items()))
for d, p in list(zip(dev, P))[:8]:
    print("  ", d["num_ops"], d["answer"], d["steps"], p["steps"])
