"""Per-request quality predictor: P(tier answers correctly | prompt), one small model per tier.

Training (scikit-learn, imported only here): a ``StandardScaler`` + ``LogisticRegression`` on
:func:`srl_rlvr.routing.features.prompt_features` (and hashed n-grams when ``hash_dim > 0``), fit on eval
outcomes, i.e. which items each tier got right. Fractional outcomes (avg@k) are fit as two weighted rows
per item (label 1 with weight p, label 0 with weight 1 - p). A tier whose outcomes hold fewer than
``min_per_class`` examples of either class gets a constant model, its smoothed success rate
``(correct + 1) / (n + 2)``: nothing can be learned about *which* prompts it gets right.

Inference does not touch scikit-learn: the scaler is folded into the coefficients, and one prediction
is a dot product over 13 numbers plus the hashed n-grams, then a sigmoid (a test checks it equals
``predict_proba``). The fitted predictor is saved as JSON, never pickled.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from srl_rlvr.errors import UserInputError
from srl_rlvr.routing.features import FEATURE_NAMES, hashed_ngrams, prompt_features

FORMAT_VERSION = 1


def _sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


@dataclass
class TierModel:
    """A fitted logistic model (weights already divided by the scaler's scale) or a constant."""

    constant: float | None = None
    weights: list[float] = field(default_factory=list)  # one per FEATURE_NAMES entry
    hash_weights: list[float] = field(default_factory=list)  # one per hashed dimension
    intercept: float = 0.0
    n_train: int = 0
    success_rate: float = 0.0  # mean outcome on the training items

    def probability(self, features: Sequence[float], hashed: Sequence[int]) -> float:
        if self.constant is not None:
            return self.constant
        z = self.intercept
        for w, x in zip(self.weights, features):
            z += w * x
        hw = self.hash_weights
        for index in hashed:
            z += hw[index]
        return _sigmoid(z)


@dataclass
class QualityPredictor:
    """``predict(prompt) -> {tier name: P(correct)}`` for the tiers it was fitted on."""

    models: dict[str, TierModel]
    hash_dim: int = 0

    @classmethod
    def fit(cls, prompts: Sequence[str], outcomes: Mapping[str, Sequence[float]], hash_dim: int = 0,
            C: float = 1.0, min_per_class: int = 2, seed: int = 0) -> "QualityPredictor":
        """Fit one model per tier; ``outcomes[tier][i]`` is the score (0..1) the tier got on ``prompts[i]``."""
        import numpy as np

        X = np.array([_row(p, hash_dim) for p in prompts], dtype=float) if prompts else np.zeros((0, 0))
        models = {}
        for tier, scores in outcomes.items():
            if len(scores) != len(prompts):
                raise ValueError(f"tier {tier!r}: {len(scores)} outcomes for {len(prompts)} prompts")
            models[tier] = _fit_one(X, np.asarray(scores, dtype=float), hash_dim, C, min_per_class, seed)
        return cls(models=models, hash_dim=hash_dim)

    def features(self, prompt: str) -> tuple[list[float], list[int]]:
        return prompt_features(prompt), hashed_ngrams(prompt, self.hash_dim)

    def predict(self, prompt: str) -> dict[str, float]:
        features, hashed = self.features(prompt)
        return {tier: model.probability(features, hashed) for tier, model in self.models.items()}

    def to_dict(self) -> dict[str, Any]:
        return {"format_version": FORMAT_VERSION, "feature_names": list(FEATURE_NAMES), "hash_dim": self.hash_dim,
                "models": {name: asdict(model) for name, model in self.models.items()}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "predictor") -> "QualityPredictor":
        if data.get("format_version") != FORMAT_VERSION or list(data.get("feature_names", [])) != list(FEATURE_NAMES):
            raise UserInputError(f"{where}: written by another version of the router "
                                 "(features or format differ); refit it")
        try:
            models = {name: TierModel(**m) for name, m in data["models"].items()}
        except (KeyError, TypeError) as exc:
            raise UserInputError(f"{where}: malformed predictor ({exc})") from None
        return cls(models=models, hash_dim=int(data["hash_dim"]))

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> "QualityPredictor":
        path = Path(path)
        if not path.is_file():
            raise UserInputError(f"{path}: no such predictor file (`srl-rlvr route eval` writes DIR/predictor.json)")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise UserInputError(f"{path}: not JSON ({exc})") from None
        return cls.from_dict(data, str(path))


def _row(prompt: str, hash_dim: int) -> list[float]:
    row = prompt_features(prompt)
    if hash_dim:
        dense = [0.0] * hash_dim
        for index in hashed_ngrams(prompt, hash_dim):
            dense[index] = 1.0
        row = row + dense
    return row


def _fit_one(X: Any, y: Any, hash_dim: int, C: float, min_per_class: int, seed: int) -> TierModel:
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    n = len(y)
    positives, negatives = float(y.sum()), float((1 - y).sum())
    rate = positives / n if n else 0.0
    if n == 0 or positives < min_per_class or negatives < min_per_class:
        return TierModel(constant=(positives + 1) / (n + 2), n_train=n, success_rate=rate)
    hand = len(FEATURE_NAMES)
    mean = X[:, :hand].mean(axis=0)
    scale = X[:, :hand].std(axis=0)
    scale[scale == 0] = 1.0
    Xs = X.copy()
    Xs[:, :hand] = (X[:, :hand] - mean) / scale
    # Fractional outcomes: each item once as a success (weight p) and once as a failure (weight 1 - p).
    X2 = np.vstack([Xs, Xs])
    y2 = np.concatenate([np.ones(n), np.zeros(n)])
    w2 = np.concatenate([y, 1 - y])
    keep = w2 > 0
    clf = LogisticRegression(C=C, max_iter=1000, random_state=seed)
    clf.fit(X2[keep], y2[keep], sample_weight=w2[keep])
    coef = clf.coef_[0]
    weights = coef[:hand] / scale
    intercept = float(clf.intercept_[0] - (coef[:hand] * mean / scale).sum())
    return TierModel(weights=[float(w) for w in weights], hash_weights=[float(w) for w in coef[hand:]],
                     intercept=intercept, n_train=n, success_rate=rate)
