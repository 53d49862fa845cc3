"""``probe``: frozen encoder embeddings (default all-MiniLM-L6-v2, offline) + a small regression head.

Embeddings are cached by content hash (see :mod:`distillery.students.encoder`); texts are cut head+tail
to the token budget. The head is an MLP (default) or a ridge regression, trained on targets scaled to
0-1 and chosen by validation MAE when validation data is given.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from distillery import parallel
from distillery.students.base import Student
from distillery.students.manifest import read_manifest, write_manifest
from distillery.students.params import check_params

DEFAULTS: dict[str, Any] = {
    "encoder": "all-MiniLM-L6-v2",
    "head_tokens": 128,
    "tail_tokens": 128,
    "head": "auto",  # auto | mlp | ridge (auto: the better on validation; ridge when there is none and n < 1000)
    "hidden": [256],
    "l2": 1e-3,  # MLP weight decay
    "alphas": [0.1, 0.3, 1.0, 3.0, 10.0],  # ridge head candidates
    "max_iter": 400,
    "seed": 0,
    "batch_size": 32,
    "bf16": False,
    # where the encoder pass runs (distillery.students.encoder_runtime): torch, onnx, openvino, or auto (the
    # fastest unquantised runtime here: torch on CUDA, else OpenVINO, bf16 on CPUs that have it). auto is within
    # the 0.02 score drift gate of torch fp32 (OpenVINO bf16: 0.004 on real articles) at ~55% of its CPU time.
    "runtime": "auto",
    "int8": False,  # ONNX Runtime int8 (runtime onnx): kept only if a sample passes the 0.02 drift gate
}
EMBED_CACHE_ENV = "DISTILLERY_EMBED_CACHE"


class ProbeStudent(Student):
    kind = "probe"

    def __init__(self, dimensions: Sequence[str], filter: str = "", cache_dir: Path | str | None = None,
                 **params: Any):
        super().__init__(dimensions)
        self.filter = filter
        self.params = check_params("probe", DEFAULTS, params)
        if self.params["head"] not in {"auto", "mlp", "ridge"}:
            raise ValueError(f"probe head must be 'auto', 'mlp' or 'ridge', got {self.params['head']!r}")
        self.cache_dir = cache_dir or os.environ.get(EMBED_CACHE_ENV) or None
        self._head = None
        self._encoder = None

    @property
    def encoder(self):
        if self._encoder is None:
            from distillery.students.encoder import shared_encoder

            p = self.params
            self._encoder = shared_encoder(p["encoder"], p["head_tokens"], p["tail_tokens"], self.cache_dir,
                                           batch_size=int(p["batch_size"]), bf16=bool(p["bf16"]),
                                           runtime=p["runtime"], int8=p["int8"])
        return self._encoder

    def embed(self, texts: Sequence[str], progress=None) -> np.ndarray:
        return self.encoder.encode(list(texts), progress)

    def embed_for_training(self, texts: Sequence[str], y: np.ndarray, val_texts: Sequence[str] | None = None,
                           progress=None) -> tuple[np.ndarray, np.ndarray | None]:
        """One encoder pass over training and validation texts. An int8 encoder is kept only within the drift
        gate; otherwise this student switches to the unquantised encoder (and records it in its parameters,
        so that it predicts with what it was trained on)."""
        from distillery.students.encoder import embed_gated

        X, Xv, used = embed_gated(self.encoder, texts, y, val_texts, progress)
        if used is not self._encoder:
            self._encoder = used
            self.params["int8"] = False
        self.params["runtime"] = used.backend  # "auto" resolved: this machine's choice, kept with the model
        return X, Xv

    def _make_heads(self, n: int, has_val: bool):
        """Candidate heads. An MLP needs data: on a few hundred labels (a cold start) ridge is the safer
        head, so ``auto`` lets validation decide, and picks ridge without validation on small sets."""
        from sklearn.linear_model import Ridge
        from sklearn.neural_network import MLPRegressor

        p = self.params
        ridges = [Ridge(alpha=float(a)) for a in p["alphas"]]
        mlp = MLPRegressor(hidden_layer_sizes=tuple(int(h) for h in p["hidden"]), alpha=float(p["l2"]),
                           learning_rate_init=1e-3, max_iter=int(p["max_iter"]), early_stopping=True,
                           validation_fraction=0.1, n_iter_no_change=20, random_state=int(p["seed"]))
        if p["head"] == "ridge":
            return ridges
        if p["head"] == "mlp":
            return [mlp]
        if has_val:
            return ridges + [mlp]
        return [Ridge(alpha=1.0)] if n < 1000 else [mlp]

    def fit_embeddings(self, X: np.ndarray, y: np.ndarray, Xv: np.ndarray | None = None,
                       yv: np.ndarray | None = None) -> ProbeStudent:
        y = np.asarray(y, dtype=np.float64)
        if y.ndim != 2 or y.shape != (len(X), len(self.dimensions)):
            raise ValueError(f"targets must have shape ({len(X)}, {len(self.dimensions)}), got {y.shape}")
        heads = self._make_heads(len(X), Xv is not None and yv is not None and len(Xv) > 0)
        if Xv is None or len(heads) == 1:
            self._head = heads[0].fit(X, y / 10.0)
            return self
        runner = parallel.current()  # candidate heads are independent parts (spread over Ray in a job)
        shared_X, shared_y = runner.share(X), runner.share(y / 10.0)
        fitted = runner.map(fit_head, [(head, shared_X, shared_y) for head in heads], stage="probe heads")
        best, best_mae = None, np.inf
        for head in fitted:
            mae = np.abs(self._out(head, Xv) - yv).mean()
            if mae < best_mae:
                best, best_mae = head, mae
        self._head = best
        return self

    @staticmethod
    def _out(head, X: np.ndarray) -> np.ndarray:
        pred = np.asarray(head.predict(X), dtype=np.float64)
        return (pred.reshape(len(X), -1)) * 10.0

    def fit(self, texts, targets, val_texts=None, val_targets=None, progress=None) -> ProbeStudent:
        X, Xv = self.embed_for_training(texts, np.asarray(targets), val_texts, progress)
        yv = np.asarray(val_targets, dtype=np.float64) if Xv is not None else None
        return self.fit_embeddings(X, np.asarray(targets), Xv, yv)

    def predict_embeddings(self, X: np.ndarray) -> np.ndarray:
        if self._head is None:
            raise RuntimeError("probe student is not fitted")
        return self._out(self._head, X)

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros((0, len(self.dimensions)))
        return self.predict_embeddings(self.embed(texts))

    def save(self, path: Path) -> None:
        import joblib

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        joblib.dump(self._head, path / "head.joblib", compress=3)
        write_manifest(path, self)

    @classmethod
    def load(cls, path: Path) -> ProbeStudent:
        import joblib

        path = Path(path)
        manifest = read_manifest(path)
        student = cls(manifest["dimensions"], filter=manifest.get("filter", ""), **manifest.get("params", {}))
        student._head = joblib.load(path / "head.joblib")
        return student


def fit_head(head, X: np.ndarray, y: np.ndarray):
    """Fit one candidate head (one part); ``y`` is already scaled to 0-1."""
    return head.fit(X, y)
