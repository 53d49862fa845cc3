"""Turn per-dimension scores into what users see: clamped scores, weighted overall, gatekeeper caps, tier.

The one implementation used by the inference service, evaluation and reports; every constant comes from
the filter spec.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from distillery.filters.spec import FilterSpec

MIN_SCORE, MAX_SCORE = 0.0, 10.0


@dataclass(frozen=True)
class Outcome:
    scores: tuple[float, ...]  # clamped, in spec dimension order
    overall: float
    tier: str
    gatekeepers_applied: tuple[str, ...]


def clamp(values: np.ndarray | Sequence[float]) -> np.ndarray:
    return np.clip(np.asarray(values, dtype=np.float64), MIN_SCORE, MAX_SCORE)


def overall_scores(spec: FilterSpec, scores: np.ndarray) -> tuple[np.ndarray, list[tuple[str, ...]]]:
    """Vectorised overall for a ``(n, n_dims)`` array: weighted mean of clamped scores, then gatekeeper caps."""
    scores = clamp(np.atleast_2d(scores))
    if scores.shape[1] != len(spec.dimensions):
        raise ValueError(f"expected {len(spec.dimensions)} scores per row for {spec.ref}, got {scores.shape[1]}")
    overall = scores @ np.asarray(spec.weights)
    applied: list[list[str]] = [[] for _ in range(len(scores))]
    index = {name: i for i, name in enumerate(spec.dimension_names)}
    for gate in spec.gatekeepers:
        below = scores[:, index[gate.dimension]] < gate.threshold
        capped = below & (overall > gate.max_overall)
        overall = np.where(below, np.minimum(overall, gate.max_overall), overall)
        for row in np.flatnonzero(capped):
            applied[row].append(gate.name)
    return np.clip(overall, MIN_SCORE, MAX_SCORE), [tuple(a) for a in applied]


def tier_for(spec: FilterSpec, overall: float) -> str:
    for tier in spec.tiers_descending:
        if overall >= tier.min_overall:
            return tier.name
    return spec.tiers_descending[-1].name


def postprocess(spec: FilterSpec, scores: Sequence[float] | np.ndarray) -> Outcome:
    """Post-process one article's scores (spec dimension order)."""
    clamped = clamp(scores)
    overall, applied = overall_scores(spec, clamped[None, :])
    value = float(overall[0])
    return Outcome(tuple(float(s) for s in clamped), value, tier_for(spec, value), applied[0])
