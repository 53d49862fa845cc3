"""Held-out evaluation: per-dimension errors, bands, recall on high scorers, tiers, interval coverage.

Every figure is computed on the split it is given (the test split, in jobs and ``distillery evaluate``);
calibration is always fitted elsewhere (validation), so raw-vs-calibrated comparisons are honest.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from distillery.calibration import coverage
from distillery.filters.postprocess import overall_scores, tier_for
from distillery.filters.spec import SCORE_BANDS, FilterSpec
from distillery.uncertainty import flagged_report

# Error by band counts a score in the band of its nearest whole score (2.4 -> "0-2", 2.5 -> "3-4"): the spec's
# band edges moved up by half a point, as (lower, upper, name) with the lower bound inclusive.
_LOWER_EDGES = (-0.5, *(edge for _, edge in SCORE_BANDS[:-1]))
BANDS = tuple((max(lower + 0.5, 0.0), upper + 0.5, name) for (name, upper), lower in zip(SCORE_BANDS, _LOWER_EDGES,
                                                                                         strict=True))


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    return float(spearmanr(a, b).statistic)


def evaluate(spec: FilterSpec, y: np.ndarray, raw: np.ndarray, calibrated: np.ndarray | None = None,
             lower: np.ndarray | None = None, upper: np.ndarray | None = None,
             train_mean: np.ndarray | None = None, medium_threshold: float | None = None,
             k_fraction: float = 0.1, flagged: np.ndarray | None = None) -> dict[str, Any]:
    """A nested report plus ``flat`` (name -> float) for job metrics and the registry.

    ``flagged``: the rows the ``uncertain`` flag marks; the report then says their share and their MAE against
    the unflagged rows' (a flag worth acting on catches rows with about twice the error, or more)."""
    dims = spec.dimension_names
    y = np.asarray(y, dtype=np.float64)
    raw_c = np.clip(np.asarray(raw, dtype=np.float64), 0, 10)
    cal = raw_c if calibrated is None else np.asarray(calibrated, dtype=np.float64)
    mean = np.asarray(train_mean if train_mean is not None else y.mean(axis=0))
    per = {d: _dimension_errors(y[:, j], raw_c[:, j], cal[:, j], mean[j]) for j, d in enumerate(dims)}
    out: dict[str, Any] = {"n": len(y), "dimensions": per}
    for key in ("mae_raw", "mae", "rmse", "spearman", "mean_predictor_mae"):
        out[key] = float(np.mean([v[key] for v in per.values()]))
    out.update(_overall_errors(spec, y, cal, medium_threshold, k_fraction))
    if lower is not None and upper is not None:
        cov = coverage(y, lower, upper)
        width = (np.asarray(upper) - np.asarray(lower)).mean(axis=0)
        for j, d in enumerate(dims):
            per[d]["coverage"] = float(cov[j])
            per[d]["interval_width"] = float(width[j])
        out["coverage"] = float(cov.mean())
        out["interval_width"] = float(width.mean())
    if flagged is not None:
        out["uncertain"] = flagged_report(y, cal, flagged)
    out["flat"] = flatten(out)
    return out


def _dimension_errors(y: np.ndarray, raw: np.ndarray, calibrated: np.ndarray, train_mean: float) -> dict[str, float]:
    """One dimension's errors: raw and calibrated MAE, RMSE, rank correlation, and the mean predictor's MAE."""
    return {
        "mae_raw": float(np.abs(raw - y).mean()),
        "mae": float(np.abs(calibrated - y).mean()),
        "rmse": float(np.sqrt(((calibrated - y) ** 2).mean())),
        "spearman": spearman(calibrated, y),
        "mean_predictor_mae": float(np.abs(train_mean - y).mean()),
    }


def _overall_errors(spec: FilterSpec, y: np.ndarray, calibrated: np.ndarray, medium_threshold: float | None,
                    k_fraction: float) -> dict[str, Any]:
    """The overall score's error, by oracle band; recall of the top ``k_fraction``; false negatives at medium
    or above; tier agreement."""
    true_overall, _ = overall_scores(spec, y)
    pred_overall, _ = overall_scores(spec, calibrated)
    out: dict[str, Any] = {"overall_mae": float(np.abs(true_overall - pred_overall).mean()), "error_by_band": {}}
    for lo, hi, name in BANDS:
        mask = (true_overall >= lo) & (true_overall < hi)
        out["error_by_band"][name] = {"n": int(mask.sum()),
                                      "overall_mae": float(np.abs(true_overall - pred_overall)[mask].mean())
                                      if mask.any() else None}
    tiers = spec.tiers_descending
    medium = medium_threshold if medium_threshold is not None else (
        tiers[-2].min_overall if len(tiers) >= 2 else 4.0)
    positives = true_overall >= medium
    k = max(1, round(k_fraction * len(y)))
    top_true = set(np.argsort(-true_overall)[:k].tolist())
    top_pred = set(np.argsort(-pred_overall)[:k].tolist())
    out["recall_at_k"] = {"k": k, "recall": len(top_true & top_pred) / k}
    out["medium_or_above"] = {
        "threshold": float(medium), "n": int(positives.sum()),
        "false_negatives": int((positives & (pred_overall < medium)).sum()),
        "false_negative_rate": float((positives & (pred_overall < medium)).sum() / max(1, positives.sum())),
    }
    true_tiers = [tier_for(spec, v) for v in true_overall]
    pred_tiers = [tier_for(spec, v) for v in pred_overall]
    out["tier_agreement"] = float(np.mean([a == b for a, b in zip(true_tiers, pred_tiers)])) if len(y) else 0.0
    return out


def flatten(report: dict[str, Any]) -> dict[str, float]:
    flat = {k: float(report[k]) for k in ("mae", "mae_raw", "rmse", "spearman", "mean_predictor_mae",
                                          "overall_mae", "tier_agreement") if k in report}
    for k in ("coverage", "interval_width"):
        if k in report:
            flat[k] = float(report[k])
    if "uncertain" in report:
        for key in ("share", "mae_flagged", "mae_unflagged", "mae_ratio"):
            flat[f"uncertain_{key}"] = float(report["uncertain"][key])
    flat["recall_at_k"] = float(report["recall_at_k"]["recall"])
    flat["false_negative_rate_medium"] = float(report["medium_or_above"]["false_negative_rate"])
    for d, v in report["dimensions"].items():
        flat[f"mae.{d}"] = v["mae"]
    return flat
