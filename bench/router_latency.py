"""Time one routing decision (features + quality predictor + policy) per prompt: p50 and p99 in ms.

Run: ``python bench/router_latency.py [--prompts 2000] [--hash-dim 0] [--predictor out/route_eval/predictor.json]``

Goal: p99 <= 1 ms for ``Router.route`` on one prompt. Printed side by side, measured in this same run
(no absolute thresholds in tests: machines differ):

* ``router.route``: our full decision (features, folded-scaler logistic model per tier, policy, budget
  and cooldown checks), on the tiers of configs/route-cpu.yaml;
* ``sklearn predict_proba``: the plain way to score one prompt, a scikit-learn StandardScaler +
  LogisticRegression pipeline's ``predict_proba`` on the same features, for one tier only and no policy;
* ``random router``: RouteLLM's random baseline decision (one ``random.random()`` comparison).

Without ``--predictor`` the predictor is fitted here on demo problems with a synthetic outcome (the
small tiers solve 2-operation problems more often than 4-operation ones); its weights do not change
the timing, only the features and the number of tiers do.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def percentiles_ms(func: Callable[[str], object], prompts: list[str], repeats: int) -> tuple[float, float]:
    """p50 and p99 over every single call (each timed on its own), after one warm-up pass."""
    for prompt in prompts[:50]:
        func(prompt)
    samples = []
    for _ in range(repeats):
        for prompt in prompts:
            started = time.perf_counter_ns()
            func(prompt)
            samples.append(time.perf_counter_ns() - started)
    samples.sort()
    return samples[len(samples) // 2] / 1e6, samples[min(len(samples) - 1, int(len(samples) * 0.99))] / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--hash-dim", type=int, default=0, help="hashed word n-gram features (0: off, as shipped)")
    parser.add_argument("--predictor", default=None, help="a predictor.json written by `srl-rlvr route eval`")
    parser.add_argument("--config", default=str(ROOT / "configs" / "route-cpu.yaml"))
    args = parser.parse_args()

    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from srl_rlvr.data.demo import make_demo_task
    from srl_rlvr.routing.config import load_route_config
    from srl_rlvr.routing.features import prompt_features
    from srl_rlvr.routing.predictor import QualityPredictor

    train, test = make_demo_task(n_train=args.prompts, n_test=args.prompts, seed=11)
    rng = random.Random(0)
    rate = {2: 0.6, 3: 0.3, 4: 0.1}
    train_prompts = [r["problem"] for r in train]
    outcome = [float(rng.random() < rate[r["num_ops"]]) for r in train]
    config = load_route_config(args.config)
    tiers = [spec.with_measured_throughput(50.0) if spec.pending_cost else spec.tier for spec in config.tiers]
    if args.predictor:
        predictor = QualityPredictor.load(args.predictor)
    else:
        outcomes = {t.name: (outcome if not t.simulated else [1.0] * len(outcome)) for t in tiers}
        predictor = QualityPredictor.fit(train_prompts, outcomes, hash_dim=args.hash_dim)
    router = config.build_router(predictor, tiers).calibrated(train_prompts[:500], 0.5)
    prompts = [r["problem"] for r in test]

    X = np.array([prompt_features(p) for p in train_prompts])
    plain = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X, outcome)

    def sklearn_predict_proba(prompt: str) -> float:
        return plain.predict_proba([prompt_features(prompt)])[0, 1]

    strong, weak = router.strong_tier(), tiers[0]

    def random_router(prompt: str) -> object:
        return strong if random.random() < 0.5 else weak

    print(f"{len(prompts)} prompts x {args.repeats}, {len(tiers)} tiers, hash_dim={predictor.hash_dim}, "
          f"model {router.model}")
    rows = [("router.route", router.route), ("sklearn predict_proba", sklearn_predict_proba),
            ("random router", random_router)]
    results = {name: percentiles_ms(func, prompts, args.repeats) for name, func in rows}
    ours_p50, ours_p99 = results["router.route"]
    print(f"{'decision':<24}{'p50 ms':>10}{'p99 ms':>10}{'p50 / ours':>12}{'p99 / ours':>12}")
    for name, (p50, p99) in results.items():
        print(f"{name:<24}{p50:>10.4f}{p99:>10.4f}{p50 / ours_p50:>11.3f}x{p99 / ours_p99:>11.3f}x")
    shares = statistics.mean(router.route(p).tier is strong for p in prompts)
    print(f"goal p99 <= 1 ms: {'met' if ours_p99 <= 1.0 else 'NOT met'} ({ours_p99:.4f} ms); "
          f"strong share on these prompts {shares:.2f}")


if __name__ == "__main__":
    main()
