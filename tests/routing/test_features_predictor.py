"""Features, the quality predictor (equal to scikit-learn's predict_proba), and that it learns difficulty."""

from __future__ import annotations

import numpy as np
import pytest

from srl_rlvr.data.demo import make_demo_task
from srl_rlvr.errors import UserInputError
from srl_rlvr.routing import metrics as M
from srl_rlvr.routing.evaluate import held_out_qualities
from srl_rlvr.routing.features import FEATURE_NAMES, hashed_ngrams, prompt_features
from srl_rlvr.routing.predictor import QualityPredictor


@pytest.fixture(scope="module")
def demo_rows():
    train, test = make_demo_task(n_train=240, n_test=0, seed=5)
    return train


def test_features_count_what_they_say():
    f = dict(zip(FEATURE_NAMES, prompt_features("What is 12 + 30 * 2? Then double it.")))
    assert f["numbers"] == 3 and f["digits"] == 5 and f["symbol_ops"] == 2
    assert f["sequence_words"] == 1 and f["question_marks"] == 1
    assert f["log_max_number"] == pytest.approx(np.log1p(30))


def test_hashed_ngrams_are_stable_and_bounded():
    idx = hashed_ngrams("the quick brown fox", 64)
    assert idx == sorted(set(idx)) and all(0 <= i < 64 for i in idx)
    assert len(idx) <= 7  # 4 unigrams + 3 bigrams


def test_inference_equals_sklearn_predict_proba(demo_rows):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    prompts = [r["problem"] for r in demo_rows]
    y = [float(r["num_ops"] == 2) for r in demo_rows]
    ours = QualityPredictor.fit(prompts, {"small": y}, C=0.7)
    X = np.array([prompt_features(p) for p in prompts])
    ref = make_pipeline(StandardScaler(), LogisticRegression(C=0.7, max_iter=1000)).fit(X, y)
    expected = ref.predict_proba(X[:20])[:, 1]
    got = [ours.predict(p)["small"] for p in prompts[:20]]
    assert got == pytest.approx(list(expected), abs=1e-6)


def test_single_class_tier_gets_a_smoothed_constant(demo_rows):
    prompts = [r["problem"] for r in demo_rows[:10]]
    predictor = QualityPredictor.fit(prompts, {"never": [0.0] * 10, "always": [1.0] * 10})
    assert predictor.models["never"].constant == pytest.approx(1 / 12)
    assert predictor.predict(prompts[0]) == {"never": pytest.approx(1 / 12), "always": pytest.approx(11 / 12)}


def test_save_load_roundtrip_and_version_check(tmp_path, demo_rows):
    prompts = [r["problem"] for r in demo_rows]
    y = [float(r["num_ops"] <= 3) for r in demo_rows]
    predictor = QualityPredictor.fit(prompts, {"small": y}, hash_dim=32)
    loaded = QualityPredictor.load(predictor.save(tmp_path / "p.json"))
    assert loaded.predict(prompts[3]) == pytest.approx(predictor.predict(prompts[3]))
    data = predictor.to_dict()
    data["feature_names"] = ["other"]
    with pytest.raises(UserInputError, match="refit"):
        QualityPredictor.from_dict(data)


def test_fractional_outcomes_fit(demo_rows):
    prompts = [r["problem"] for r in demo_rows]
    soft = [0.75 if r["num_ops"] == 2 else 0.1 for r in demo_rows]
    p = QualityPredictor.fit(prompts, {"small": soft})
    easy = next(r["problem"] for r in demo_rows if r["num_ops"] == 2)
    hard = next(r["problem"] for r in demo_rows if r["num_ops"] == 4)
    assert p.predict(easy)["small"] > p.predict(hard)["small"]


def test_held_out_router_beats_random_when_difficulty_shows_in_the_prompt(demo_rows):
    """The small tier solves most 2-op problems and few 4-op ones; held-out APGR must beat 0.5 clearly.

    This fails if the predictor or the curve ignores the features (a constant predictor scores 0.5).
    """
    rng = np.random.default_rng(0)
    rate = {2: 0.8, 3: 0.35, 4: 0.05}
    prompts = [r["problem"] for r in demo_rows]
    weak = [float(rng.random() < rate[r["num_ops"]]) for r in demo_rows]
    strong = [1.0] * len(prompts)
    q = held_out_qualities(prompts, {"small": weak, "big": strong}, folds=2, seed=0, C=1.0, hash_dim=0,
                           min_per_class=2)
    ours = M.apgr(M.gap_curve([-x["small"] for x in q], weak, strong))
    rand = M.random_router_summary(weak, strong, seeds=20)["apgr"]
    oracle = M.apgr(M.gap_curve([1 - w for w in weak], weak, strong))
    assert ours > rand + 0.08
    assert ours <= oracle + 1e-9
