"""Time srl_step_reward against plain difflib on the same random pairs, short and long.

Run: ``PYTHONPATH=src python bench/reward_speed.py``. Prints time per call for both, the speedup as a
ratio measured in this one run (no absolute thresholds: machines differ), and checks that every value
is bitwise identical to difflib's.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable
from difflib import SequenceMatcher

from srl_rlvr.rewards import srl_step_reward
from srl_rlvr.rewards.similarity import uses_cdifflib

WORDS = "we add the two numbers so x = 2 + 3 = 5 then divide by 4 to get 1.25 step".split()


def step_text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words))


def make_pairs(rng: random.Random, count: int, words: int) -> list[tuple[str, str]]:
    return [(step_text(rng, words), step_text(rng, words)) for _ in range(count)]


def per_call_seconds(func: Callable[[str, str], float], pairs: list[tuple[str, str]], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):  # best of N: the least disturbed run
        started = time.perf_counter()
        for a, b in pairs:
            func(a, b)
        best = min(best, time.perf_counter() - started)
    return best / len(pairs)


def ours(action: str, expert: str) -> float:
    return srl_step_reward("<think>plan</think>" + action, expert)


def plain_difflib(action: str, expert: str) -> float:
    return SequenceMatcher(None, action.strip(), expert.strip()).ratio()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = random.Random(args.seed)
    print(f"cdifflib fast path: {'on' if uses_cdifflib() else 'off (plain difflib)'}")
    print(f"{'case':<22}{'chars':>7}{'ours':>12}{'difflib':>12}")
    for name, words in [("short (1-line step)", 8), ("medium", 40), ("long (> 200 chars)", 150), ("very long", 600)]:
        pairs = make_pairs(rng, args.pairs, words)
        mismatches = sum(ours(a, b) != plain_difflib(a, b) for a, b in pairs)
        if mismatches:
            raise SystemExit(f"{name}: {mismatches} values differ from difflib")
        ours_s = per_call_seconds(ours, pairs, args.repeats)
        difflib_s = per_call_seconds(plain_difflib, pairs, args.repeats)
        chars = sum(len(a) for a, _ in pairs) // len(pairs)
        print(
            f"{name:<22}{chars:>7}{ours_s * 1e6:>10.1f}us{difflib_s * 1e6:>10.1f}us"
            f"   ours/difflib speedup: {difflib_s / ours_s:.1f}x"
        )
    print("all values bitwise identical to difflib")


if __name__ == "__main__":
    main()
