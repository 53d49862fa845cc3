"""Per-dimension isotonic calibration and split-conformal prediction intervals.

Both are fitted on the validation split and applied to anything else (report them on the test split
only: in-sample gains are not gains). The monotone map of each dimension is one of:

- ``median``: isotonic regression under absolute error (pool-adjacent-violators with block medians). The
  project's headline error is MAE, whose best constant is a median: oracle scores are skewed and mostly
  whole numbers, and mapping predictions to the conditional median cut the sustainability lexical
  student's test MAE from 0.673 (``mean``) to 0.610.
- ``mean``: isotonic regression under squared error (sklearn), the conditional mean.
- ``identity``: the raw prediction, clamped to 0-10.
- ``whole``: the raw prediction rounded to the nearest whole score. Only for students whose raw output is the
  median of a predicted score distribution, interpolated within whole-score classes (the ``stack`` student's
  ``distribution`` meta-model): rounding gives back the distribution's own median, the MAE-optimal point, while
  the continuous raw value stays the intervals' centre. Offered to ``auto`` only by such students (their
  ``calibration_maps``): on a plain regression output CV chose it for noise and lost on test.

``auto`` (the default) picks one per dimension by 5-fold cross-validated MAE on the validation points
themselves, among the student's candidate maps (``maps``), so a student trained for the median already (e.g.
an absolute-error booster) keeps its output.
 Intervals are Mondrian split-conformal: the absolute residuals of
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

from distillery.uncertainty import ErrorModel

MIN_SCORE, MAX_SCORE = 0.0, 10.0
METHODS = ("auto", "median", "mean", "identity", "whole")
DEFAULT_MAPS = ("median", "mean", "identity")  # what ``auto`` chooses from unless the student offers more
CV_FOLDS = 5
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
    # The intervals' centre map (empty: the point map). A median map puts predictions on the whole numbers the
    # oracle mostly gives, so its residuals are whole numbers too and their 90% quantile over-covers (~95%);
    # intervals are centred on the continuous mean map instead (and widened to contain the point).
    center_x: list[float] = field(default_factory=list)
    center_y: list[float] = field(default_factory=list)
    whole: bool = False  # the ``whole`` map: round to the nearest whole score (no knots)

    def calibrate(self, raw: np.ndarray) -> np.ndarray:
        raw = np.asarray(raw, dtype=np.float64)
        if self.whole:
            return np.clip(np.rint(raw), MIN_SCORE, MAX_SCORE)
        if self.x:
            return np.interp(raw, self.x, self.y)
        return np.clip(raw, MIN_SCORE, MAX_SCORE)

    def center(self, raw: np.ndarray, calibrated: np.ndarray) -> np.ndarray:
        if self.center_x:
            return np.interp(np.asarray(raw, dtype=np.float64), self.center_x, self.center_y)
        return calibrated

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
        # the expected-error model behind the `uncertain` flag (distillery.uncertainty); None: not fitted
        self.error_model: ErrorModel | None = None

    @property
    def dimensions(self) -> list[str]:
        return [d.name for d in self.dims]

    # -- fit -----------------------------------------------------------------------------------------
    @classmethod
    def fit(cls, raw: np.ndarray, targets: np.ndarray, dimensions: Sequence[str], coverage: float = 0.9,
            isotonic: bool = True, band_edges: Sequence[float] = DEFAULT_BAND_EDGES,
            min_band_points: int = 30, method: str = "auto", seed: int = 0,
            maps: Sequence[str] = DEFAULT_MAPS) -> Calibration:
        """Fit on held-out (validation) predictions ``raw`` and oracle ``targets``, both (n, n_dims).

        ``method`` is the monotone map (module docstring); ``isotonic=False`` is ``method="identity"``.
        ``maps`` are the candidates of ``auto`` (a student's ``calibration_maps``).
        """
        if method not in METHODS:
            raise ValueError(f"calibration method must be one of {', '.join(METHODS)}, got {method!r}")
        unknown = [m for m in maps if m not in METHODS or m == "auto"]
        if unknown or not maps:
            raise ValueError(f"calibration maps must be a non-empty list of {', '.join(METHODS[1:])}, got {list(maps)}")
        if not isotonic:
            method = "identity"
        raw = np.atleast_2d(np.asarray(raw, dtype=np.float64))
        targets = np.atleast_2d(np.asarray(targets, dtype=np.float64))
        if raw.shape != targets.shape or raw.shape[1] != len(dimensions):
            raise ValueError(f"raw {raw.shape} and targets {targets.shape} must both be (n, {len(dimensions)})")
        if not 0.5 <= coverage < 1.0:
            raise ValueError(f"coverage must be in [0.5, 1), got {coverage}")
        # one part per dimension (its cross-validated choice of map); spread over Ray inside a training job
        from distillery import parallel

        settings = (method, float(coverage), [float(e) for e in band_edges], int(min_band_points), int(seed),
                    tuple(maps))
        fitted = parallel.current().map(fit_dimension, [(name, raw[:, j], targets[:, j], settings)
                                                        for j, name in enumerate(dimensions)], stage="calibration")
        dims = [dim for dim, _ in fitted]
        chosen = [kind for _, kind in fitted]
        return cls(dims, coverage, {"fitted_on": len(raw), "isotonic": bool(isotonic), "method": method,
                                    "maps": chosen, "min_band_points": int(min_band_points)})

    # -- apply ---------------------------------------------------------------------------------------
    def apply(self, raw: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Calibrated scores and interval bounds, each (n, n_dims), all within 0-10."""
        raw = np.atleast_2d(np.asarray(raw, dtype=np.float64))
        if raw.shape[1] != len(self.dims):
            raise ValueError(f"expected {len(self.dims)} columns, got {raw.shape[1]}")
        cal = np.empty_like(raw)
        lower = np.empty_like(raw)
        upper = np.empty_like(raw)
        for j, dim in enumerate(self.dims):
            cal[:, j] = dim.calibrate(raw[:, j])
            center = dim.center(raw[:, j], cal[:, j])
            half = dim.half_width(center)
            lower[:, j] = np.minimum(center - half, cal[:, j])  # the point is always inside its interval
            upper[:, j] = np.maximum(center + half, cal[:, j])
        return cal, np.clip(lower, MIN_SCORE, MAX_SCORE), np.clip(upper, MIN_SCORE, MAX_SCORE)

    def fit_error_model(self, raw: np.ndarray, targets: np.ndarray, spread: np.ndarray | None = None) -> ErrorModel:
        """Fit (and keep) the expected-error model behind the ``uncertain`` flag on held-out ``raw``/``targets``,
        the same rows this calibration was fitted on (distillery.uncertainty)."""
        calibrated, lower, upper = self.apply(raw)
        self.error_model = ErrorModel.fit(raw, calibrated, lower, upper, targets, spread)
        return self.error_model

    def expected_error(self, raw: np.ndarray, lower: np.ndarray, upper: np.ndarray,
                       spread: np.ndarray | None = None) -> np.ndarray | None:
        """Each row's expected mean absolute error, or None for a calibration without an error model."""
        if self.error_model is None:
            return None
        return self.error_model.expected_error(raw, lower, upper, spread)

    def intervals_for(self, raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Intervals around the raw (uncalibrated, clamped) prediction, for comparisons."""
        raw = np.clip(np.atleast_2d(raw), MIN_SCORE, MAX_SCORE)
        half = np.stack([dim.half_width(raw[:, j]) for j, dim in enumerate(self.dims)], axis=1)
        return np.clip(raw - half, MIN_SCORE, MAX_SCORE), np.clip(raw + half, MIN_SCORE, MAX_SCORE)

    # -- io ------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        document = {
            "schema": CALIBRATION_SCHEMA,
            "coverage": self.coverage,
            "info": self.info,
            "dimensions": [dict(d.__dict__) for d in self.dims],  # copies: callers may edit the document
        }
        if self.error_model is not None:
            document["error_model"] = self.error_model.to_dict()
        return document

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibration:
        try:
            dims = [DimensionCalibration(**d) for d in data["dimensions"]]
            calibration = cls(dims, float(data.get("coverage", 0.9)), data.get("info"))
            if data.get("error_model"):
                calibration.error_model = ErrorModel.from_dict(data["error_model"])
            return calibration
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


def fit_dimension(name: str, raw: np.ndarray, targets: np.ndarray,
                  settings: tuple) -> tuple[DimensionCalibration, str]:
    """One dimension's map and conformal bands (one part); returns it and the map it chose."""
    method, coverage, band_edges, min_band_points, seed, maps = settings
    dim = DimensionCalibration(name=name, band_edges=list(band_edges))
    kind = method
    if len(raw) < 20 or np.ptp(raw) == 0:
        kind = "whole" if method == "whole" or (method == "auto" and "whole" in maps) else "identity"
    elif kind == "auto":
        kind = choose_map(raw, targets, seed=seed, maps=maps)
    dim.x, dim.y = (list(v) for v in fit_map(kind, raw, targets))
    if kind == "median":
        dim.center_x, dim.center_y = (list(v) for v in fit_map("mean", raw, targets))
    if kind == "whole":  # the point is rounded; the continuous raw median is the centre
        dim.whole = True
        dim.center_x, dim.center_y = [MIN_SCORE, MAX_SCORE], [MIN_SCORE, MAX_SCORE]
    center = dim.center(raw, dim.calibrate(raw))
    residuals = np.abs(targets - center)
    dim.global_q = conformal_quantile(residuals, coverage)
    bands = np.digitize(center, dim.band_edges)
    dim.band_q = []
    for b in range(len(dim.band_edges) + 1):
        in_band = residuals[bands == b]
        dim.band_q.append(conformal_quantile(in_band, coverage) if len(in_band) >= min_band_points
                          else dim.global_q)
    return dim, kind


def fit_map(kind: str, raw: np.ndarray, targets: np.ndarray) -> tuple[list[float], list[float]]:
    """Knots ``(x, y)`` of the monotone map ``kind`` (``median``, ``mean``; ``identity`` and ``whole``: no knots)."""
    if kind in ("identity", "whole"):
        return [], []
    if kind == "mean":
        from sklearn.isotonic import IsotonicRegression

        iso = IsotonicRegression(y_min=MIN_SCORE, y_max=MAX_SCORE, out_of_bounds="clip").fit(raw, targets)
        return [float(v) for v in iso.X_thresholds_], [float(v) for v in iso.y_thresholds_]
    if kind == "median":
        return isotonic_median(raw, targets)
    raise ValueError(f"unknown calibration map {kind!r}")


def isotonic_median(raw: np.ndarray, targets: np.ndarray) -> tuple[list[float], list[float]]:
    """Isotonic regression under absolute error: pool adjacent violators, each block at its median.

    Returns the knots (block start and end, both at the block's median) for ``np.interp``. Tied raw
    values form one starting block, so the map is a function.
    """
    raw = np.asarray(raw, dtype=np.float64)
    targets = np.clip(np.asarray(targets, dtype=np.float64), MIN_SCORE, MAX_SCORE)
    order = np.argsort(raw, kind="stable")
    xs, ys = raw[order], targets[order]
    starts = np.flatnonzero(np.r_[True, np.diff(xs) > 0])
    ends = np.r_[starts[1:], len(xs)]
    values: list[np.ndarray] = []  # each block's targets
    medians: list[float] = []
    lo: list[float] = []
    hi: list[float] = []
    for a, b in zip(starts, ends):
        values.append(ys[a:b])
        medians.append(float(np.median(ys[a:b])))
        lo.append(float(xs[a]))
        hi.append(float(xs[b - 1]))
        while len(medians) > 1 and medians[-2] > medians[-1]:
            merged = np.concatenate(values[-2:])
            values[-2:] = [merged]
            medians[-2:] = [float(np.median(merged))]
            lo[-2:] = [lo[-2]]
            hi[-2:] = [hi[-1]]
    x: list[float] = []
    y: list[float] = []
    for a, b, m in zip(lo, hi, medians):
        x.extend((a, b) if b > a else (a,))
        y.extend((m, m) if b > a else (m,))
    return x, y


def choose_map(raw: np.ndarray, targets: np.ndarray, seed: int = 0, folds: int = CV_FOLDS,
               maps: Sequence[str] = DEFAULT_MAPS) -> str:
    """The map among ``maps`` with the lowest cross-validated MAE on these points (ties go to the first)."""
    fold_of = np.random.default_rng(seed).permutation(len(raw)) % folds
    best, best_err = maps[0], np.inf
    for kind in maps:
        err = 0.0
        for f in range(folds):
            train, held = fold_of != f, fold_of == f
            x, y = fit_map(kind, raw[train], targets[train])
            pred = (np.rint(raw[held]) if kind == "whole" else np.interp(raw[held], x, y) if x else raw[held])
            err += float(np.abs(np.clip(pred, MIN_SCORE, MAX_SCORE) - targets[held]).sum())
        if err < best_err - 1e-9:
            best, best_err = kind, err
    return best


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
