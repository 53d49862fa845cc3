"""Live student-vs-oracle accuracy from audit labels.

When the Kafka stage sends an (article, filter) to ``oracle.requests`` (reason AUDIT or UNCERTAIN) it
remembers what it predicted — calibrated scores, conformal interval bounds, model version — in a
:class:`PredictionStore`. :class:`~distillery_services.inference.audit_consumer.AuditConsumer` (the Kafka
edge) reads ``oracle.labels`` and hands each label, as a :class:`distillery.labels.OracleLabel`, to
:class:`AuditMatcher`, which pairs it with the stored prediction and updates the metrics:

- ``distillery_inference_audit_abs_error`` (histogram; filter, dimension, reason): |student - oracle|;
- ``distillery_inference_audit_mae`` (gauge; filter, dimension): mean of the last ``window`` AUDIT errors
  (UNCERTAIN labels are a biased sample — the hard cases — so they only feed the histogram, reason
  ``uncertain``);
- ``distillery_inference_audit_interval_total`` (filter, dimension, covered): did the oracle's score fall
  inside the conformal interval (AUDIT labels only: the nominal coverage holds on a random sample);
- ``distillery_inference_target_mae`` (gauge; filter): the spec's ``student.target_mae``;
- ``distillery_inference_audit_matched_total`` / ``_unmatched_total`` (filter, reason).

Store choice: the store is in memory (an LRU bounded by ``audit_store_max`` entries and
``audit_store_ttl_seconds``), not persisted. A restart loses the predictions still waiting for a label;
their labels then count as unmatched. Audits are a statistical sample, so losing a few around a restart
does not bias the MAE, and an in-memory dict costs nothing on the scoring path.

Replicas: each process reads ``oracle.labels`` in a consumer group of its own (every replica sees every
label, starting from the newest when it starts) and matches the labels of its own predictions; with N
replicas, about (N-1)/N of the labels are another replica's and count as unmatched on this one. Compare
``sum(matched)`` with ``sum(oracle_requests_total{reason=~"audit|uncertain"})`` across replicas instead.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
from distillery_services.inference import metrics

from distillery.labels import LabelReason, OracleLabel

logger = logging.getLogger(__name__)

AUDIT = "audit"
UNCERTAIN = "uncertain"
_REASONS = {LabelReason.AUDIT: AUDIT, LabelReason.UNCERTAIN: UNCERTAIN}


def reason_name(reason: int) -> str | None:
    """``"audit"`` / ``"uncertain"`` for the label reasons this module tracks, else None."""
    return _REASONS.get(reason)


@dataclass(frozen=True)
class Prediction:
    """What the student said about one (article, filter) when it was sent to the oracle."""

    filter_name: str
    filter_version: int
    dimensions: tuple[str, ...]
    calibrated: tuple[float, ...]
    lower: tuple[float, ...]
    upper: tuple[float, ...]
    model_version: str
    reason: str
    stored_at: float

    @classmethod
    def of(cls, result, reason: str, now: float) -> Prediction:
        """From an engine ``FilterResult``."""
        return cls(result.filter_name, int(result.filter_version), tuple(result.dimensions),
                   tuple(float(x) for x in np.asarray(result.calibrated, dtype=float)),
                   tuple(float(x) for x in np.asarray(result.lower, dtype=float)),
                   tuple(float(x) for x in np.asarray(result.upper, dtype=float)),
                   result.model_version, reason, now)


class PredictionStore:
    """Thread-safe LRU of predictions keyed by ``(article id, filter)``, bounded by size and age."""

    def __init__(self, max_size: int, ttl_seconds: float, clock: Callable[[], float] = time.monotonic):
        if max_size < 1:
            raise ValueError(f"max_size must be >= 1, got {max_size}")
        if ttl_seconds <= 0:
            raise ValueError(f"ttl_seconds must be > 0, got {ttl_seconds}")
        self.max_size = max_size
        self.ttl = float(ttl_seconds)
        self.clock = clock
        self._items: OrderedDict[tuple[str, str], Prediction] = OrderedDict()
        self._lock = threading.Lock()
        self.evicted = 0
        self.expired = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def _expire(self, now: float) -> None:
        while self._items:
            key, oldest = next(iter(self._items.items()))
            if now - oldest.stored_at < self.ttl:
                break
            del self._items[key]
            self.expired += 1

    def put(self, article_id: str, prediction: Prediction) -> None:
        key = (article_id, prediction.filter_name)
        with self._lock:
            self._items.pop(key, None)  # a redelivered article replaces (and refreshes) its entry
            self._items[key] = prediction
            self._expire(self.clock())
            while len(self._items) > self.max_size:
                self._items.popitem(last=False)
                self.evicted += 1

    def remember(self, article_id: str, result, reason: str) -> Prediction:
        prediction = Prediction.of(result, reason, self.clock())
        self.put(article_id, prediction)
        return prediction

    def pop(self, article_id: str, filter_name: str) -> Prediction | None:
        """The prediction of (article, filter), removed from the store; None when unknown or expired."""
        with self._lock:
            self._expire(self.clock())
            return self._items.pop((article_id, filter_name), None)


class SlidingMae:
    """Mean of the last ``window`` absolute errors per (filter, dimension)."""

    def __init__(self, window: int):
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.window = window
        self._errors: dict[tuple[str, str], deque[float]] = {}
        self._sums: dict[tuple[str, str], float] = {}

    def add(self, filter_name: str, dimension: str, error: float) -> float:
        key = (filter_name, dimension)
        errors = self._errors.setdefault(key, deque())
        errors.append(float(error))
        if len(errors) > self.window:
            errors.popleft()
        # Re-summing a bounded window avoids floating-point drift of a running sum.
        value = math.fsum(errors) / len(errors)
        self._sums[key] = value
        return value

    def mae(self, filter_name: str, dimension: str) -> float | None:
        return self._sums.get((filter_name, dimension))

    def count(self, filter_name: str, dimension: str) -> int:
        return len(self._errors.get((filter_name, dimension), ()))


@dataclass(frozen=True)
class MatchOutcome:
    """What one label did: ``matched``, ``unmatched`` or ``ignored`` (a reason this module does not track)."""

    status: str
    reason: str | None = None
    errors: Mapping[str, float] | None = None


class AuditMatcher:
    """Pairs oracle labels with stored predictions and updates the audit metrics."""

    def __init__(self, store: PredictionStore, window: int):
        self.store = store
        self.mae = SlidingMae(window)
        self._lock = threading.Lock()
        metrics.AUDIT_PENDING.set_function(lambda: len(self.store))

    def set_targets(self, targets: Mapping[str, float]) -> None:
        """Export each filter's ``student.target_mae`` (the alert threshold)."""
        for name, target in targets.items():
            metrics.TARGET_MAE.labels(name).set(float(target))

    def observe(self, label: OracleLabel) -> MatchOutcome:
        reason = reason_name(label.reason)
        if reason is None:
            return MatchOutcome("ignored")
        filter_name = label.filter.name
        prediction = self.store.pop(label.article_id, filter_name)
        if prediction is None:
            metrics.AUDIT_UNMATCHED.labels(filter_name, reason).inc()
            return MatchOutcome("unmatched", reason)
        oracle_scores = {d.name: float(d.score) for d in label.dimensions}
        errors: dict[str, float] = {}
        with self._lock:
            for i, dimension in enumerate(prediction.dimensions):
                if dimension not in oracle_scores:
                    continue
                truth = oracle_scores[dimension]
                error = abs(prediction.calibrated[i] - truth)
                errors[dimension] = error
                metrics.AUDIT_ABS_ERROR.labels(filter_name, dimension, reason).observe(error)
                if reason == AUDIT:
                    metrics.AUDIT_MAE.labels(filter_name, dimension).set(
                        self.mae.add(filter_name, dimension, error))
                    covered = prediction.lower[i] <= truth <= prediction.upper[i]
                    metrics.AUDIT_INTERVAL.labels(filter_name, dimension, "true" if covered else "false").inc()
        metrics.AUDIT_MATCHED.labels(filter_name, reason).inc()
        return MatchOutcome("matched", reason, errors)
