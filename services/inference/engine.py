"""The scoring engine: served models per filter, dynamic batching, the cascade, post-processing.

It knows nothing of gRPC or Kafka: the servicer and the stage turn its :class:`FilterResult` objects
into protobuf. Models are swapped atomically per (filter, role): a batch holds on to the model it
started with, so a hot reload never fails a request in flight.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field

import numpy as np

from distillery.filters import FilterSpec, UnknownFilterError, overall_scores, tier_for
from distillery.rpc.errors import PreconditionError, UnavailableError
from services.inference import metrics
from services.inference.batcher import BatchInfo, DeadlineExceededError, DynamicBatcher
from services.inference.models import (
    CHEAP,
    PRIMARY,
    ModelRef,
    ModelSource,
    ServedModel,
    reference_of,
    student_text,
)

logger = logging.getLogger(__name__)

STAGE_SINGLE, STAGE_CHEAP, STAGE_EXPENSIVE = "single", "cheap", "expensive"


@dataclass
class FilterResult:
    """One (article, filter) verdict."""

    article_id: str
    filter_name: str
    filter_version: int
    dimensions: list[str]
    raw: np.ndarray
    calibrated: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    overall: float
    tier: str
    gatekeepers_applied: tuple[str, ...]
    uncertain: bool
    model_version: str
    stage: str
    queue_seconds: float = 0.0
    preprocess_seconds: float = 0.0
    inference_seconds: float = 0.0
    total_seconds: float = 0.0


@dataclass(frozen=True)
class BatchLimits:
    max_batch_size: int = 64
    max_batch_tokens: int = 16384
    max_wait_s: float = 0.002
    max_queue: int = 4096


@dataclass
class _Row:
    raw: np.ndarray
    calibrated: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    version: str
    preprocess_seconds: float
    inference_seconds: float
    queue_seconds: float = 0.0


@dataclass
class _MetricChildren:
    overall: object
    uncertain: object
    scores: list


@dataclass
class FilterSlot:
    """Everything served for one filter: its models by role and one batcher per role."""

    spec: FilterSpec
    refs: dict[str, ModelRef] = field(default_factory=dict)
    models: dict[str, ServedModel] = field(default_factory=dict)
    batchers: dict[str, DynamicBatcher] = field(default_factory=dict)

    _children: _MetricChildren | None = None
    # (dimension, band) label pairs of the reference gauge exported for this filter's primary model
    reference_labels: list[tuple[str, str]] = field(default_factory=list)

    def metric_children(self) -> _MetricChildren:
        """Labelled metric children of this filter, looked up once (labels() per value is slow)."""
        if self._children is None:
            name = self.spec.name
            self._children = _MetricChildren(
                overall=metrics.OVERALL.labels(name), uncertain=metrics.UNCERTAIN.labels(name),
                scores=[metrics.SCORES.labels(name, d) for d in self.spec.dimension_names])
        return self._children

    @property
    def cascade_active(self) -> bool:
        return (self.spec.student.cascade_threshold is not None and CHEAP in self.models
                and PRIMARY in self.models)


class ScoringEngine:
    """Scores articles for filters with the promoted models of ``source``."""

    def __init__(self, specs: Iterable[FilterSpec], source: ModelSource, limits: BatchLimits = BatchLimits(),
                 cascade: bool = True):
        self.source = source
        self.limits = limits
        self.cascade = cascade
        self.slots: dict[str, FilterSlot] = {s.name: FilterSlot(s) for s in specs}
        self._reload_lock = threading.Lock()
        self._closed = False

    # -- model lifecycle -------------------------------------------------------------------------------
    def refresh(self, only: str | None = None) -> list[tuple[str, str, str]]:
        """Load newly promoted versions; return ``(filter, role, version)`` for each swap made.

        A version that fails to load is logged and counted; the old one keeps serving.
        """
        changes = []
        with self._reload_lock:
            for name, slot in self.slots.items():
                if only and name != only:
                    continue
                try:
                    refs = self.source.promoted(slot.spec)
                except Exception:
                    logger.exception("registry lookup failed", extra={"fields": {"filter": name}})
                    metrics.RELOADS.labels(name, "error").inc()
                    continue
                for role, ref in refs.items():
                    current = slot.refs.get(role)
                    if current is not None and current.version == ref.version:
                        continue
                    try:
                        model = self.source.load(slot.spec, ref)
                        if list(model.dimensions) != slot.spec.dimension_names:
                            raise ValueError(
                                f"model {ref.version} predicts {model.dimensions}, "
                                f"the spec {slot.spec.ref} has {slot.spec.dimension_names}"
                            )
                    except Exception:
                        logger.exception("model load failed",
                                         extra={"fields": {"filter": name, "role": role, "version": ref.version}})
                        metrics.RELOADS.labels(name, "error").inc()
                        continue
                    self._install(slot, role, ref, model)
                    changes.append((name, role, ref.version))
                    metrics.RELOADS.labels(name, "ok").inc()
                    logger.info("model loaded", extra={"fields": {
                        "filter": name, "role": role, "version": ref.version,
                        "previous": current.version if current else None}})
        return changes

    def _install(self, slot: FilterSlot, role: str, ref: ModelRef, model: ServedModel) -> None:
        if role not in slot.batchers:
            slot.batchers[role] = DynamicBatcher(
                f"{slot.spec.name}/{role}",
                self._processor(slot, role),
                max_batch_size=self.limits.max_batch_size,
                max_batch_tokens=self.limits.max_batch_tokens,
                max_wait_s=self.limits.max_wait_s,
                max_queue=self.limits.max_queue,
                labels=(slot.spec.name, role),
            )
        # Plain attribute assignment of a new dict: readers see the old or the new mapping, never half.
        slot.models = {**slot.models, role: model}
        slot.refs = {**slot.refs, role: ref}
        metrics.LOADED.labels(slot.spec.name, role).set(1)
        if role == PRIMARY:
            self._export_reference(slot, model)

    @staticmethod
    def _export_reference(slot: FilterSlot, model: ServedModel) -> None:
        """Publish the primary model's training reference shares, replacing the previous version's."""
        name = slot.spec.name
        reference = reference_of(model)
        wanted: dict[tuple[str, str], float] = {}
        if reference is not None:
            for dimension, shares in reference["shares"].items():
                for band, share in shares.items():
                    wanted[(str(dimension), str(band))] = float(share)
        for dimension, band in slot.reference_labels:
            if (dimension, band) not in wanted:
                try:
                    metrics.REFERENCE_SHARE.remove(name, dimension, band)
                except KeyError:
                    pass
        for (dimension, band), share in wanted.items():
            metrics.REFERENCE_SHARE.labels(name, dimension, band).set(share)
        slot.reference_labels = list(wanted)
        if reference is None:
            logger.info("served model has no reference distribution; drift falls back to the 7-day comparison",
                        extra={"fields": {"filter": name, "version": getattr(model, "version", "")}})

    def _processor(self, slot: FilterSlot, role: str):
        name = slot.spec.name

        def process(texts: list[str], info: BatchInfo) -> list[_Row]:
            model = slot.models[role]  # the batch keeps this version even if a reload swaps it meanwhile
            start = time.perf_counter()
            pred = model.predict(texts)
            elapsed = time.perf_counter() - start
            inference = pred.inference_seconds or max(0.0, elapsed - pred.preprocess_seconds)
            metrics.BATCH_SIZE.labels(name, role).observe(info.size)
            metrics.BATCH_TOKENS.labels(name, role).observe(info.tokens)
            metrics.TOKENS.labels(name, role).inc(info.tokens)
            metrics.PHASE_SECONDS.labels("preprocess").observe(pred.preprocess_seconds)
            metrics.PHASE_SECONDS.labels("inference").observe(inference)
            return [
                _Row(pred.raw[i], pred.calibrated[i], pred.lower[i], pred.upper[i], model.version,
                     pred.preprocess_seconds, inference)
                for i in range(len(texts))
            ]

        return process

    def close(self) -> None:
        self._closed = True
        for slot in self.slots.values():
            for batcher in slot.batchers.values():
                batcher.close()

    def served(self) -> dict[str, dict[str, str]]:
        """``{filter: {role: version}}`` of what is loaded now."""
        return {n: {r: ref.version for r, ref in s.refs.items()} for n, s in self.slots.items()}

    # -- requests --------------------------------------------------------------------------------------
    def resolve(self, refs: Sequence[tuple[str, int]]) -> list[FilterSlot]:
        """The slots for requested ``(name, version)`` pairs; empty means every filter with a model."""
        if not refs:
            slots = [s for s in self.slots.values() if PRIMARY in s.models]
            if not slots:
                raise UnavailableError(
                    "no model is promoted for any filter yet; train one and promote it "
                    "(distillery train ... --promote), the service loads it without a restart"
                )
            return slots
        out, seen = [], set()
        for name, version in refs:
            if not name:
                raise ValueError("filters[].name is empty; name a filter such as 'uplifting'")
            slot = self.slots.get(name)
            if slot is None:
                raise UnknownFilterError(
                    f"unknown filter {name!r}; served: {', '.join(sorted(self.slots)) or 'none'}"
                )
            if version and version != slot.spec.version:
                raise UnknownFilterError(
                    f"filter {name}/v{version} is not served; this server serves {slot.spec.ref}"
                )
            if PRIMARY not in slot.models:
                raise PreconditionError(
                    f"no model is promoted for filter {slot.spec.ref}; train and promote one first"
                )
            if name not in seen:
                seen.add(name)
                out.append(slot)
        return out

    def score(self, articles: Sequence, slots: Sequence[FilterSlot],
              deadline: float | None = None) -> list[list[FilterResult]]:
        """Score validated articles (anything with ``id``, ``title``, ``text``) for ``slots``.

        ``deadline`` is a ``time.monotonic()`` instant; past it, DeadlineExceededError is raised and queued
        work is dropped. Returns one list per article, in ``slots`` order.
        """
        if self._closed:
            raise UnavailableError("the scorer is shutting down")
        start = time.monotonic()
        texts = [student_text(a.title, a.text) for a in articles]
        # First pass: every filter's first stage, submitted before waiting so the filters overlap.
        first: list[tuple[FilterSlot, str, str, list]] = []
        for slot in slots:
            cascade = self.cascade and slot.cascade_active
            role = CHEAP if cascade else PRIMARY
            stage = STAGE_CHEAP if cascade else STAGE_SINGLE
            first.append((slot, role, stage, self._submit(slot, role, texts, deadline)))
        per_filter: list[list[FilterResult]] = []
        second: list[tuple[int, list[int], list]] = []
        for k, (slot, role, stage, futures) in enumerate(first):
            rows = self._wait(futures, deadline)
            results = self._finish(slot, articles, rows, stage)
            per_filter.append(results)
            if stage == STAGE_CHEAP:
                threshold = slot.spec.student.cascade_threshold
                escalate = [i for i, r in enumerate(results) if r.overall >= threshold]
                if escalate:
                    second.append((k, escalate, self._submit(slot, PRIMARY, [texts[i] for i in escalate], deadline)))
        for k, indices, futures in second:
            slot = first[k][0]
            rows = self._wait(futures, deadline)
            expensive = self._finish(slot, [articles[i] for i in indices], rows, STAGE_EXPENSIVE)
            for i, result in zip(indices, expensive, strict=True):
                cheap = per_filter[k][i]
                result.queue_seconds += cheap.queue_seconds
                result.preprocess_seconds += cheap.preprocess_seconds
                result.inference_seconds += cheap.inference_seconds
                per_filter[k][i] = result
        total = time.monotonic() - start
        metrics.PHASE_SECONDS.labels("total").observe(total)
        out: list[list[FilterResult]] = [[] for _ in articles]
        for k, results in enumerate(per_filter):
            slot = first[k][0]
            children = slot.metric_children()
            stages: dict[str, int] = {}
            uncertain = 0
            for i, result in enumerate(results):
                result.total_seconds = total
                out[i].append(result)
                stages[result.stage] = stages.get(result.stage, 0) + 1
                uncertain += result.uncertain
                children.overall.observe(result.overall)
                for child, value in zip(children.scores, result.calibrated.tolist(), strict=True):
                    child.observe(value)
            for stage, count in stages.items():
                metrics.ARTICLES.labels(slot.spec.name, stage).inc(count)
            if uncertain:
                children.uncertain.inc(uncertain)
        return out

    def _submit(self, slot: FilterSlot, role: str, texts: list[str], deadline: float | None) -> list:
        model = slot.models.get(role)
        batcher = slot.batchers.get(role)
        if model is None or batcher is None:
            raise PreconditionError(f"no {role} model is loaded for filter {slot.spec.ref}")
        return batcher.submit(texts, [model.cost(t) for t in texts], deadline)

    @staticmethod
    def _wait(futures: list, deadline: float | None) -> list[_Row]:
        rows = []
        for future in futures:
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                row, wait, _info = future.result(timeout=timeout)
            except FutureTimeout:
                for f in futures:
                    f.cancel()
                raise DeadlineExceededError("the deadline passed while the article waited to be scored") from None
            row.queue_seconds = wait
            rows.append(row)
        return rows

    def _finish(self, slot: FilterSlot, articles: Sequence, rows: list[_Row], stage: str) -> list[FilterResult]:
        spec = slot.spec
        t0 = time.perf_counter()
        calibrated = np.clip(np.stack([r.calibrated for r in rows]), 0.0, 10.0)
        overall, applied = overall_scores(spec, calibrated)
        width = spec.student.uncertain_interval_width
        results = []
        for i, (article, row) in enumerate(zip(articles, rows, strict=True)):
            lower = np.clip(row.lower, 0.0, 10.0)
            upper = np.clip(row.upper, 0.0, 10.0)
            uncertain = bool(np.any((row.upper - row.lower) > width))
            value = float(overall[i])
            results.append(FilterResult(
                article_id=article.id, filter_name=spec.name, filter_version=spec.version,
                dimensions=spec.dimension_names, raw=row.raw, calibrated=calibrated[i], lower=lower,
                upper=upper, overall=value, tier=tier_for(spec, value), gatekeepers_applied=applied[i],
                uncertain=uncertain, model_version=row.version, stage=stage, queue_seconds=row.queue_seconds,
                preprocess_seconds=row.preprocess_seconds, inference_seconds=row.inference_seconds,
            ))
        metrics.PHASE_SECONDS.labels("postprocess").observe(time.perf_counter() - t0)
        return results
