"""APGR / CPT on hand-computed curves, ties, and the random and oracle routers."""

from __future__ import annotations

import random

import pytest

from srl_rlvr.routing import metrics as M


def test_perfect_router_on_half_wrong_items():
    weak, strong = [0, 0, 1, 1], [1, 1, 1, 1]
    curve = M.gap_curve([0.9, 0.8, 0.2, 0.1], weak, strong)  # escalates the two wrong items first
    assert curve.shares == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert curve.pgr == [0.0, 0.5, 1.0, 1.0, 1.0]
    assert M.apgr(curve) == pytest.approx(0.75)
    assert M.cpt(curve, 50) == pytest.approx(0.25)
    assert M.cpt(curve, 80) == pytest.approx(0.4)


def test_worst_router_escalates_the_wrong_items_last():
    weak, strong = [0, 0, 1, 1], [1, 1, 1, 1]
    curve = M.gap_curve([0.1, 0.2, 0.8, 0.9], weak, strong)
    assert M.apgr(curve) == pytest.approx(0.25)
    assert M.cpt(curve, 50) == pytest.approx(0.75)


def test_all_tied_scores_give_the_diagonal():
    weak, strong = [0, 1, 0, 1, 0], [1, 1, 1, 0, 1]
    curve = M.gap_curve([0.3] * 5, weak, strong)
    assert curve.shares == [0.0, 1.0]
    assert M.apgr(curve) == pytest.approx(0.5)
    assert M.cpt(curve, 80) == pytest.approx(0.8)


def test_no_gap_gives_none():
    curve = M.gap_curve([0.1, 0.2], [1, 0], [0, 1])
    assert curve.gap == 0 and M.apgr(curve) is None and M.cpt(curve, 50) is None


def test_random_router_is_about_half():
    rng = random.Random(1)
    weak = [float(rng.random() < 0.3) for _ in range(200)]
    strong = [1.0] * 200
    summary = M.random_router_summary(weak, strong, seeds=30)
    assert summary["apgr"] == pytest.approx(0.5, abs=0.03)
    assert summary["cpt50"] == pytest.approx(0.5, abs=0.05)


def test_oracle_ceiling_is_half_plus_half_the_weak_accuracy():
    weak = [1.0] * 20 + [0.0] * 80
    strong = [1.0] * 100
    oracle = M.gap_curve([s - w for w, s in zip(weak, strong)], weak, strong)
    assert M.apgr(oracle) == pytest.approx(0.5 + 0.2 / 2)


def test_performance_at_interpolates():
    curve = M.gap_curve([0.9, 0.1], [0, 1], [1, 1])
    assert M.performance_at(curve, 0.25) == pytest.approx(0.75)
