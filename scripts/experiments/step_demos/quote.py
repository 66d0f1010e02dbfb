"""Prefix each step of a trajectory file with the problem clause it computes ("clause: step").

Rows whose clause count differs from their step count are dropped; prints IN, kept rows, "/", all rows.
Usage: python scripts/experiments/step_demos/quote.py IN.jsonl OUT.jsonl
"""

import json
import re
import sys


def clauses(problem):
    sents = [s.strip() for s in re.split(r"(?<=[.?])\s+", problem) if s.strip()]
    intro, body = sents[0], [s for s in sents[1:] if not s.endswith("?")]
    out = []
    m = re.search(r"has (\d+) (\w+) with (\d+) (\w+) in each", intro)
    if m:
        out.append(m.group(0))
    for s in body:
        s = re.sub(r"^First,? ", "", s.rstrip("."))
        out += [p.strip() for p in re.split(r",? and then |, then |,? and finally ", s) if p.strip()]
    return out


n_ok = n = 0
with open(sys.argv[2], "w") as f:
    for line in open(sys.argv[1]):
        r = json.loads(line)
        n += 1
        cl = clauses(r["problem"])
        if len(cl) != len(r["steps"]):
            continue
        r["steps"] = [f"{c}: {s}" for c, s in zip(cl, r["steps"])]
        n_ok += 1
        f.write(json.dumps(r) + "\n")
print(sys.argv[1], n_ok, "/", n)
