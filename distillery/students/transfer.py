"""``transfer``: a new filter's student warm-started from related filters' trained students.

A new filter starts with a few hundred labels, while related filters (same stream, overlapping vocabulary and
often overlapping dimensions) already have students trained on thousands. Their predictions on the new filter's
articles are features the new filter can learn from with very few parameters. Two ways, chosen by ``mode``:

- ``prior``: a ridge map from the sources' raw predictions (every source dimension) to each new
  dimension is the prior; the base student (default ``lexical``) learns only the residual, so its shrinkage pulls
  towards the sources' view instead of towards the mean.
- ``features`` (default): the base student is fitted on the labels; a meta-model then combines the base student's
  out-of-fold predictions (``folds`` inner folds) with the sources' predictions, like ``stack``: by default
  (``meta="distribution"``) the stack's distribution heads, whose median is the prediction
  (:mod:`distillery.students.distribution`), else (``meta="ridge"``) a ridge per new dimension.

Source students are frozen: they are the promoted models of the ``--transfer-from`` filters (or the filter
spec's ``student.transfer_from``), attached with :meth:`TransferStudent.set_sources` before ``fit`` and saved
inside this student's folder (``source_00``, ...), so a registered version serves on its own. Serving costs
the base student plus every source. Measured in benchmarks/transfer.py (docs/students.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from distillery.students.base import Student
from distillery.students.distribution import CALIBRATION_MAPS, DistributionHeads
from distillery.students.manifest import load_student, make_student, read_manifest, write_manifest
from distillery.students.params import check_params

MODES = ("prior", "features")
METAS = ("distribution", "ridge")  # the features mode's meta-model
MEMO_LIMIT = 20_000  # source predictions remembered during a fit (prior, then validation texts)
DEFAULTS: dict[str, Any] = {
    "base_kind": "lexical",
    "base_params": {},  # passed to the base student (a JSON object when given as a string)
    "mode": "features",  # better than prior on every real label set measured (docs/students.md#transfer)
    "alpha": 10.0,  # ridge penalty of the prior map / the features meta-model, on standardised inputs
    "folds": 5,  # inner folds of the features mode
    "meta": "distribution",  # features mode: distribution heads (median of a predicted score distribution) or ridge
    "distribution_c": 0.3,  # their inverse L2 strength: a few hundred labels want more than the stack's 1.0
    "seed": 0,
    "sources": [],  # refs of the source filters (documentation: the students themselves are attached)
}


def ridge_fit(X: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Closed-form ridge on standardised columns; returns (mean, scale, coef (p, k), intercept (k,))."""
    mean, scale = X.mean(axis=0), X.std(axis=0)
    scale[scale < 1e-9] = 1.0
    Z = (X - mean) / scale
    y_mean = y.mean(axis=0)
    coef = np.linalg.solve(Z.T @ Z + alpha * np.eye(Z.shape[1]), Z.T @ (y - y_mean))
    return mean, scale, coef, y_mean


def ridge_predict(X: np.ndarray, fitted) -> np.ndarray:
    mean, scale, coef, intercept = fitted
    return ((X - mean) / scale) @ coef + intercept


class TransferStudent(Student):
    kind = "transfer"

    def __init__(self, dimensions: Sequence[str], filter: str = "", **params: Any):
        super().__init__(dimensions)
        self.filter = filter
        if isinstance(params.get("base_params"), str):
            import json

            params["base_params"] = json.loads(params["base_params"] or "{}")
        self.params = check_params("transfer", DEFAULTS, params)
        if self.params["mode"] not in MODES:
            raise ValueError(f"transfer student parameter mode must be one of {', '.join(MODES)}, "
                             f"got {self.params['mode']!r}")
        if self.params["meta"] not in METAS:
            raise ValueError(f"transfer student parameter meta must be one of {', '.join(METAS)}, "
                             f"got {self.params['meta']!r}")
        if self.params["base_kind"] in {"transfer", "multi"}:
            raise ValueError(f"a transfer student's base cannot be {self.params['base_kind']!r}")
        if float(self.params["alpha"]) < 0 or int(self.params["folds"]) < 2:
            raise ValueError("transfer student parameters: alpha must be >= 0 and folds >= 2")
        self.sources: list[Student] = []
        self.base: Student | None = None
        self._map: tuple | None = None  # the prior map or the features ridge meta-model
        self._heads: DistributionHeads | None = None  # the features distribution meta-model
        self._source_memo: dict[str, np.ndarray] = {}  # source predictions during one fit
        self.base_extra: dict[str, Any] = {}  # training-time keyword arguments of the base (an embedding cache)

    # -- sources -------------------------------------------------------------------------------------
    def set_sources(self, students: Sequence[Student], refs: Sequence[str] = ()) -> TransferStudent:
        """Attach the frozen source students (fitted students of related filters)."""
        if not students:
            raise ValueError("a transfer student needs at least one source student")
        self.sources = list(students)
        if refs:
            self.params["sources"] = list(refs)
        return self

    def source_predictions(self, texts: Sequence[str]) -> np.ndarray:
        """Every source's raw predictions side by side, (n, sum of the sources' dimensions)."""
        if not self.sources:
            raise RuntimeError("the transfer student has no source students; attach them with set_sources")
        texts = list(texts)
        missing = list(dict.fromkeys(t for t in texts if t not in self._source_memo))
        if missing:
            rows = np.hstack([np.asarray(s.predict(missing), dtype=np.float64).reshape(len(missing), -1)
                              for s in self.sources])
            self._source_memo.update(zip(missing, rows))
        out = np.stack([self._source_memo[t] for t in texts]) if texts else np.zeros((0, 0))
        if len(self._source_memo) > MEMO_LIMIT:
            self._source_memo.clear()
        return out

    def _new_base(self) -> Student:
        params = dict(self.params["base_params"])
        if self.params["base_kind"] in {"probe", "finetune", "ensemble", "stack"}:
            params.setdefault("seed", int(self.params["seed"]))
        return make_student(self.params["base_kind"], self.dimensions, filter=self.filter, **params,
                            **self.base_extra)

    # -- fit / predict -------------------------------------------------------------------------------
    def fit(self, texts, targets, val_texts=None, val_targets=None) -> TransferStudent:
        try:
            return self._fit(list(texts), targets, val_texts, val_targets)
        finally:
            self._source_memo.clear()  # only a fit predicts the same articles twice

    def _fit(self, texts, targets, val_texts, val_targets) -> TransferStudent:
        y = np.asarray(targets, dtype=np.float64).reshape(len(texts), len(self.dimensions))
        S = self.source_predictions(texts)
        alpha = float(self.params["alpha"])
        if self.params["mode"] == "prior":
            self._map = ridge_fit(S, y, alpha)
            prior = ridge_predict(S, self._map)
            val_resid = None
            if val_texts is not None and val_targets is not None and len(val_texts):
                val_resid = np.asarray(val_targets, dtype=np.float64) - ridge_predict(
                    self.source_predictions(val_texts), self._map)
            self.base = self._new_base().fit(texts, y - prior, val_texts, val_resid)
            return self
        folds = min(int(self.params["folds"]), len(texts))
        fold_of = np.random.default_rng(int(self.params["seed"])).permutation(len(texts)) % folds
        oof = np.zeros_like(y)
        for k in range(folds):
            train, held = np.flatnonzero(fold_of != k), np.flatnonzero(fold_of == k)
            inner = self._new_base().fit([texts[i] for i in train], y[train])
            oof[held] = inner.predict([texts[i] for i in held])
        X = np.hstack([oof, S])
        if self.params["meta"] == "distribution":
            self._heads = DistributionHeads.fit(X, y, float(self.params["distribution_c"]))
        else:
            self._map = ridge_fit(X, y, alpha)
        self.base = self._new_base().fit(texts, y, val_texts, val_targets)
        return self

    @property
    def calibration_maps(self) -> tuple[str, ...]:
        distribution = self.params["mode"] == "features" and self.params["meta"] == "distribution"
        return CALIBRATION_MAPS if distribution else Student.calibration_maps

    def _fitted(self) -> bool:
        return self.base is not None and (self._map is not None or self._heads is not None)

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        if not self._fitted():
            raise RuntimeError("transfer student is not fitted")
        texts = list(texts)
        if not texts:
            return np.zeros((0, len(self.dimensions)))
        S = self.source_predictions(texts)
        base = np.asarray(self.base.predict(texts), dtype=np.float64)
        if self.params["mode"] == "prior":
            return ridge_predict(S, self._map) + base
        if self._heads is not None:
            return self._heads.predict(np.hstack([base, S]))
        return ridge_predict(np.hstack([base, S]), self._map)

    # -- io ------------------------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        if not self._fitted():
            raise RuntimeError("transfer student is not fitted")
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.base.save(path / "base")
        for i, source in enumerate(self.sources):
            source.save(path / f"source_{i:02d}")
        if self._heads is not None:
            np.savez_compressed(path / "heads.npz", **self._heads.arrays())
        else:
            mean, scale, coef, intercept = self._map
            np.savez_compressed(path / "map.npz", mean=mean, scale=scale, coef=coef, intercept=intercept)
        write_manifest(path, self, {"n_sources": len(self.sources)})

    @classmethod
    def load(cls, path: Path) -> TransferStudent:
        path = Path(path)
        manifest = read_manifest(path)
        student = cls(manifest["dimensions"], filter=manifest.get("filter", ""), **manifest.get("params", {}))
        student.base = load_student(path / "base")
        student.sources = [load_student(path / f"source_{i:02d}") for i in range(int(manifest["n_sources"]))]
        if (path / "heads.npz").exists():
            with np.load(path / "heads.npz") as data:
                student._heads = DistributionHeads.from_arrays(data, len(student.dimensions))
        else:
            with np.load(path / "map.npz") as data:
                student._map = (data["mean"], data["scale"], data["coef"], data["intercept"])
        return student
