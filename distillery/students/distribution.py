"""Distributional heads: a predicted distribution over a dimension's scores, served as its median.

Oracle scores are whole numbers with skewed, often two-humped distributions (a dimension that is 0-3 for most
articles and 7 for the rest). A regression head predicts the mean and lands between the humps, where almost no
article is; even a median map on top of it only sees a one-dimensional summary. A multinomial logistic head
over the score values seen in training predicts the whole distribution, and its median is the MAE-optimal point.

The median is returned *interpolated*: each score value spreads its probability evenly over its class
(halfway to the neighbouring values, at most 0.49 either side), so the output is continuous, rounds back to the distribution's median
(the calibration map ``whole``) and, left continuous, is a centre for conformal intervals whose coverage is
not stuck on whole numbers. On the real sustainability labels this head as the stack's meta-model cut test
MAE from 0.591 (ridge meta) to 0.553 (benchmarks/results/accuracy_notes.md).

Plain numpy at prediction time: the fitted head is a standardiser and one weight matrix per dimension.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from distillery.calibration import DEFAULT_MAPS

CLASS_STEP = 0.5  # targets are snapped to half scores: medians of two oracles' whole scores stay exact
SPAN = 0.49  # the most a class's interpolated median moves from its value (< 0.5: it rounds back)
CALIBRATION_MAPS = (*DEFAULT_MAPS, "whole")  # what a student serving these medians offers calibration


@dataclass
class DimensionHead:
    """One dimension: its score values and the multinomial weights (a single value: a constant head)."""

    classes: np.ndarray  # (k,) sorted score values
    coef: np.ndarray  # (k, n_features)
    intercept: np.ndarray  # (k,)

    def proba(self, X: np.ndarray) -> np.ndarray:
        if len(self.classes) == 1:
            return np.ones((len(X), 1))
        logits = X @ self.coef.T + self.intercept
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)


def fit_dimension_head(X: np.ndarray, y: np.ndarray, C: float) -> DimensionHead:
    """A multinomial logistic head for one dimension (one part of a training job)."""
    steps = np.round(np.clip(y, 0.0, 10.0) / CLASS_STEP).astype(np.int64)  # class labels: whole half-steps
    if len(np.unique(steps)) == 1:
        return DimensionHead(steps[:1] * CLASS_STEP, np.zeros((1, X.shape[1])), np.zeros(1))
    from sklearn.linear_model import LogisticRegression

    # newton-cg: 6x faster than lbfgs on these few dense columns (5.8 vs 35 s for the 8 sustainability
    # dimensions on 2 cores) at the same test MAE (0.554 vs 0.553)
    model = LogisticRegression(C=C, solver="newton-cg", max_iter=200).fit(X, steps)
    coef, intercept = model.coef_, model.intercept_
    if len(model.classes_) == 2:  # sklearn keeps one row for two classes: the softmax of (0, z) is the same model
        coef, intercept = np.vstack([np.zeros_like(coef), coef]), np.r_[0.0, intercept]
    return DimensionHead(model.classes_ * CLASS_STEP, coef, intercept)


def interpolated_median(proba: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """The median of each row's distribution, each class spread evenly halfway to its neighbours."""
    n = len(proba)
    if len(classes) == 1:
        return np.full(n, float(classes[0]))
    cumulative = np.cumsum(proba, axis=1)
    k = np.minimum((cumulative >= 0.5).argmax(axis=1), len(classes) - 1)
    rows = np.arange(n)
    below = np.where(k > 0, cumulative[rows, np.maximum(k - 1, 0)], 0.0)
    mids = (classes[1:] + classes[:-1]) / 2
    value = classes[k]
    # a class spans halfway to its neighbours but less than half a score either side, so that rounding gives
    # the class back (across a gap, e.g. 2 -> 7, the median stays at a score the distribution has)
    lower = np.maximum(np.where(k > 0, mids[np.maximum(k - 1, 0)], -np.inf), value - SPAN)
    upper = np.minimum(np.where(k < len(classes) - 1, mids[np.minimum(k, len(mids) - 1)], np.inf), value + SPAN)
    share = (0.5 - below) / np.maximum(proba[rows, k], 1e-12)
    return lower + (upper - lower) * np.clip(share, 0.0, 1.0)


class DistributionHeads:
    """Per-dimension distribution heads over standardised features; ``predict`` gives interpolated medians."""

    def __init__(self, mean: np.ndarray, scale: np.ndarray, heads: list[DimensionHead]):
        self.mean, self.scale, self.heads = mean, scale, heads

    @classmethod
    def fit(cls, X: np.ndarray, y: np.ndarray, c: float, mapper=None) -> DistributionHeads:
        """One head per column of ``y`` on standardised ``X``; ``mapper(fn, args_list)`` runs the heads as parts
        (a :mod:`distillery.parallel` runner's ``map``), else one after the other here."""
        mean, scale = cls.standardiser(X)
        Z = (X - mean) / scale
        if mapper is None:
            return cls(mean, scale, [fit_dimension_head(Z, y[:, d], c) for d in range(y.shape[1])])
        return cls(mean, scale, mapper(fit_dimension_head, Z, [(y[:, d], c) for d in range(y.shape[1])]))

    @staticmethod
    def standardiser(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mean, scale = X.mean(axis=0), X.std(axis=0)
        return mean, np.where(scale > 1e-12, scale, 1.0)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.predict_with_deviation(X)[0]

    def predict_with_deviation(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Interpolated medians and each one's expected absolute error under its own distribution,
        E|Y - round(median)|, both (n, n_dims): the heads' measure of how unsure they are."""
        Z = (X - self.mean) / self.scale
        medians, deviations = [], []
        for head in self.heads:
            proba = head.proba(Z)
            median = interpolated_median(proba, head.classes)
            medians.append(median)
            deviations.append((np.abs(head.classes[None, :] - np.rint(median)[:, None]) * proba).sum(axis=1))
        return np.stack(medians, axis=1), np.stack(deviations, axis=1)

    def arrays(self) -> dict[str, np.ndarray]:
        out = {"mean": self.mean, "scale": self.scale}
        for d, h in enumerate(self.heads):
            out.update({f"classes_{d}": h.classes, f"coef_{d}": h.coef, f"intercept_{d}": h.intercept})
        return out

    @classmethod
    def from_arrays(cls, data, n_dims: int) -> DistributionHeads:
        heads = [DimensionHead(data[f"classes_{d}"], data[f"coef_{d}"], data[f"intercept_{d}"])
                 for d in range(n_dims)]
        return cls(data["mean"], data["scale"], heads)
