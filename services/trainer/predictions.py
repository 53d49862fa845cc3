"""What a fitted student's predictions give besides scores: members' spread, the ``uncertain`` flags the
service will raise, and the band distribution drift is measured against."""

from __future__ import annotations

from typing import Any

import numpy as np

from distillery import uncertainty
from distillery.calibration import Calibration
from distillery.drift import reference_distribution
from distillery.filters.postprocess import overall_scores
from distillery.filters.spec import FilterSpec


def predict_with_spread(student, texts) -> tuple[np.ndarray, np.ndarray | None]:
    """Raw predictions and, for students with members (stack, ensemble), the members' spread (else None)."""
    if hasattr(student, "predict_with_spread"):
        raw, spread = student.predict_with_spread(texts)
        return np.asarray(raw, dtype=np.float64), np.asarray(spread, dtype=np.float64)
    return np.asarray(student.predict(texts), dtype=np.float64), None


def uncertain_flags(spec: FilterSpec, calibration: Calibration, raw, lower, upper, spread=None) -> np.ndarray | None:
    """The ``uncertain`` flag the service will raise on these rows (the spec's share or error threshold)."""
    if calibration.error_model is None:
        return None
    share, max_error = uncertainty.spec_flag_settings(spec.student)
    expected = calibration.expected_error(raw, lower, upper, spread)
    return uncertainty.flag(expected, calibration.error_model, share, max_error)


def cross_fitted_flags(spec: FilterSpec, cv: dict[str, Any], y: np.ndarray, assignment: np.ndarray):
    """Cross-validated runs: each fold's flags from an error model fitted on the other folds' out-of-fold rows
    (cross-fitted calibrated scores and intervals), so the reported flagged-vs-unflagged MAE is not in-sample."""
    share, max_error = uncertainty.spec_flag_settings(spec.student)
    if share is None and max_error is None:
        return None
    raw, calibrated, lower, upper = cv["oof_raw"], cv["calibrated"], cv["lower"], cv["upper"]
    flagged = np.zeros(len(y), dtype=bool)
    for k in np.unique(assignment):
        others, held = assignment != k, assignment == k
        model = uncertainty.ErrorModel.fit(raw[others], calibrated[others], lower[others], upper[others], y[others])
        expected = model.expected_error(raw[held], lower[held], upper[held])
        flagged[held] = uncertainty.flag(expected, model, share, max_error)
    return flagged


def model_reference(spec: FilterSpec, calibration: Calibration, val_raw, test_raw) -> dict[str, Any]:
    """Band shares of the model's calibrated, served-range predictions on its validation+test split: the
    distribution the live score histograms are compared with for drift (stored with the model version)."""
    raw = np.concatenate([np.asarray(val_raw, dtype=np.float64).reshape(-1, len(spec.dimension_names)),
                          np.asarray(test_raw, dtype=np.float64).reshape(-1, len(spec.dimension_names))])
    calibrated, _, _ = calibration.apply(raw)
    calibrated = np.clip(calibrated, 0.0, 10.0)  # what the inference engine exports
    overall, _ = overall_scores(spec, calibrated)
    return reference_distribution(spec.dimension_names, calibrated, overall)
