"""Drift statistics of a model's scores: the share of scores per band of the 0-10 scale.

The trainer stores a model's *reference distribution* (the band shares of its calibrated predictions on the
held-out split) with the version in the registry; the inference service exports it next to the live score
histograms, and the recording rules compare the two by the population stability index. The bands and their
edges come from the filter spec (:data:`distillery.filters.spec.SCORE_BANDS`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from distillery.filters.spec import BAND_EDGES, SCALE_BANDS, SCORE_BANDS

__all__ = ["OVERALL", "SCORE_BANDS", "band_shares", "check_reference", "reference_distribution"]

OVERALL = "overall"  # the key of the overall score's shares, next to the dimensions'


def band_shares(values: Sequence[float] | np.ndarray) -> dict[str, float]:
    """Share of ``values`` (0-10 scores) in each of :data:`SCORE_BANDS`; raises ValueError when empty."""
    arr = np.asarray(values, dtype=np.float64).ravel()
    arr = arr[np.isfinite(arr)]
    if arr.size == 0:
        raise ValueError("no finite scores to compute band shares from")
    index = np.searchsorted(np.array(BAND_EDGES), np.clip(arr, 0.0, 10.0), side="left")  # x <= edge -> that band
    counts = np.bincount(index, minlength=len(SCORE_BANDS))
    return {name: float(c) / arr.size for name, c in zip(SCALE_BANDS, counts, strict=True)}


def reference_distribution(dimensions: Sequence[str], calibrated: np.ndarray, overall: np.ndarray,
                           split: str = "val+test") -> dict[str, Any]:
    """The drift reference of a model: band shares of its calibrated predictions per dimension and overall."""
    calibrated = np.atleast_2d(np.asarray(calibrated, dtype=np.float64))
    if calibrated.shape[1] != len(dimensions):
        raise ValueError(f"expected {len(dimensions)} columns of predictions, got {calibrated.shape[1]}")
    shares = {d: band_shares(calibrated[:, i]) for i, d in enumerate(dimensions)}
    shares[OVERALL] = band_shares(overall)
    return {"bands": list(SCALE_BANDS), "split": split, "n": int(calibrated.shape[0]), "shares": shares}


def check_reference(doc: Any, dimensions: Sequence[str]) -> None:
    """Raise ValueError unless ``doc`` is a reference distribution of ``dimensions`` over the spec's bands."""
    bands = list(SCALE_BANDS)
    if not isinstance(doc, dict) or not isinstance(doc.get("shares"), dict):
        raise ValueError("a reference distribution needs a 'shares' object")  # noqa: TRY004 - bad file content
    if doc.get("bands") != bands:
        raise ValueError(f"reference bands {doc.get('bands')} differ from {bands}")
    missing = [d for d in [*dimensions, OVERALL] if d not in doc["shares"]]
    if missing:
        raise ValueError(f"reference distribution lacks {missing}")
    for key, shares in doc["shares"].items():
        if sorted(shares) != sorted(bands) or not all(_is_share(v) for v in shares.values()):
            raise ValueError(f"reference shares of {key!r} must give a 0-1 share for each band {bands}")


def _is_share(value: Any) -> bool:
    try:
        return bool(np.isfinite(float(value))) and 0 <= float(value) <= 1
    except (TypeError, ValueError):
        return False
