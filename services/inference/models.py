"""What the engine serves: a loaded model version behind one small interface, and where models come from.

A :class:`ServedModel` turns texts into per-dimension raw/calibrated scores with conformal intervals.
A model that can share its expensive part with other filters' models (the same encoder, the same ``multi``
trunk) is also a :class:`SharedModel`: the engine runs ``forward`` once per batch for every filter whose
model has the same ``share_key``, then each model's ``finish`` takes its own columns and calibration.
A :class:`ModelSource` says which version is promoted for each (filter, role) and loads it; roles are
``primary`` (the filter's promoted student) and ``cheap`` (the first stage of a cascade, when one is
promoted). :class:`RegistrySource` is the production source (distillery.registry); tests may pass any
object with the same two methods.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from distillery.filters import FilterSpec

PRIMARY, CHEAP = "primary", "cheap"
ROLES = (PRIMARY, CHEAP)


@dataclass
class Prediction:
    """Scores for a batch, each ``(n, n_dims)`` in the filter's dimension order."""

    raw: np.ndarray
    calibrated: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    preprocess_seconds: float = 0.0
    inference_seconds: float = 0.0
    # Ensemble students: the members' standard deviation of the raw score, (n, n_dims); None for one model.
    spread: np.ndarray | None = None
    # Expected mean absolute error per row (n,) and the error model that gave it (distillery.uncertainty);
    # None for models registered without one: the engine then flags by interval width.
    expected_error: np.ndarray | None = None
    error_model: Any = None

    @classmethod
    def from_tuple(cls, values: Sequence[np.ndarray], **timings: float) -> Prediction:
        """From ``(raw, calibrated, lower, upper)`` or ``(raw, calibrated, lower, upper, spread)``."""
        arrays = [np.atleast_2d(np.asarray(v, dtype=np.float64)) for v in values]
        raw, calibrated, lower, upper = arrays[:4]
        return cls(raw, calibrated, lower, upper, spread=arrays[4] if len(arrays) > 4 else None, **timings)

    def rows(self) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
        return [(self.raw[i], self.calibrated[i], self.lower[i], self.upper[i]) for i in range(len(self.raw))]


@runtime_checkable
class ServedModel(Protocol):
    """One loaded model version; ``predict`` is called from one batcher thread at a time."""

    version: str
    kind: str
    dimensions: list[str]
    # Optional attribute ``reference``: the version's training reference distribution
    # ({"bands": [...], "shares": {dimension|"overall": {band: share}}}) or None; read with reference_of().

    def predict(self, texts: Sequence[str]) -> Prediction: ...

    def cost(self, text: str) -> int:
        """Estimated tokens of ``text`` as this model sees it (for token-budget batching)."""
        ...


@dataclass
class SharedOutput:
    """What one shared forward pass produced for a batch (embeddings, say), with its timings.

    ``memo`` lets models of one batch reuse work past the shared part (the views of one ``multi`` model
    run its trunk once); it lives as long as the batch.
    """

    value: Any
    preprocess_seconds: float = 0.0
    inference_seconds: float = 0.0
    memo: dict = field(default_factory=dict)


@runtime_checkable
class SharedModel(Protocol):
    """A ServedModel whose expensive part is shared with every model of equal ``share_key``.

    ``share_key`` is None when this model shares nothing (it is then served with ``predict``);
    ``share_label`` names the shared part in logs and metrics (bounded: an encoder, a multi model).
    """

    share_key: Hashable | None
    share_label: str

    def forward(self, texts: Sequence[str]) -> SharedOutput:
        """The shared part for the batch's texts; any model of the same key gives the same output."""
        ...

    def finish(self, shared: SharedOutput, rows: Sequence[int]) -> Prediction:
        """This model's scores for ``rows`` of the batch, from ``shared``."""
        ...


def share_key_of(model: object) -> Hashable | None:
    return getattr(model, "share_key", None) if isinstance(model, SharedModel) else None


@dataclass(frozen=True)
class ModelRef:
    """A promoted version of one role of one filter, as a source reports it."""

    filter_name: str
    role: str
    version: str
    kind: str = ""
    extra: dict = field(default_factory=dict, compare=False, hash=False)


class ModelSource(Protocol):
    def promoted(self, spec: FilterSpec) -> dict[str, ModelRef]:
        """The promoted refs of ``spec`` by role (empty: nothing promoted)."""
        ...

    def load(self, spec: FilterSpec, ref: ModelRef) -> ServedModel: ...


def reference_of(model: object) -> dict | None:
    """A served model's training reference distribution (see distillery.registry), or None without one."""
    reference = getattr(model, "reference", None)
    if reference is None:
        loaded = getattr(model, "loaded", None)
        reference = getattr(loaded, "reference", None)
    return reference if isinstance(reference, dict) and isinstance(reference.get("shares"), dict) else None


def estimate_tokens(text: str, max_tokens: int) -> int:
    """~4 characters per word-piece token for English news, capped at the model's window."""
    return max(1, min(max_tokens, len(text) // 4 + 2))


def student_text(title: str, text: str) -> str:
    """The text a student sees: exactly what the trainer composes (one implementation)."""
    from distillery.students.manifest import compose_text

    return compose_text(title, text)
