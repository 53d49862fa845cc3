"""Expected error of a prediction, and the ``uncertain`` flag that fires on a target share of articles.

A flag that fires on half of everything cannot steer oracle spend or human review, and an interval-width
threshold fires on whatever share the intervals happen to give. Instead every trained student gets a small
*error model*, fitted on held-out predictions (the validation split, or the out-of-fold predictions of a
cross-validated run) and stored with its calibration:

1. per dimension, the mean absolute error of the calibrated score as a step function of the raw score (ten
   one-point bins, each shrunk towards the dimension's mean error by :data:`SHRINK` pseudo-points): mid-range
   and rare high predictions are where students miss;
2. a ridge over three row features (that binned error averaged over the dimensions, the mean conformal interval
   width, and the members' mean spread for students with members) predicting the row's mean absolute error.

The flag ranks by that expected error. The held-out rows' expected errors are kept as a quantile table, so a
filter's ``student.uncertain_share`` (flag the top share) maps to a threshold at serving time without a
retrain, and ``student.uncertain_max_error`` flags an absolute expected error instead. Applying needs numpy
only; the model is plain JSON inside ``calibration.json``.

Measured on the real sustainability labels (lexical student, 759 test articles; benchmarks/uncertain_flag.py): a
10% target flags 11.7% of the test articles, whose MAE is 2.30x the unflagged ones' (the interval-width rule
flagged 55.6% at 1.73x).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

BIN_EDGES = tuple(float(e) + 0.5 for e in range(10))  # raw score bins 0|1|...|10
SHRINK = 5.0  # pseudo-points pulling a sparse bin's error towards the dimension's mean error
RIDGE_ALPHA = 1.0
QUANTILES = 201  # points of the held-out expected-error distribution kept for share -> threshold
SCHEMA = 1


@dataclass
class ErrorModel:
    """Expected mean absolute error of a row from its raw scores, interval widths and member spread."""

    bin_edges: list[float] = field(default_factory=lambda: list(BIN_EDGES))
    bin_error: list[list[float]] = field(default_factory=list)  # per dimension, one per bin
    feature_mean: list[float] = field(default_factory=list)
    feature_scale: list[float] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)  # intercept first
    uses_spread: bool = False
    quantiles: list[float] = field(default_factory=list)  # expected error at 0, 1/(Q-1), ..., 1 of held-out rows
    fitted_on: int = 0

    # -- fit -----------------------------------------------------------------------------------------
    @classmethod
    def fit(cls, raw: np.ndarray, calibrated: np.ndarray, lower: np.ndarray, upper: np.ndarray,
            targets: np.ndarray, spread: np.ndarray | None = None) -> ErrorModel:
        """Fit on held-out rows: raw and calibrated predictions, their intervals and the oracle's ``targets``."""
        raw, calibrated, lower, upper, targets = (np.atleast_2d(np.asarray(a, dtype=np.float64))
                                                  for a in (raw, calibrated, lower, upper, targets))
        if not raw.shape == calibrated.shape == targets.shape:
            raise ValueError(f"raw {raw.shape}, calibrated {calibrated.shape} and targets {targets.shape} differ")
        if len(raw) < 2:
            raise ValueError("an error model needs at least 2 held-out rows")
        abs_err = np.abs(calibrated - targets)
        model = cls(uses_spread=spread is not None and bool(np.any(np.asarray(spread) > 0)), fitted_on=len(raw))
        edges = np.asarray(model.bin_edges)
        bins = np.digitize(np.clip(raw, 0.0, 10.0), edges)
        for j in range(raw.shape[1]):
            mean_err = float(abs_err[:, j].mean())
            model.bin_error.append([float((abs_err[bins[:, j] == b, j].sum() + SHRINK * mean_err)
                                          / ((bins[:, j] == b).sum() + SHRINK)) for b in range(len(edges) + 1)])
        features = model._features(raw, lower, upper, spread)
        mean, scale = features.mean(axis=0), features.std(axis=0)
        scale[scale < 1e-9] = 1.0
        model.feature_mean, model.feature_scale = mean.tolist(), scale.tolist()
        design = np.hstack([np.ones((len(raw), 1)), (features - mean) / scale])
        penalty = RIDGE_ALPHA * np.eye(design.shape[1])
        penalty[0, 0] = 0.0  # the intercept is not shrunk
        model.weights = np.linalg.solve(design.T @ design + penalty, design.T @ abs_err.mean(axis=1)).tolist()
        expected = model.expected_error(raw, lower, upper, spread)
        model.quantiles = np.quantile(expected, np.linspace(0.0, 1.0, QUANTILES)).tolist()
        return model

    def _features(self, raw, lower, upper, spread) -> np.ndarray:
        raw = np.clip(np.atleast_2d(np.asarray(raw, dtype=np.float64)), 0.0, 10.0)
        bins = np.digitize(raw, np.asarray(self.bin_edges))
        table = np.asarray(self.bin_error, dtype=np.float64)  # (dims, bins)
        binned = table[np.arange(raw.shape[1])[None, :], bins].mean(axis=1)
        width = (np.atleast_2d(upper) - np.atleast_2d(lower)).mean(axis=1)
        columns = [binned, width]
        if self.uses_spread:
            columns.append(np.zeros(len(raw)) if spread is None else np.atleast_2d(spread).mean(axis=1))
        return np.stack(columns, axis=1)

    # -- apply ---------------------------------------------------------------------------------------
    def expected_error(self, raw: np.ndarray, lower: np.ndarray, upper: np.ndarray,
                       spread: np.ndarray | None = None) -> np.ndarray:
        """Expected mean absolute error (over dimensions) of each row's calibrated scores, (n,)."""
        features = self._features(raw, lower, upper, spread)
        design = (features - np.asarray(self.feature_mean)) / np.asarray(self.feature_scale)
        weights = np.asarray(self.weights)
        return np.maximum(weights[0] + design @ weights[1:], 0.0)

    def rank(self, expected: np.ndarray) -> np.ndarray:
        """Share of the held-out rows whose expected error is below each value (0-1): the flag's ranking."""
        grid = np.linspace(0.0, 1.0, len(self.quantiles))
        return np.interp(np.asarray(expected, dtype=np.float64), self.quantiles, grid, left=0.0, right=1.0)

    def threshold(self, share: float) -> float:
        """The expected error above which ``share`` of the held-out rows lie."""
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"share must be within 0-1, got {share}")
        grid = np.linspace(0.0, 1.0, len(self.quantiles))
        return float(np.interp(1.0 - share, grid, self.quantiles))

    # -- io ------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, **{k: v for k, v in self.__dict__.items()}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ErrorModel:
        try:
            return cls(**{k: v for k, v in data.items() if k != "schema"})
        except TypeError as exc:
            raise ValueError(f"not an error model document: {exc}") from None


def flag(expected: np.ndarray, model: ErrorModel, share: float | None, max_error: float | None) -> np.ndarray | None:
    """The ``uncertain`` flag from expected errors: above ``max_error`` when set, else in the top ``share`` of the
    held-out distribution; None when neither is set (the caller falls back to interval-width rules)."""
    expected = np.asarray(expected, dtype=np.float64)
    if max_error is not None:
        return expected > max_error
    if share is None:
        return None
    return expected > model.threshold(share)


def flagged_report(y: np.ndarray, calibrated: np.ndarray, flagged: np.ndarray) -> dict[str, float]:
    """Flagged share, the MAE of the flagged and unflagged rows and their ratio (the flag's worth)."""
    rows = np.abs(np.asarray(calibrated, dtype=np.float64) - np.asarray(y, dtype=np.float64)).mean(axis=1)
    flagged = np.asarray(flagged, dtype=bool)
    mae_f = float(rows[flagged].mean()) if flagged.any() else float("nan")
    mae_u = float(rows[~flagged].mean()) if (~flagged).any() else float("nan")
    ratio = mae_f / mae_u if flagged.any() and (~flagged).any() and mae_u > 0 else float("nan")
    return {"share": float(flagged.mean()) if len(flagged) else 0.0, "n_flagged": float(flagged.sum()),
            "mae_flagged": mae_f, "mae_unflagged": mae_u, "mae_ratio": ratio}


def spec_flag_settings(student_settings: Any) -> tuple[float | None, float | None]:
    """``(uncertain_share, uncertain_max_error)`` of a filter spec's student settings."""
    return (getattr(student_settings, "uncertain_share", None), getattr(student_settings, "uncertain_max_error", None))
