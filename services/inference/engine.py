"""The scoring engine: served models per filter, dynamic batching, the cascade, post-processing.

It knows nothing of gRPC or Kafka: the servicer and the stage turn its :class:`FilterResult` objects
into protobuf. Models are swapped atomically per (filter, role): a batch holds on to the model it
started with, so a hot reload never fails a request in flight.

Batching runs in *lanes*, one :class:`DynamicBatcher` each. A model of its own has a lane per (filter,
role). Models that share their expensive part (a :class:`~distillery_services.inference.models.SharedModel`: probes
and ``multi`` views on one encoder) share one lane keyed by ``share_key``: an article wanted by several of
those filters is one item, embedded once, and the lane's batch runs one forward pass for all of them
(a ``multi`` model's trunk once per batch too); each filter's model then applies its own head and
calibration. A reload that moves a filter to another lane retires the old lane once nothing uses it: its
queued items still run with the models they were queued with, and a request that raced the retirement is
resubmitted to the new lane.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Hashable, Iterable, Sequence
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field

import numpy as np
from distillery_services.inference import metrics
from distillery_services.inference.batcher import (
    BatcherClosedError,
    BatchInfo,
    DeadlineExceededError,
    DynamicBatcher,
    Future,
)
from distillery_services.inference.models import (
    CHEAP,
    PRIMARY,
    ModelRef,
    ModelSource,
    Prediction,
    ServedModel,
    reference_of,
    share_key_of,
    student_text,
)

from distillery import uncertainty
from distillery.articles import Article
from distillery.errors import PreconditionError, UnavailableError
from distillery.filters import FilterSpec, UnknownFilterError, overall_scores

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
    # Ensemble members' standard deviation of the raw score per dimension; None for a single model.
    spread: np.ndarray | None = None


@dataclass(frozen=True)
class BatchLimits:
    max_batch_size: int = 64
    max_batch_tokens: int = 16384
    max_wait_s: float = 0.002
    max_queue: int = 4096


def _error_model_flags(spec: FilterSpec, rows: list[_Row], fallback: list[bool]) -> list[bool]:
    """Rows of a model with an error model are uncertain by the spec's share or expected-error threshold (the
    same rule the trainer's report measured); rows of older models keep the interval-width/spread rule."""
    share, max_error = uncertainty.spec_flag_settings(spec.student)
    if share is None and max_error is None:
        return fallback
    flags = list(fallback)
    thresholds: dict[int, float] = {}  # per error model in the batch (one, unless a reload swapped versions)
    for i, row in enumerate(rows):
        if row.expected_error is not None and row.error_model is not None:
            key = id(row.error_model)
            if key not in thresholds:
                thresholds[key] = max_error if max_error is not None else row.error_model.threshold(share)
            flags[i] = row.expected_error > thresholds[key]
    return flags


def _tiers(spec: FilterSpec):
    """:func:`~distillery.filters.tier_for` with the spec's tiers sorted once (tier_for sorts on every call)."""
    ordered = [(t.min_overall, t.name) for t in spec.tiers_descending]
    lowest = ordered[-1][1]

    def tier(overall: float) -> str:
        for minimum, name in ordered:
            if overall >= minimum:
                return name
        return lowest

    return tier


@dataclass(slots=True)
class _Row:
    raw: np.ndarray
    calibrated: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    version: str
    preprocess_seconds: float
    inference_seconds: float
    queue_seconds: float = 0.0
    spread: np.ndarray | None = None
    # the model's expected mean absolute error for this row, and the error model behind it (None: older model)
    expected_error: float | None = None
    error_model: object | None = None


Member = tuple[str, str]  # (filter name, role)


@dataclass(frozen=True)
class _Work:
    """One article in a lane: its text and the model of each (filter, role) that wants it scored.

    The models are the ones served when the request was submitted, so a batch never mixes in a version
    that a reload installed after the request arrived.
    """

    text: str
    cost: int
    models: tuple[tuple[Member, ServedModel], ...]


@dataclass
class _Lane:
    """One batcher and what it serves: a model of its own (``shared`` False) or a shared part."""

    key: Hashable
    label: str
    shared: bool
    batcher: DynamicBatcher | None = None


@dataclass
class _MetricChildren:
    overall: object
    uncertain: object
    scores: list


@dataclass
class FilterSlot:
    """Everything served for one filter: its models by role (batched in the engine's lanes)."""

    spec: FilterSpec
    refs: dict[str, ModelRef] = field(default_factory=dict)
    models: dict[str, ServedModel] = field(default_factory=dict)

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
        # Replaced as a whole under _reload_lock; readers take one reference and never see half an update.
        self._lanes: dict[Hashable, _Lane] = {}
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
                        "lane": self._lanes[self._lane_key(name, role, model)].label,
                        "previous": current.version if current else None}})
            if changes:
                self._retire_unused_lanes()
        return changes

    # -- lanes -------------------------------------------------------------------------------------------
    @staticmethod
    def _lane_key(name: str, role: str, model: ServedModel) -> Hashable:
        share = share_key_of(model)
        return ("own", name, role) if share is None else ("shared", share)

    def _open_lane(self, name: str, role: str, model: ServedModel) -> None:
        """Start the lane ``model`` is served in, unless it runs already (called under _reload_lock)."""
        key = self._lane_key(name, role, model)
        if key in self._lanes:
            return
        shared = key[0] == "shared"
        label = (getattr(model, "share_label", "") or "shared") if shared else f"{name}/{role}"
        lane = _Lane(key, label, shared)
        lane.batcher = DynamicBatcher(
            label, self._processor(lane),
            max_batch_size=self.limits.max_batch_size,
            max_batch_tokens=self.limits.max_batch_tokens,
            max_wait_s=self.limits.max_wait_s,
            max_queue=self.limits.max_queue,
            labels=(label, "shared") if shared else (name, role),
        )
        self._lanes = {**self._lanes, key: lane}
        if shared:
            logger.info("shared lane opened", extra={"fields": {"lane": label}})

    def _retire_unused_lanes(self) -> None:
        """Close lanes no served model uses any more; their queued items still run (called under _reload_lock)."""
        used = {self._lane_key(name, role, model)
                for name, slot in self.slots.items() for role, model in slot.models.items()}
        retired = [lane for key, lane in self._lanes.items() if key not in used]
        if not retired:
            return
        self._lanes = {key: lane for key, lane in self._lanes.items() if key in used}
        for lane in retired:
            lane.batcher.close(timeout=0)  # the worker drains what is queued, then ends
            logger.info("lane retired", extra={"fields": {"lane": lane.label}})

    def _install(self, slot: FilterSlot, role: str, ref: ModelRef, model: ServedModel) -> None:
        self._open_lane(slot.spec.name, role, model)  # before the model is visible, so requests find its lane
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

    def _processor(self, lane: _Lane):
        def process(works: list[_Work], info: BatchInfo) -> list[dict[Member, _Row | Exception]]:
            texts = [w.text for w in works]
            # Who wants which rows: one entry per (member, model); a batch keeps the versions it was given.
            wanted: dict[tuple[Member, int], tuple[Member, ServedModel, list[int]]] = {}
            for i, work in enumerate(works):
                for member, model in work.models:
                    wanted.setdefault((member, id(model)), (member, model, []))[2].append(i)
            out: list[dict[Member, _Row | Exception]] = [{} for _ in works]
            start = time.perf_counter()
            if lane.shared:
                lead = works[0].models[0][1]  # every model of a shared lane gives the same forward output
                shared = lead.forward(texts)
                metrics.FORWARD_PASSES.labels(lane.label).inc()
            for member, model, rows in wanted.values():
                try:
                    if lane.shared:
                        pred = model.finish(shared, rows)
                    else:
                        metrics.FORWARD_PASSES.labels(lane.label).inc()
                        pred = model.predict(texts if len(rows) == len(texts) else [texts[r] for r in rows])
                except Exception as exc:  # one filter's head failing must not fail the other filters' results
                    if not lane.shared:
                        raise
                    logger.exception("scoring failed", extra={"fields": {"filter": member[0], "lane": lane.label}})
                    for r in rows:
                        out[r][member] = exc
                    continue
                self._fan_out(member, model, pred, rows, works, out, start)
            return out

        return process

    @staticmethod
    def _fan_out(member: Member, model: ServedModel, pred: Prediction, rows: list[int], works: list[_Work],
                 out: list[dict[Member, _Row | Exception]], start: float) -> None:
        name, role = member
        elapsed = time.perf_counter() - start
        inference = pred.inference_seconds or max(0.0, elapsed - pred.preprocess_seconds)
        tokens = sum(works[r].cost for r in rows)
        metrics.BATCH_SIZE.labels(name, role).observe(len(rows))
        metrics.BATCH_TOKENS.labels(name, role).observe(tokens)
        metrics.TOKENS.labels(name, role).inc(tokens)
        metrics.PHASE_SECONDS.labels("preprocess").observe(pred.preprocess_seconds)
        metrics.PHASE_SECONDS.labels("inference").observe(inference)
        spread, expected = pred.spread, pred.expected_error
        for k, r in enumerate(rows):
            out[r][member] = _Row(pred.raw[k], pred.calibrated[k], pred.lower[k], pred.upper[k], model.version,
                                  pred.preprocess_seconds, inference,
                                  spread=None if spread is None else spread[k],
                                  expected_error=None if expected is None else float(expected[k]),
                                  error_model=pred.error_model)

    def close(self) -> None:
        self._closed = True
        with self._reload_lock:
            lanes, self._lanes = list(self._lanes.values()), {}
        for lane in lanes:
            lane.batcher.close()

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

    def score(self, articles: Sequence[Article], slots: Sequence[FilterSlot],
              deadline: float | None = None) -> list[list[FilterResult]]:
        """Score validated articles (:class:`~distillery.articles.Article`, or anything with ``id``, ``title``
        and ``text``) for ``slots``.

        ``deadline`` is a ``time.monotonic()`` instant; past it, DeadlineExceededError is raised and queued
        work is dropped. Returns one list per article, in ``slots`` order.
        """
        if self._closed:
            raise UnavailableError("the scorer is shutting down")
        start = time.monotonic()
        texts = [student_text(a.title, a.text) for a in articles]
        first: list[tuple[FilterSlot, str, str]] = []
        for slot in slots:
            cascade = self.cascade and slot.cascade_active
            first.append((slot, CHEAP if cascade else PRIMARY, STAGE_CHEAP if cascade else STAGE_SINGLE))
        per_filter, second = self._first_stage(first, articles, texts, deadline)
        if second:
            self._second_stage(first, second, per_filter, articles, texts, deadline)
        total = time.monotonic() - start
        metrics.PHASE_SECONDS.labels("total").observe(total)
        return self._per_article(first, per_filter, len(articles), total)

    def _first_stage(self, first: list[tuple[FilterSlot, str, str]], articles: Sequence[Article], texts: list[str],
                     deadline: float | None) -> tuple[list[list[FilterResult]], list[tuple[int, list[int]]]]:
        """Every filter's first stage, submitted before waiting so the filters overlap (and filters on one
        shared lane get one item per article); returns the results per filter and, per cascading filter,
        the articles its cheap stage escalates."""
        everything = range(len(texts))
        pending = self._submit([(slot, role, everything) for slot, role, _ in first], texts, deadline)
        per_filter: list[list[FilterResult]] = []
        second: list[tuple[int, list[int]]] = []
        for k, (slot, role, stage) in enumerate(first):
            rows = self._wait(pending[(slot.spec.name, role)], (slot.spec.name, role), deadline)
            results = self._finish(slot, articles, rows, stage)
            per_filter.append(results)
            if stage == STAGE_CHEAP:
                threshold = slot.spec.student.cascade_threshold
                escalate = [i for i, r in enumerate(results) if r.overall >= threshold]
                if escalate:
                    second.append((k, escalate))
        return per_filter, second

    def _second_stage(self, first: list[tuple[FilterSlot, str, str]], second: list[tuple[int, list[int]]],
                      per_filter: list[list[FilterResult]], articles: Sequence[Article], texts: list[str],
                      deadline: float | None) -> None:
        """The cascade's expensive stage for the escalated articles; its results replace the cheap ones (with
        the cheap stage's time added)."""
        pending = self._submit([(first[k][0], PRIMARY, indices) for k, indices in second], texts, deadline)
        for k, indices in second:
            slot = first[k][0]
            rows = self._wait(pending[(slot.spec.name, PRIMARY)], (slot.spec.name, PRIMARY), deadline)
            expensive = self._finish(slot, [articles[i] for i in indices], rows, STAGE_EXPENSIVE)
            for i, result in zip(indices, expensive, strict=True):
                cheap = per_filter[k][i]
                result.queue_seconds += cheap.queue_seconds
                result.preprocess_seconds += cheap.preprocess_seconds
                result.inference_seconds += cheap.inference_seconds
                per_filter[k][i] = result

    @staticmethod
    def _per_article(first: list[tuple[FilterSlot, str, str]], per_filter: list[list[FilterResult]], n: int,
                     total: float) -> list[list[FilterResult]]:
        """Results regrouped per article (in filter order), with the per-filter metrics recorded."""
        out: list[list[FilterResult]] = [[] for _ in range(n)]
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
            if results:  # the score histograms, per batch (one observe per value costs as much as scoring)
                metrics.observe_many(children.overall, [r.overall for r in results])
                calibrated = np.array([r.calibrated for r in results], dtype=np.float64)
                for j, child in enumerate(children.scores):
                    metrics.observe_many(child, calibrated[:, j])
            for stage, count in stages.items():
                metrics.ARTICLES.labels(slot.spec.name, stage).inc(count)
            if uncertain:
                children.uncertain.inc(uncertain)
        return out

    def _submit(self, wanted: Sequence[tuple[FilterSlot, str, Sequence[int]]], texts: list[str],
                deadline: float | None) -> dict[Member, list[Future]]:
        """Queue ``texts[i]`` for each (slot, role, indices); futures per (filter, role), in ``indices`` order.

        Members on one lane share an item per article. A lane that a concurrent reload retired refuses
        the items (BatcherClosedError); they are resubmitted with the models served now, so a reload
        never fails a request.
        """
        by_index: dict[Member, dict[int, Future]] = {}
        todo = list(wanted)
        for _attempt in range(100):
            lanes: dict[Hashable, tuple[_Lane, dict[int, list]]] = {}
            owners: dict[Hashable, list] = {}
            retry = []
            for slot, role, indices in todo:
                model = slot.models.get(role)
                if model is None:
                    raise PreconditionError(f"no {role} model is loaded for filter {slot.spec.ref}")
                lane = self._lanes.get(self._lane_key(slot.spec.name, role, model))
                if lane is None:  # retired between reading the model and the lanes: read both again
                    retry.append((slot, role, indices))
                    continue
                per_index = lanes.setdefault(lane.key, (lane, {}))[1]
                member = (slot.spec.name, role)
                for i in indices:
                    per_index.setdefault(i, []).append((member, model))
                owners.setdefault(lane.key, []).append((slot, role, indices))
            for key, (lane, per_index) in lanes.items():
                order = list(per_index)
                works = [_Work(texts[i], per_index[i][0][1].cost(texts[i]), tuple(per_index[i])) for i in order]
                try:
                    futures = lane.batcher.submit(works, [w.cost for w in works], deadline)
                except BatcherClosedError:
                    retry.extend(owners[key])
                    continue
                for i, future in zip(order, futures, strict=True):
                    for member, _model in per_index[i]:
                        by_index.setdefault(member, {})[i] = future
            if not retry:
                return {(slot.spec.name, role): [by_index[(slot.spec.name, role)][i] for i in indices]
                        for slot, role, indices in wanted}
            if self._closed:
                raise UnavailableError("the scorer is shutting down")
            todo = retry
            time.sleep(0.001)  # a reload is swapping lanes right now; it finishes in microseconds
        raise UnavailableError("the served models keep changing; retry the request")

    @staticmethod
    def _wait(futures: list[Future], member: Member, deadline: float | None) -> list[_Row]:
        rows = []
        for future in futures:
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                by_member, wait, _info = future.result(timeout=timeout)
            except FutureTimeout:
                for f in futures:
                    f.cancel()
                raise DeadlineExceededError("the deadline passed while the article waited to be scored") from None
            row = by_member[member]
            if isinstance(row, Exception):  # this filter's head failed on a batch shared with other filters
                raise row
            row.queue_seconds = wait
            rows.append(row)
        return rows

    def _finish(self, slot: FilterSlot, articles: Sequence[Article], rows: list[_Row], stage: str) -> list[FilterResult]:
        spec = slot.spec
        t0 = time.perf_counter()
        # np.array copies the rows (views of the batch's arrays) faster than np.stack
        calibrated = np.clip(np.array([r.calibrated for r in rows], dtype=np.float64), 0.0, 10.0)
        overall, applied = overall_scores(spec, calibrated)
        width = spec.student.uncertain_interval_width
        max_spread = spec.student.uncertain_member_spread
        # The whole batch at once: intervals clipped to the scale, wide ones (or disagreeing ensemble
        # members) mark the result uncertain.
        lower_raw = np.array([r.lower for r in rows], dtype=np.float64)
        upper_raw = np.array([r.upper for r in rows], dtype=np.float64)
        lower = np.clip(lower_raw, 0.0, 10.0)
        upper = np.clip(upper_raw, 0.0, 10.0)
        uncertain = np.any((upper_raw - lower_raw) > width, axis=1).tolist()
        if max_spread is not None:
            for i, row in enumerate(rows):
                if row.spread is not None and not uncertain[i]:
                    uncertain[i] = bool(np.any(row.spread > max_spread))
        uncertain = _error_model_flags(spec, rows, uncertain)
        dimensions = spec.dimension_names  # built once per batch (a property that builds a new list)
        tier = _tiers(spec)
        results = []
        for i, (article, row) in enumerate(zip(articles, rows, strict=True)):
            value = float(overall[i])
            results.append(FilterResult(
                article_id=article.id, filter_name=spec.name, filter_version=spec.version,
                dimensions=dimensions, raw=row.raw, calibrated=calibrated[i], lower=lower[i],
                upper=upper[i], overall=value, tier=tier(value), gatekeepers_applied=applied[i],
                uncertain=uncertain[i], model_version=row.version, stage=stage, queue_seconds=row.queue_seconds,
                preprocess_seconds=row.preprocess_seconds, inference_seconds=row.inference_seconds,
                spread=row.spread,
            ))
        metrics.PHASE_SECONDS.labels("postprocess").observe(time.perf_counter() - t0)
        return results
