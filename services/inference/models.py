"""What the engine serves: a loaded model version behind one small interface, and where models come from.

A :class:`ServedModel` turns texts into per-dimension raw/calibrated scores with conformal intervals.
A :class:`ModelSource` says which version is promoted for each (filter, role) and loads it; roles are
``primary`` (the filter's promoted student) and ``cheap`` (the first stage of a cascade, when one is
promoted). :class:`RegistrySource` is the production source (distillery.registry); tests may pass any
object with the same two methods.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

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

    @classmethod
    def from_tuple(cls, values: Sequence[np.ndarray], **timings: float) -> Prediction:
        raw, calibrated, lower, upper = (np.atleast_2d(np.asarray(v, dtype=np.float64)) for v in values)
        return cls(raw, calibrated, lower, upper, **timings)

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
