"""Report statistics: exact intervals, McNemar, the sign-flip test and bootstrap, seeds, model comparison.

Expected numbers are worked out by hand (binomial sums over 2**m sign patterns) in the comments.
"""

from __future__ import annotations

import itertools
import math
import subprocess
import sys

import numpy as np
import pytest

from srl_rlvr.eval.stats import (
    accuracy_summary,
    across_seeds,
    by_group,
    compare_models,
    mcnemar_exact,
    paired_difference,
    proportion_ci,
)


def _pairs(a_only: int, b_only: int, both: int, neither: int) -> tuple[list[bool], list[bool]]:
    a = [True] * a_only + [False] * b_only + [True] * both + [False] * neither
    b = [False] * a_only + [True] * b_only + [True] * both + [False] * neither
    return a, b


# --- Clopper-Pearson -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("k", "n", "level", "expected"),
    [
        (0, 10, 0.95, (0.0, 0.3085)),  # upper = 1 - 0.025**(1/10)
        (5, 10, 0.95, (0.1871, 0.8129)),
        (10, 10, 0.95, (0.6915, 1.0)),
        (0, 10, 0.90, (0.0, 0.2589)),  # 1 - 0.05**(1/10)
        (1, 1, 0.95, (0.025, 1.0)),
    ],
)
def test_proportion_ci_known_values(k: int, n: int, level: float, expected: tuple[float, float]) -> None:
    lo, hi = proportion_ci(k, n, level)
    assert lo == pytest.approx(expected[0], abs=5e-5)
    assert hi == pytest.approx(expected[1], abs=5e-5)


def test_proportion_ci_closed_form_at_zero() -> None:
    assert proportion_ci(0, 37)[1] == pytest.approx(1 - 0.025 ** (1 / 37), rel=1e-9)


@pytest.mark.parametrize(("k", "n", "level"), [(0, 0, 0.95), (3, 2, 0.95), (-1, 5, 0.95), (1, 5, 1.0), (1, 5, 0.0)])
def test_proportion_ci_rejects_bad_input(k: int, n: int, level: float) -> None:
    with pytest.raises(ValueError):
        proportion_ci(k, n, level)


def test_proportion_ci_n_zero_message() -> None:
    with pytest.raises(ValueError, match="n >= 1"):
        proportion_ci(0, 0)


def test_accuracy_summary_shape_and_values() -> None:
    assert accuracy_summary([True, False, True, True, False, False, True, False, True, False]) == {
        "n": 10, "correct": 5, "accuracy": 0.5, "ci": [0.1871, 0.8129], "ci_level": 0.95,
    }
    s = accuracy_summary([1, 0, 0], level=0.9)
    assert (s["n"], s["correct"], s["accuracy"], s["ci_level"]) == (3, 1, 0.3333, 0.9)
    assert s["ci"] == [round(x, 4) for x in proportion_ci(1, 3, 0.9)]


def test_accuracy_summary_rejects_empty_and_non_booleans() -> None:
    with pytest.raises(ValueError, match="n == 0"):
        accuracy_summary([])
    with pytest.raises(ValueError, match="not a boolean"):
        accuracy_summary([True, 0.5])


def test_by_group_orders_integer_labels_numerically() -> None:
    correct = [True, False, True, True, False, True]
    groups = [10, 2, 2, 1, 10, 10]
    out = by_group(correct, groups)
    assert list(out) == ["1", "2", "10"]
    assert out["10"] == accuracy_summary([True, False, True])
    assert (out["1"]["n"], out["2"]["correct"], out["10"]["correct"]) == (1, 1, 2)


def test_by_group_string_labels_and_length_check() -> None:
    assert list(by_group([True, False, True], ["b", "a", "c"])) == ["a", "b", "c"]
    with pytest.raises(ValueError, match="group labels"):
        by_group([True, False], [1])


# --- McNemar ---------------------------------------------------------------------------------------


def test_mcnemar_known_p_values() -> None:
    a, b = _pairs(10, 2, 5, 3)
    r = mcnemar_exact(a, b)
    # two-sided = 2 * P(X <= 2 | 12, 0.5) = 2 * 79 / 4096; one-sided = P(X >= 10) = 79 / 4096
    assert r == {"n": 20, "a_only": 10, "b_only": 2, "both": 5, "neither": 3,
                 "p_two_sided": 0.03857, "p_one_sided_a_better": 0.01929}
    assert r["p_two_sided"] == pytest.approx(2 * 79 / 4096, rel=1e-3)
    rev = mcnemar_exact(b, a)
    assert (rev["a_only"], rev["b_only"], rev["p_two_sided"]) == (2, 10, 0.03857)
    assert rev["p_one_sided_a_better"] == pytest.approx(1 - 13 / 4096, rel=1e-3)  # P(X >= 2 | 12)


def test_mcnemar_no_discordant_pairs() -> None:
    a, b = _pairs(0, 0, 4, 2)
    r = mcnemar_exact(a, b)
    assert (r["p_two_sided"], r["p_one_sided_a_better"], r["both"], r["neither"]) == (1.0, 1.0, 4, 2)


def test_mcnemar_length_checks() -> None:
    with pytest.raises(ValueError, match="lengths differ"):
        mcnemar_exact([True, False], [True])
    with pytest.raises(ValueError, match="n == 0"):
        mcnemar_exact([], [])


# --- sign-flip permutation test --------------------------------------------------------------------


@pytest.mark.parametrize(
    "config",
    [(10, 2, 5, 3), (3, 3, 1, 1), (0, 5, 2, 0), (7, 0, 0, 0), (1, 0, 10, 10), (9, 11, 0, 0), (4, 1, 0, 30)],
)
def test_sign_flip_exact_equals_mcnemar_on_binary_data(config: tuple[int, int, int, int]) -> None:
    a, b = _pairs(*config)
    mc = mcnemar_exact(a, b)
    pd = paired_difference([float(x) for x in a], [float(x) for x in b], n_boot=200)
    assert pd["method"] == "sign_flip_exact"
    assert pd["p_two_sided"] == pytest.approx(mc["p_two_sided"], rel=1e-12)
    assert pd["p_one_sided"] == pytest.approx(mc["p_one_sided_a_better"], rel=1e-12)


def test_sign_flip_exact_matches_brute_force_on_fractions() -> None:
    a = [1.0, 2 / 3, 1.0, 1 / 3, 2 / 3, 0.0, 1.0]
    b = [2 / 3, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0]
    d = [x - y for x, y in zip(a, b) if x != y]
    t = sum(d)
    sums = [sum(s * x for s, x in zip(signs, d)) for signs in itertools.product((1, -1), repeat=len(d))]
    p_one = sum(s >= t - 1e-12 for s in sums) / len(sums)
    p_two = sum(abs(s) >= abs(t) - 1e-12 for s in sums) / len(sums)
    r = paired_difference(a, b, n_boot=200)
    assert r["p_one_sided"] == pytest.approx(p_one, rel=1e-3)
    assert r["p_two_sided"] == pytest.approx(p_two, rel=1e-3)
    assert r["mean_diff"] == round(t / len(a), 4)


def test_sign_flip_monte_carlo_beyond_twenty_nonzero() -> None:
    # 30 problems all +1: the exact p is 2**-30, so no draw reaches it and p = 1 / (20000 + 1)
    r = paired_difference([1.0] * 30, [0.0] * 30, n_boot=200)
    assert r["method"] == "sign_flip_monte_carlo"
    assert r["p_one_sided"] == pytest.approx(1 / 20001, rel=1e-3)
    assert r["p_two_sided"] == pytest.approx(1 / 20001, rel=1e-3)
    # 15 up, 15 down: two-sided is 1 exactly; one-sided P(K >= 15 | 30) = 0.5 + C(30,15) / 2**31 = 0.5722
    a, b = _pairs(15, 15, 0, 0)
    r = paired_difference(a, b, n_boot=200)
    assert r["method"] == "sign_flip_monte_carlo"
    assert r["p_two_sided"] == 1.0
    assert r["p_one_sided"] == pytest.approx(0.5 + math.comb(30, 15) / 2**31, abs=0.015)


# --- bootstrap -------------------------------------------------------------------------------------


def test_paired_difference_bootstrap_ci_contains_mean_and_is_deterministic() -> None:
    rng = np.random.default_rng(123)
    a = rng.random(400)  # continuous scores, so bootstrap quantiles differ between seeds at 4 decimals
    b = rng.random(400)
    r1 = paired_difference(list(a), list(b), seed=7)
    r2 = paired_difference(list(a), list(b), seed=7)
    r3 = paired_difference(list(a), list(b), seed=8)
    assert set(r1) == {"n", "mean_diff", "ci", "ci_level", "p_two_sided", "p_one_sided", "method"}
    assert r1 == r2
    assert r1["ci"] != r3["ci"]
    lo, hi = r1["ci"]
    assert lo < r1["mean_diff"] < hi
    # percentile bootstrap half-width ~ 1.96 * sd / sqrt(n)
    d = a - b
    assert (hi - lo) / 2 == pytest.approx(1.96 * d.std(ddof=1) / math.sqrt(d.size), rel=0.1)
    assert r1["n"] == 400 and r1["ci_level"] == 0.95
    narrow = paired_difference(list(a), list(b), level=0.5, seed=7)["ci"]
    assert lo < narrow[0] < narrow[1] < hi


def test_paired_difference_constant_difference_and_errors() -> None:
    r = paired_difference([1.0, 1.0, 0.5], [0.5, 0.5, 0.0])
    assert (r["mean_diff"], r["ci"], r["p_one_sided"], r["p_two_sided"]) == (0.5, [0.5, 0.5], 0.125, 0.25)
    zero = paired_difference([1, 0, 1], [1, 0, 1])
    assert (zero["mean_diff"], zero["ci"], zero["p_two_sided"], zero["p_one_sided"]) == (0.0, [0.0, 0.0], 1.0, 1.0)
    with pytest.raises(ValueError, match="lengths differ"):
        paired_difference([1.0, 0.0], [1.0])
    with pytest.raises(ValueError, match="n == 0"):
        paired_difference([], [])


# --- seeds and model comparison --------------------------------------------------------------------


def test_across_seeds() -> None:
    assert across_seeds([0.5, 0.6, 0.7]) == {"n": 3, "mean": 0.6, "std": 0.1, "min": 0.5, "max": 0.7,
                                             "values": [0.5, 0.6, 0.7]}
    assert across_seeds([0.25]) == {"n": 1, "mean": 0.25, "std": 0.0, "min": 0.25, "max": 0.25, "values": [0.25]}
    assert across_seeds([0.1, 0.4])["std"] == round(math.sqrt(0.045), 4)
    with pytest.raises(ValueError, match="n == 0"):
        across_seeds([])


BASE = [[True, False, False, True, False, False]]  # 2/6
TRAINED = [
    [True, True, False, True, True, False],  # 4/6
    [True, True, True, True, False, False],  # 4/6
    [True, True, False, False, True, False],  # 3/6
]


def test_compare_models_single_seed_base_vs_three_seeds() -> None:
    out = compare_models({"trained": TRAINED, "base": BASE}, [("trained", "base"), ("base", "trained")])
    assert list(out) == ["trained_vs_base", "base_vs_trained"]
    r = out["trained_vs_base"]
    # per-problem means: trained [1, 1, 1/3, 2/3, 2/3, 0], base [1, 0, 0, 1, 0, 0]
    # differences [0, 1, 1/3, -1/3, 2/3, 0]: mean 5/18; nonzero |d| = {1, 1/3, 1/3, 2/3}, T = 5/3
    assert r["mean_diff"] == 0.2778
    assert r["method"] == "sign_flip_exact"
    assert r["p_one_sided"] == 0.1875  # 3 of 16 sign patterns reach 5/3
    assert r["p_two_sided"] == 0.375  # 6 of 16
    assert r["per_seed"] == [0.3333, 0.3333, 0.1667]
    assert r["across_seeds"] == across_seeds([1 / 3, 1 / 3, 1 / 6])
    assert r["across_seeds"]["mean"] == r["mean_diff"]  # the mean over seeds of the accuracy gap
    assert r["n_seeds"] == [3, 1] and r["n"] == 6
    assert "mcnemar" not in r
    lo, hi = r["ci"]
    assert lo <= r["mean_diff"] <= hi
    rev = out["base_vs_trained"]
    assert rev["mean_diff"] == -0.2778
    assert rev["p_two_sided"] == 0.375
    assert rev["p_one_sided"] == 0.9375  # 1 - P(S > 5/3) = 1 - 1/16
    assert rev["per_seed"] == [-0.3333, -0.3333, -0.1667]


def test_compare_models_single_seeds_include_mcnemar() -> None:
    a, b = _pairs(10, 2, 5, 3)
    r = compare_models({"a": [a], "b": [b]}, [("a", "b")])["a_vs_b"]
    assert r["mcnemar"] == mcnemar_exact(a, b)
    assert (r["p_two_sided"], r["p_one_sided"]) == (0.03857, 0.01929)
    assert r["per_seed"] == [0.4] and r["mean_diff"] == 0.4


def test_compare_models_matches_seeds_by_position() -> None:
    x = [[True, True, False], [False, False, False]]
    y = [[False, True, False], [False, False, True]]
    r = compare_models({"x": x, "y": y}, [("x", "y")])["x_vs_y"]
    assert r["per_seed"] == [0.3333, -0.3333]
    assert r["n_seeds"] == [2, 2]


def test_compare_models_errors() -> None:
    with pytest.raises(ValueError, match="aligned"):
        compare_models({"a": [[True, False]], "b": [[True]]}, [("a", "b")])
    with pytest.raises(ValueError, match="seeds"):
        compare_models({"a": [[True]] * 3, "b": [[False]] * 2}, [("a", "b")])
    with pytest.raises(ValueError, match="unknown model"):
        compare_models({"a": [[True]]}, [("a", "c")])
    with pytest.raises(ValueError, match="n == 0"):
        compare_models({"a": [[]], "b": [[]]}, [("a", "b")])
    with pytest.raises(ValueError, match="no correctness"):
        compare_models({"a": [], "b": [[True]]}, [("a", "b")])


def test_import_is_cheap() -> None:
    # stats itself imports neither scipy, numpy nor torch (whatever the parent package srl_rlvr.eval imports)
    code = ("import sys, srl_rlvr.eval; before = set(sys.modules); import srl_rlvr.eval.stats; "
            "print(sorted(m for m in set(sys.modules) - before if m.split('.')[0] in {'scipy', 'numpy', 'torch'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
