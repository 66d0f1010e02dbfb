"""Statistics for an honest evaluation report: intervals, paired tests, and the spread across seeds.

Inputs are per-problem greedy correctness lists (``bool`` or 0/1), aligned by problem id order, and, for
:func:`paired_difference`, per-problem scores that may be fractions (the mean correctness of one problem
over several training seeds). Every function is pure; numpy and scipy are imported on first use, so
importing this module costs nothing.

What each piece assumes, and when to use it:

* :func:`proportion_ci` / :func:`accuracy_summary` / :func:`by_group`: the exact Clopper-Pearson interval
  for one accuracy. It treats the problems as independent draws from a population of problems
  (exchangeable), so the interval is about "accuracy on problems like these", not about this model's
  training seed. It is conservative (coverage >= the level), and stays valid at 0/n and n/n and for the
  small groups :func:`by_group` makes (e.g. accuracy per number of operations).
* :func:`mcnemar_exact`: two models on the *same* problems, one run each (0/1 correctness). Only the
  discordant problems (one right, the other wrong) carry information; under "no difference" each is
  equally likely to go either way, so the test is an exact binomial test on the discordant counts. Use it
  instead of comparing two Clopper-Pearson intervals: pairing removes the problem-difficulty variance.
* :func:`paired_difference`: the general paired comparison, for per-problem scores in [0, 1] (or any
  reals). The mean difference gets a percentile bootstrap CI that resamples *problems* (not seeds), and a
  sign-flip permutation test: under "no difference" each problem's difference is symmetric about 0, so
  its sign is a fair coin. Exact (all 2^m sign patterns) for m <= 20 nonzero differences, else Monte Carlo
  with the (count + 1) / (n + 1) correction, which keeps the p-value valid. For 0/1 scores from one run it
  is McNemar's exact test: the same p-values.
* :func:`across_seeds`: the spread of a metric over training seeds. With few seeds (2-5) no test over
  seeds has power, so the report shows the values, their mean and sample std beside the per-problem tests
  and says how many seeds there were. The per-problem tests on seed-averaged scores answer "is the
  difference on these problems real, given the training runs we have"; they do not account for the
  variation a new training seed would bring: that is what this spread shows.
* :func:`compare_models`: the above for a set of model pairs, on per-problem correctness averaged over
  seeds, plus the per-seed accuracy differences.

Rounding: accuracies, differences, intervals and seed statistics are rounded to 4 decimals in the returned
dicts; p-values to 4 significant digits (so a tiny p-value never reads 0.0). Empty inputs and mismatched
lengths raise ``ValueError``.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from numbers import Integral
from typing import Any

__all__ = [
    "accuracy_summary",
    "across_seeds",
    "by_group",
    "compare_models",
    "mcnemar_exact",
    "paired_difference",
    "proportion_ci",
]

EXACT_MAX_NONZERO = 20  # up to 2**20 sign patterns are enumerated; beyond that, Monte Carlo
_CHUNK_CELLS = 1 << 21  # bound on the cells of one resampling block (memory stays ~16 MiB)


def _r(x: float) -> float:
    """Round to 4 decimals (and turn -0.0 into 0.0)."""
    return round(float(x), 4) + 0.0


def _rp(p: float) -> float:
    """A p-value to 4 significant digits, clipped to [0, 1]."""
    return min(1.0, float(f"{float(p):.4g}"))


def _check_level(level: float) -> None:
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")


def _as_bools(values: Sequence[Any], name: str) -> list[bool]:
    out = []
    for i, v in enumerate(values):
        if v not in (0, 1):  # True/False, 0/1, numpy bools; rejects 0.5 and None
            raise ValueError(f"{name}[{i}] = {v!r} is not a boolean (or 0/1)")
        out.append(bool(v))
    return out


def _same_length(a: Sequence[Any], b: Sequence[Any], what: str) -> None:
    if len(a) != len(b):
        raise ValueError(f"{what}: lengths differ ({len(a)} vs {len(b)}); they must be aligned by problem")
    if len(a) == 0:
        raise ValueError(f"{what}: no problems to compare (n == 0)")


def proportion_ci(correct: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact Clopper-Pearson interval for ``correct`` successes out of ``n`` (unrounded).

    >>> tuple(round(x, 4) for x in proportion_ci(5, 10))
    (0.1871, 0.8129)
    >>> tuple(round(x, 4) for x in proportion_ci(0, 10))
    (0.0, 0.3085)
    """
    if n <= 0:
        raise ValueError(f"proportion_ci needs n >= 1 trials, got n={n}")
    if not 0 <= correct <= n:
        raise ValueError(f"need 0 <= correct <= n, got correct={correct} n={n}")
    _check_level(level)
    from scipy.stats import binomtest

    ci = binomtest(int(correct), int(n)).proportion_ci(confidence_level=level, method="exact")
    return float(ci.low), float(ci.high)


def accuracy_summary(correct: Sequence[bool], level: float = 0.95) -> dict[str, Any]:
    """Accuracy of a correctness list with its exact interval.

    Returns ``{"n", "correct", "accuracy", "ci": [lo, hi], "ci_level"}``.

    >>> accuracy_summary([True] * 5 + [False] * 5)
    {'n': 10, 'correct': 5, 'accuracy': 0.5, 'ci': [0.1871, 0.8129], 'ci_level': 0.95}
    """
    flags = _as_bools(correct, "correct")
    if not flags:
        raise ValueError("accuracy_summary needs at least one problem (n == 0)")
    k, n = sum(flags), len(flags)
    lo, hi = proportion_ci(k, n, level)
    return {"n": n, "correct": k, "accuracy": _r(k / n), "ci": [_r(lo), _r(hi)], "ci_level": level}


def by_group(correct: Sequence[bool], groups: Sequence[Hashable], level: float = 0.95) -> dict[str, dict[str, Any]]:
    """:func:`accuracy_summary` per group label, keyed by ``str(label)``.

    Keys are in numeric order when every label is an integer (e.g. the number of operations), else in
    string order.

    >>> list(by_group([True, False, True, True], [10, 2, 2, 1]))
    ['1', '2', '10']
    """
    if len(correct) != len(groups):
        raise ValueError(f"by_group: {len(correct)} correctness values but {len(groups)} group labels")
    flags = _as_bools(correct, "correct")
    members: dict[Hashable, list[bool]] = {}
    for flag, group in zip(flags, groups):
        members.setdefault(group, []).append(flag)
    if all(isinstance(g, Integral) for g in members):
        order = sorted(members, key=int)  # type: ignore[arg-type]
    else:
        order = sorted(members, key=str)
    out: dict[str, dict[str, Any]] = {}
    for g in order:
        key = str(g)
        if key in out:
            raise ValueError(f"by_group: two distinct labels print as {key!r}")
        out[key] = accuracy_summary(members[g], level)
    return out


def mcnemar_exact(a: Sequence[bool], b: Sequence[bool]) -> dict[str, Any]:
    """Exact (binomial) McNemar test for two models' correctness on the same problems.

    Returns ``{"n", "a_only", "b_only", "both", "neither", "p_two_sided", "p_one_sided_a_better"}``;
    ``a_only`` counts problems a got right and b wrong. Both p-values are 1.0 without discordant pairs.

    >>> mcnemar_exact([True] * 10 + [False] * 2, [False] * 10 + [True] * 2)["p_two_sided"]
    0.03857
    """
    _same_length(a, b, "mcnemar_exact")
    fa, fb = _as_bools(a, "a"), _as_bools(b, "b")
    a_only = sum(x and not y for x, y in zip(fa, fb))
    b_only = sum(y and not x for x, y in zip(fa, fb))
    both = sum(x and y for x, y in zip(fa, fb))
    discordant = a_only + b_only
    if discordant == 0:
        p_two, p_one = 1.0, 1.0
    else:
        from scipy.stats import binomtest

        p_two = binomtest(a_only, discordant, 0.5, alternative="two-sided").pvalue
        p_one = binomtest(a_only, discordant, 0.5, alternative="greater").pvalue
    return {
        "n": len(fa),
        "a_only": a_only,
        "b_only": b_only,
        "both": both,
        "neither": len(fa) - discordant - both,
        "p_two_sided": _rp(p_two),
        "p_one_sided_a_better": _rp(p_one),
    }


def _sign_flip_p(d: Any, rng: Any, n_perm: int) -> tuple[float, float, str]:
    """(two-sided, one-sided a > b) p-values of the sign-flip test on differences ``d`` (numpy array)."""
    import numpy as np

    nz = d[d != 0]
    m = nz.size
    if m == 0:
        return 1.0, 1.0, "sign_flip_exact"
    t_obs = float(nz.sum())
    eps = 1e-9 * (1.0 + float(np.abs(nz).sum()))  # ties under float summation order count as ties
    if m <= EXACT_MAX_NONZERO:
        sums = np.zeros(1)
        for x in nz:  # every signed sum: 2**m of them, built by doubling
            sums = np.concatenate((sums + x, sums - x))
        p_one = float(np.mean(sums >= t_obs - eps))
        p_two = float(np.mean(np.abs(sums) >= abs(t_obs) - eps))
        return p_two, p_one, "sign_flip_exact"
    ge_one = ge_two = 0
    rows = max(1, _CHUNK_CELLS // m)
    done = 0
    while done < n_perm:
        c = min(rows, n_perm - done)
        signs = rng.integers(0, 2, size=(c, m), dtype=np.int8) * 2 - 1
        sums = signs @ nz
        ge_one += int(np.count_nonzero(sums >= t_obs - eps))
        ge_two += int(np.count_nonzero(np.abs(sums) >= abs(t_obs) - eps))
        done += c
    return (ge_two + 1) / (n_perm + 1), (ge_one + 1) / (n_perm + 1), "sign_flip_monte_carlo"


def paired_difference(
    a: Sequence[float],
    b: Sequence[float],
    level: float = 0.95,
    n_boot: int = 10000,
    seed: int = 0,
    n_perm: int = 20000,
) -> dict[str, Any]:
    """Mean per-problem difference ``a - b`` with a bootstrap CI and a sign-flip permutation test.

    The CI is the percentile bootstrap over problems (``n_boot`` resamples); the p-values come from
    flipping the signs of the nonzero differences: exact when there are at most 20 of them, else
    ``n_perm`` Monte Carlo draws. ``p_one_sided`` is for the alternative "a is better" (mean a - b > 0).
    Deterministic for a given ``seed``.

    Returns ``{"n", "mean_diff", "ci": [lo, hi], "ci_level", "p_two_sided", "p_one_sided", "method"}``
    with ``method`` ``"sign_flip_exact"`` or ``"sign_flip_monte_carlo"``.

    >>> r = paired_difference([1, 1, 1, 0, 1], [0, 0, 1, 0, 0])
    >>> r["mean_diff"], r["p_one_sided"], r["method"]
    (0.6, 0.125, 'sign_flip_exact')
    """
    import numpy as np

    _same_length(a, b, "paired_difference")
    _check_level(level)
    if n_boot < 1 or n_perm < 1:
        raise ValueError(f"n_boot and n_perm must be >= 1, got {n_boot} and {n_perm}")
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    if not np.all(np.isfinite(d)):
        raise ValueError("paired_difference: scores must be finite numbers")
    n = d.size
    boot_seq, perm_seq = np.random.SeedSequence(seed).spawn(2)

    boot_rng = np.random.default_rng(boot_seq)
    means = np.empty(n_boot)
    rows = max(1, _CHUNK_CELLS // n)
    for start in range(0, n_boot, rows):
        c = min(rows, n_boot - start)
        means[start:start + c] = d[boot_rng.integers(0, n, size=(c, n))].mean(axis=1)
    alpha = 1.0 - level
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])

    p_two, p_one, method = _sign_flip_p(d, np.random.default_rng(perm_seq), n_perm)
    return {
        "n": int(n),
        "mean_diff": _r(d.mean()),
        "ci": [_r(lo), _r(hi)],
        "ci_level": level,
        "p_two_sided": _rp(p_two),
        "p_one_sided": _rp(p_one),
        "method": method,
    }


def across_seeds(values: Sequence[float]) -> dict[str, Any]:
    """A metric over training seeds: ``{"n", "mean", "std", "min", "max", "values"}``.

    ``std`` is the sample standard deviation (ddof=1), 0.0 for a single seed.

    >>> across_seeds([0.5, 0.6, 0.7])
    {'n': 3, 'mean': 0.6, 'std': 0.1, 'min': 0.5, 'max': 0.7, 'values': [0.5, 0.6, 0.7]}
    """
    vals = [float(v) for v in values]
    if not vals:
        raise ValueError("across_seeds needs at least one value (n == 0)")
    if not all(math.isfinite(v) for v in vals):
        raise ValueError("across_seeds: values must be finite numbers")
    n = len(vals)
    mean = math.fsum(vals) / n
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in vals) / (n - 1)) if n > 1 else 0.0
    return {"n": n, "mean": _r(mean), "std": _r(std), "min": _r(min(vals)), "max": _r(max(vals)),
            "values": [_r(v) for v in vals]}


def compare_models(
    per_model: dict[str, list[list[bool]]],
    pairs: Sequence[tuple[str, str]],
    level: float = 0.95,
    n_boot: int = 10000,
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """Paired comparisons of models evaluated on the same problems, over training seeds.

    ``per_model[label]`` is a list over training seeds of per-problem correctness lists, all aligned by
    problem. A model with a single list (the base model, evaluated once) counts for every seed; models
    with several lists must have the same number, matched by position (seed i against seed i).

    For each ``(a, b)`` the key ``f"{a}_vs_{b}"`` holds :func:`paired_difference` on the per-problem mean
    correctness over seeds (``"n", "mean_diff", "ci", "ci_level", "p_two_sided", "p_one_sided",
    "method"``), ``"n_seeds"``: ``[seeds of a, seeds of b]``, ``"per_seed"``: the accuracy difference a - b
    for each seed, ``"across_seeds"``: :func:`across_seeds` of those, and, when both sides have exactly
    one list, ``"mcnemar"``: :func:`mcnemar_exact`.

    >>> r = compare_models({"sft": [[1, 1, 0, 1]], "base": [[0, 1, 0, 0]]}, [("sft", "base")])
    >>> r["sft_vs_base"]["per_seed"], r["sft_vs_base"]["mcnemar"]["a_only"]
    ([0.5], 2)
    """
    runs: dict[str, list[list[bool]]] = {}
    n_problems: int | None = None
    for label, seeds in per_model.items():
        if not seeds:
            raise ValueError(f"compare_models: model {label!r} has no correctness lists")
        runs[label] = [_as_bools(run, f"{label}[{i}]") for i, run in enumerate(seeds)]
        for i, run in enumerate(runs[label]):
            if n_problems is None:
                n_problems = len(run)
            if len(run) != n_problems:
                raise ValueError(f"compare_models: {label}[{i}] has {len(run)} problems, expected {n_problems}"
                                 " (all lists must be aligned by problem)")
    if n_problems == 0:
        raise ValueError("compare_models: no problems to compare (n == 0)")

    out: dict[str, dict[str, Any]] = {}
    for a, b in pairs:
        for label in (a, b):
            if label not in runs:
                raise ValueError(f"compare_models: unknown model {label!r}; have {sorted(runs)}")
        ra, rb = runs[a], runs[b]
        if len(ra) > 1 and len(rb) > 1 and len(ra) != len(rb):
            raise ValueError(f"compare_models: {a!r} has {len(ra)} seeds and {b!r} has {len(rb)};"
                             " seeds are matched by position, so the counts must agree (or one side be 1)")
        mean_a = [sum(col) / len(ra) for col in zip(*ra)]
        mean_b = [sum(col) / len(rb) for col in zip(*rb)]
        result = paired_difference(mean_a, mean_b, level=level, n_boot=n_boot, seed=seed)
        n_seeds = max(len(ra), len(rb))
        per_seed = [
            _r((sum(ra[i if len(ra) > 1 else 0]) - sum(rb[i if len(rb) > 1 else 0])) / n_problems)  # type: ignore[operator]
            for i in range(n_seeds)
        ]
        result["n_seeds"] = [len(ra), len(rb)]
        result["per_seed"] = per_seed
        result["across_seeds"] = across_seeds(per_seed)
        if len(ra) == 1 and len(rb) == 1:
            result["mcnemar"] = mcnemar_exact(ra[0], rb[0])
        out[f"{a}_vs_{b}"] = result
    return out
