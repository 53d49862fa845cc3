"""The one interface every student implements (setfit-style: fit, predict, save, load).

Students live in the core package because both the trainer (fit, save) and the inference service
(load, predict) use them; heavy dependencies (torch, transformers) are imported lazily by the kinds
that need them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from distillery.calibration import DEFAULT_MAPS


class Student(ABC):
    """Predicts one 0-10 score per dimension of one filter (or of several, for ``multi``)."""

    kind: str = ""
    # the monotone maps calibration may choose from for this student's raw output (distillery.calibration)
    calibration_maps: tuple[str, ...] = DEFAULT_MAPS

    def __init__(self, dimensions: Sequence[str]):
        self.dimensions = list(dimensions)

    @abstractmethod
    def fit(self, texts: Sequence[str], targets: np.ndarray, val_texts: Sequence[str] | None = None,
            val_targets: np.ndarray | None = None) -> Student:
        """Train on ``texts`` with ``targets`` of shape (n, n_dims); return self."""

    @abstractmethod
    def predict(self, texts: Sequence[str]) -> np.ndarray:
        """Raw scores, shape (n, n_dims), in ``self.dimensions`` order (not clamped, not calibrated)."""

    @abstractmethod
    def save(self, path: Path) -> None:
        """Write everything needed to predict into the folder ``path``."""

    @classmethod
    @abstractmethod
    def load(cls, path: Path) -> Student:
        """Read a student written by :meth:`save`."""
