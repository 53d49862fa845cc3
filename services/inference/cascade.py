"""Tune a filter's cascade threshold on validation data and measure the speed-up it gives.

A cascade answers with the cheap student unless its overall score is at or above the threshold, in which
case the expensive student answers. The misses the cascade adds are the articles the oracle rates
medium-or-above whose cheap overall stays below the threshold (they never reach the expensive student).
:func:`tune` picks the highest threshold whose miss rate on those articles is at most the target, then
times the cascade and the expensive student alone on the same articles (measured, not estimated).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from distillery.filters import FilterSpec, overall_scores


@dataclass
class CascadeReport:
    filter: str
    threshold: float
    target_fnr: float
    fnr: float
    escalated_share: float
    positives: int
    articles: int
    medium_min: float
    cheap_seconds: float
    expensive_seconds: float
    cascade_seconds: float
    speedup: float
    cheap_version: str
    expensive_version: str
    cascade_mae: float
    expensive_mae: float

    def to_dict(self) -> dict:
        return asdict(self)


def medium_threshold(spec: FilterSpec) -> float:
    """min_overall of the tier named ``medium``, else of the second-lowest tier."""
    for tier in spec.tiers:
        if tier.name == "medium":
            return tier.min_overall
    ordered = sorted(t.min_overall for t in spec.tiers)
    return ordered[1] if len(ordered) > 1 else ordered[0]


def pick_threshold(cheap_overall: np.ndarray, positive: np.ndarray, target_fnr: float) -> tuple[float, float]:
    """The highest threshold whose share of positives below it is <= ``target_fnr``; returns (threshold, fnr)."""
    pos = np.sort(cheap_overall[positive])
    if len(pos) == 0:
        raise ValueError("the validation data has no medium-or-above articles; a threshold cannot be tuned")
    allowed = int(np.floor(target_fnr * len(pos) + 1e-9))  # positives that may stay below the threshold
    threshold = float(pos[allowed]) if allowed < len(pos) else 10.0
    threshold = float(np.floor(threshold * 100) / 100)  # round down: never more misses than allowed
    fnr = float((pos < threshold).mean())
    return threshold, fnr


def _timed(model, texts: Sequence[str]) -> tuple[np.ndarray, float]:
    t0 = time.perf_counter()
    pred = model.predict(list(texts)) if texts else None
    elapsed = time.perf_counter() - t0
    return (pred.calibrated if pred is not None else np.zeros((0, 0))), elapsed


def tune(spec: FilterSpec, cheap, expensive, texts: Sequence[str], targets: np.ndarray,
         target_fnr: float = 0.02) -> CascadeReport:
    """``cheap``/``expensive`` are ServedModels (predict -> Prediction); ``targets`` are oracle scores (n, dims)."""
    if not 0 <= target_fnr < 1:
        raise ValueError(f"target false-negative rate must be in [0, 1), got {target_fnr}")
    if len(texts) != len(targets):
        raise ValueError(f"{len(texts)} texts but {len(targets)} target rows")
    oracle_overall, _ = overall_scores(spec, np.asarray(targets, dtype=np.float64))
    medium = medium_threshold(spec)
    positive = oracle_overall >= medium
    # Warm both models (lazy loads, first-call allocations) so the timings compare steady states.
    cheap.predict(list(texts[:8]))
    expensive.predict(list(texts[:8]))
    cheap_scores, cheap_s = _timed(cheap, texts)
    cheap_overall, _ = overall_scores(spec, cheap_scores)
    threshold, fnr = pick_threshold(cheap_overall, positive, target_fnr)
    exp_scores, exp_s = _timed(expensive, texts)
    exp_overall, _ = overall_scores(spec, exp_scores)
    escalate = cheap_overall >= threshold
    # The cascade as served: cheap on everything, expensive on the escalated ones (timed again, for real).
    t0 = time.perf_counter()
    c_scores = cheap.predict(list(texts)).calibrated
    c_overall, _ = overall_scores(spec, c_scores)
    idx = np.flatnonzero(c_overall >= threshold)
    final = c_overall.copy()
    if len(idx):
        e_scores = expensive.predict([texts[i] for i in idx]).calibrated
        final[idx], _ = overall_scores(spec, e_scores)
    cascade_s = time.perf_counter() - t0
    return CascadeReport(
        filter=spec.ref, threshold=threshold, target_fnr=target_fnr, fnr=fnr,
        escalated_share=float(escalate.mean()), positives=int(positive.sum()), articles=len(texts),
        medium_min=medium, cheap_seconds=cheap_s, expensive_seconds=exp_s, cascade_seconds=cascade_s,
        speedup=exp_s / cascade_s if cascade_s > 0 else float("inf"),
        cheap_version=getattr(cheap, "version", ""), expensive_version=getattr(expensive, "version", ""),
        cascade_mae=float(np.abs(final - oracle_overall).mean()),
        expensive_mae=float(np.abs(exp_overall - oracle_overall).mean()),
    )
