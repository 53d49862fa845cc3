"""Per-dimension isotonic calibration and split-conformal prediction intervals.

Both are fitted on the validation split and applied to anything else (report them on the test split
only: in-sample gains are not gains). Intervals are Mondrian split-conformal: the absolute residuals of
the calibrated prediction are grouped by predicted-score band (each band with enough validation points
gets its own quantile, the others the global one), so confident low scores get narrow intervals while
the 90% marginal guarantee holds per band. Saved and loaded as plain JSON; applying needs numpy only.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

MIN_SCORE, MAX_SCORE = 0.0, 10.0
DEFAULT_BAND_EDGES = (2.5, 4.5, 6.5)  # predicted-score bands for the Mondrian intervals
CALIBRATION_SCHEMA = 1


def conformal_quantile(residuals: np.ndarray, coverage: float) -> float:
    """The finite-sample split-conformal quantile: the ceil((n+1)·coverage)-th smallest residual."""
    residuals = np.sort(np.asarray(residuals, dtype=np.float64))
    n = len(residuals)
    if n == 0:
        return MAX_SCORE
    rank = math.ceil((n + 1) * coverage)
    if rank > n:
        return MAX_SCORE - MIN_SCORE  # too few points for this coverage: the whole range
    return float(residuals[rank - 1])


@dataclass
class DimensionCalibration:
    """Isotonic map (piecewise linear through ``x``/``y``) and conformal half-widths per band."""

    name: str
    x: list[float] = field(default_factory=list)  # empty: identity
    y: list[float] = field(default_factory=list)
    band_edges: list[float] = field(default_factory=lambda: list(DEFAULT_BAND_EDGES))
    band_q: list[float] = field(default_factory=list)  # one per band (len(band_edges) + 1)
    global_q: float = MAX_SCORE

    def calibrate(self, raw: np.ndarray) -> np.ndarray:
        raw = np.asarray(raw, dtype=np.float64)
        if self.x:
            return np.interp(raw, self.x, self.y)
        return np.clip(raw, MIN_SCORE, MAX_SCORE)

    def half_width(self, calibrated: np.ndarray) -> np.ndarray:
        if not self.band_q:
            return np.full(np.shape(calibrated), self.global_q)
        bands = np.digitize(calibrated, self.band_edges)
        return np.asarray(self.band_q, dtype=np.float64)[bands]


class Calibration:
    """Calibration for all dimensions of one student."""

    def __init__(self, dimensions: Sequence[DimensionCalibration], coverage: float = 0.9,
                 info: dict[str, Any] | None = None):
        self.dims = list(dimensions)
        self.coverage = float(coverage)
        self.info = dict(info or {})

    @property
    def dimensions(self) -> list[str]:
        return [d.name for d in self.dims]

    # -- fit -----------------------------------------------------------------------------------------
    @classmethod
    def fit(cls, raw: np.ndarray, targets: np.ndarray, dimensions: Sequence[str], coverage: float = 0.9,
            isotonic: bool = True, band_edges: Sequence[float] = DEFAULT_BAND_EDGES,
            min_band_points: int = 30) -> Calibration:
        """Fit on held-out (validation) predictions ``raw`` and oracle ``targets``, both (n, n_dims)."""
        from sklearn.isotonic import IsotonicRegression

        raw = np.atleast_2d(np.asarray(raw, dtype=np.float64))
        targets = np.atleast_2d(np.asarray(targets, dtype=np.float64))
        if raw.shape != targets.shape or raw.shape[1] != len(dimensions):
            raise ValueError(f"raw {raw.shape} and targets {targets.shape} must both be (n, {len(dimensions)})")
        if not 0.5 <= coverage < 1.0:
            raise ValueError(f"coverage must be in [0.5, 1), got {coverage}")
        dims = []
        for j, name in enumerate(dimensions):
            dim = DimensionCalibration(name=name, band_edges=[float(e) for e in band_edges])
            if isotonic and len(raw) >= 20 and np.ptp(raw[:, j]) > 0:
                iso = IsotonicRegression(y_min=MIN_SCORE, y_max=MAX_SCORE, out_of_bounds="clip")
                iso.fit(raw[:, j], targets[:, j])
                dim.x = [float(v) for v in iso.X_thresholds_]
                dim.y = [float(v) for v in iso.y_thresholds_]
            calibrated = dim.calibrate(raw[:, j])
            residuals = np.abs(targets[:, j] - calibrated)
            dim.global_q = conformal_quantile(residuals, coverage)
            bands = np.digitize(calibrated, dim.band_edges)
            dim.band_q = []
            for b in range(len(dim.band_edges) + 1):
                in_band = residuals[bands == b]
                q = conformal_quantile(in_band, coverage) if len(in_band) >= min_band_points else dim.global_q
                dim.band_q.append(q)
            dims.append(dim)
        return cls(dims, coverage, {"fitted_on": len(raw), "isotonic": bool(isotonic),
                                    "min_band_points": int(min_band_points)})

    # -- apply ---------------------------------------------------------------------------------------
    def apply(self, raw: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Calibrated scores and interval bounds, each (n, n_dims), all within 0-10."""
        raw = np.atleast_2d(np.asarray(raw, dtype=np.float64))
        if raw.shape[1] != len(self.dims):
            raise ValueError(f"expected {len(self.dims)} columns, got {raw.shape[1]}")
        cal = np.empty_like(raw)
        half = np.empty_like(raw)
        for j, dim in enumerate(self.dims):
            cal[:, j] = dim.calibrate(raw[:, j])
            half[:, j] = dim.half_width(cal[:, j])
        return cal, np.clip(cal - half, MIN_SCORE, MAX_SCORE), np.clip(cal + half, MIN_SCORE, MAX_SCORE)

    def intervals_for(self, raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Intervals around the raw (uncalibrated, clamped) prediction, for comparisons."""
        raw = np.clip(np.atleast_2d(raw), MIN_SCORE, MAX_SCORE)
        half = np.stack([dim.half_width(raw[:, j]) for j, dim in enumerate(self.dims)], axis=1)
        return np.clip(raw - half, MIN_SCORE, MAX_SCORE), np.clip(raw + half, MIN_SCORE, MAX_SCORE)

    # -- io ------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": CALIBRATION_SCHEMA,
            "coverage": self.coverage,
            "info": self.info,
            "dimensions": [d.__dict__ for d in self.dims],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibration:
        try:
            dims = [DimensionCalibration(**d) for d in data["dimensions"]]
            return cls(dims, float(data.get("coverage", 0.9)), data.get("info"))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a calibration document: {exc}") from None

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str) -> Calibration:
        return cls.from_dict(json.loads(text))

    def save(self, path: Path | str) -> None:
        Path(path).write_text(self.to_json(), encoding="utf-8")

    @classmethod
    def load(cls, path: Path | str) -> Calibration:
        return cls.from_json(Path(path).read_text(encoding="utf-8"))

    @classmethod
    def identity(cls, dimensions: Sequence[str], half_width: float = MAX_SCORE) -> Calibration:
        """No calibration and fixed-width intervals (a model registered without held-out data)."""
        return cls([DimensionCalibration(name=n, band_q=[], global_q=half_width) for n in dimensions], 0.9,
                   {"identity": True})


def coverage(targets: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """Share of targets inside [lower, upper], per dimension."""
    targets = np.atleast_2d(targets)
    return ((targets >= lower - 1e-9) & (targets <= upper + 1e-9)).mean(axis=0)


def uncertain(lower: np.ndarray, upper: np.ndarray, max_width: float, spread: np.ndarray | None = None,
              max_spread: float | None = None) -> np.ndarray:
    """Per-row flag: any interval wider than ``max_width`` or (ensembles) member spread above ``max_spread``."""
    flag = ((np.atleast_2d(upper) - np.atleast_2d(lower)) > max_width).any(axis=1)
    if spread is not None and max_spread is not None:
        flag |= (np.atleast_2d(spread) > max_spread).any(axis=1)
    return flag
