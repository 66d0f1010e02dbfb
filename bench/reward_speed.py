"""Time srl_step_reward against plain difflib on the same random pairs, short and long; then the code
sandbox per run, with bubblewrap as its outer layer and without.

Run: ``PYTHONPATH=src python bench/reward_speed.py``. Prints time per call for both, the speedup as a
ratio measured in this one run (no absolute thresholds: machines differ), and checks that every value
is bitwise identical to difflib's. The code part (``--code-runs 0`` skips it) times one sandboxed run of four
tests (two children, start-up to verdict) with and without bwrap, interleaved, best of ``--repeats`` rounds
of ``--code-runs`` runs, and the cost of one call relayed between the children.
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


CODE = "def add(a, b):\n    return a + b\n"
CODE_TESTS = [
    "assert add(1, 2) == 3",
    "assert add(2, 2) > 3",
    "assert abs(add(0.1, 0.2) - 0.3) < 1e-9",
    "def check(candidate):\n    assert candidate(-1, 1) == 0\n\ncheck(add)\n",
]
CALLS = 2000


def code_sandbox(runs: int, repeats: int) -> None:
    from srl_rlvr.rewards.sandbox import run_python_tests
    from srl_rlvr.rewards.sandbox_launch import bwrap_probe

    bwrap, why = bwrap_probe()
    modes = {"plain": False} | ({"bwrap": True} if bwrap else {})
    print(f"\ncode sandbox: one run = 2 children, {len(CODE_TESTS)} tests; bwrap: {bwrap or why}")
    best = dict.fromkeys(modes, float("inf"))
    layers = {}
    for _ in range(repeats):  # interleaved, so both modes see the same machine load
        for name, use in modes.items():
            started = time.perf_counter()
            for _ in range(runs):
                result = run_python_tests(CODE, CODE_TESTS, _bwrap=use)
                if result.pass_fraction != 1.0:
                    raise SystemExit(f"{name}: an honest candidate scored {result.pass_fraction}")
            best[name] = min(best[name], (time.perf_counter() - started) / runs)
            layers[name] = ",".join(sorted(result.layers))
    for name in modes:
        print(f"{name:<8}{best[name] * 1e3:>8.1f} ms/run   layers: {layers[name]}")
    if "bwrap" in best:
        print(f"bwrap/plain time per run: {best['bwrap'] / best['plain']:.2f}x")
    timings = {}
    for calls in (0, CALLS):  # the same run with and without the calls: the difference is the relay
        test = [f"for i in range({calls}):\n    assert add(i, 1) == i + 1"]
        timings[calls] = min(_timed(run_python_tests, CODE, test, timeout_s=30) for _ in range(repeats))
    print(f"one relayed call: {(timings[CALLS] - timings[0]) / CALLS * 1e6:.0f} us ({CALLS} calls in one test)")


def _timed(func: Callable[..., object], *args, **kwargs) -> float:
    started = time.perf_counter()
    func(*args, **kwargs)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--code-runs", type=int, default=10, help="sandbox runs per round and mode (0: skip)")
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
    if args.code_runs:
        code_sandbox(args.code_runs, args.repeats)


if __name__ == "__main__":
    main()
