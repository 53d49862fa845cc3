"""Kafka stage: ``articles.candidates`` -> score -> ``articles.scored``; uncertain and audit samples ->
``oracle.requests``; ``models.events`` -> hot reload.

Delivery is the bus Stage's (process, produce, flush, then commit; at least once). Outputs are keyed so a
redelivery is idempotent downstream: ``articles.scored`` by article id, ``oracle.requests`` by
``<article id>:<filter>``. The audit sample is a deterministic hash of (seed, article id, filter), so a
redelivered article is sampled the same way. Uncertain articles go to the oracle within a per-filter daily
budget (UTC days, counted in this process).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import uuid
from collections.abc import Callable
from datetime import datetime, timezone

from distillery_services.inference import metrics
from distillery_services.inference.config import InferenceSettings
from distillery_services.inference.engine import ScoringEngine
from distillery_services.inference.models import PRIMARY
from distillery_services.inference.servicer import fill_result

from distillery import identifiers
from distillery.articles import Article, InvalidArticleError, validate
from distillery.bus import OutMessage, Stage, header, make_consumer, make_headers
from distillery.bus import headers as h
from distillery.messages import article_of
from distillery.v1 import common_pb2, events_pb2, oracle_pb2

logger = logging.getLogger(__name__)


class DailyBudget:
    """At most ``limit`` uses per key and UTC day."""

    def __init__(self, limit: int, today: Callable[[], str] | None = None):
        self.limit = limit
        self.today = today or (lambda: datetime.now(timezone.utc).strftime("%Y-%m-%d"))
        self._used: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> bool:
        day = self.today()
        with self._lock:
            used = self._used.get((key, day), 0)
            if used >= self.limit:
                return False
            self._used = {k: v for k, v in self._used.items() if k[1] == day}
            self._used[(key, day)] = used + 1
            return True


def in_audit_sample(seed: str, article_id: str, filter_name: str, rate: float) -> bool:
    if rate <= 0:
        return False
    digest = hashlib.sha256(f"{seed}|{article_id}|{filter_name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < rate


class InferenceStage(Stage):
    def __init__(self, settings: InferenceSettings, engine: ScoringEngine,
                 on_model_event: Callable[[str], None] | None = None, **kwargs):
        super().__init__(
            service="inference", bootstrap=settings.kafka_bootstrap, group_id=settings.consumer_group,
            input_topics=[settings.candidates_topic],
            output_topics=[settings.scored_topic, settings.oracle_requests_topic, settings.models_events_topic],
            **kwargs,
        )
        self.settings = settings
        self.engine = engine
        self.budget = DailyBudget(settings.uncertain_daily_budget)
        self.on_model_event = on_model_event
        self._events_thread: threading.Thread | None = None
        # Live accuracy (services/inference/audit.py): what was predicted for each article sent to the oracle.
        self.audit_store = None
        self.audit_matcher = None
        self.audit_consumer = None
        if settings.audit_tracking:
            from distillery_services.inference.audit import AuditMatcher, PredictionStore

            self.audit_store = PredictionStore(settings.audit_store_max, settings.audit_store_ttl_seconds)
            self.audit_matcher = AuditMatcher(self.audit_store, settings.audit_window)
            self.audit_matcher.set_targets({s.spec.name: s.spec.student.target_mae
                                            for s in engine.slots.values()})

    # -- scoring -------------------------------------------------------------------------------------
    def _filters_of(self, candidate: events_pb2.CandidateArticle, headers) -> list[tuple[str, int]]:
        identifiers.check_filter_refs(candidate.passed_filters, "passed_filters")
        refs = [(f.name, f.version) for f in candidate.passed_filters]
        if not refs:
            for item in header(headers, h.PASSED_FILTERS).split(","):
                if item.strip(" "):  # only spaces: a control character makes the ref invalid
                    refs.append(identifiers.filter_ref(item.strip(" "), f"header {h.PASSED_FILTERS}"))
        return refs

    def ready(self) -> bool:
        # Without any model there is nothing to score: leave candidates in the topic (paused, uncommitted)
        # instead of dropping them; they are scored once the first model is promoted and loaded.
        return any(PRIMARY in s.models for s in self.engine.slots.values())

    def _decode(self, record) -> tuple[events_pb2.CandidateArticle, Article, list]:
        """The message, its article as the engine's plain Article (validated, id filled in), the slots."""
        candidate = events_pb2.CandidateArticle()
        try:
            candidate.ParseFromString(record.value or b"")
        except Exception as exc:  # noqa: BLE001 - protobuf raises DecodeError; dead-letter it
            raise InvalidArticleError(f"value is not a CandidateArticle: {exc}") from None
        article = validate(article_of(candidate.article), self.settings.max_text_bytes)
        candidate.article.id = article.id  # the LabelRequests sent on carry the derived id too
        refs = self._filters_of(candidate, record.headers)
        slots = [s for s in self.engine.slots.values() if PRIMARY in s.models
                 and (not refs or any(n == s.spec.name and v in (0, s.spec.version) for n, v in refs))]
        return candidate, article, slots

    def process(self, record):
        result = self.process_batch([record])[0]
        if isinstance(result, BaseException):
            raise result
        return result

    def process_batch(self, records):
        """Score the polled batch in as few forward passes as possible (one per set of filters)."""
        results: list = [None] * len(records)
        groups: dict[tuple[str, ...], list[tuple[int, events_pb2.CandidateArticle, Article]]] = {}
        slots_of: dict[tuple[str, ...], list] = {}
        for i, record in enumerate(records):
            try:
                candidate, article, slots = self._decode(record)
            except Exception as exc:  # noqa: BLE001 - dead-lettered by the base class
                results[i] = exc
                continue
            if not slots:
                # Passed only filters this server has no model for: nothing to score, say so downstream.
                metrics.STAGE_MESSAGES.labels(record.topic, "no_model").inc()
                results[i] = []
                continue
            key = tuple(s.spec.name for s in slots)
            groups.setdefault(key, []).append((i, candidate, article))
            slots_of[key] = slots
        for key, members in groups.items():
            try:
                scored = self.engine.score([a for _, _, a in members], slots_of[key])
            except Exception as exc:  # noqa: BLE001 - fall back to one by one so one bad article cannot sink all
                logger.warning("batch scoring failed; scoring one by one", extra={"fields": {"error": str(exc)}})
                scored = []
                for _i, _c, a in members:
                    try:
                        scored.append(self.engine.score([a], slots_of[key])[0])
                    except Exception as item_exc:  # noqa: BLE001
                        scored.append(item_exc)
            for (i, candidate, _a), article_results in zip(members, scored):
                if isinstance(article_results, BaseException):
                    results[i] = article_results
                    continue
                results[i] = self._outputs(records[i], candidate.article, article_results)
        return results

    def _outputs(self, record, article, results) -> list[OutMessage]:
        trace = header(record.headers, h.TRACE_ID)
        scored = events_pb2.ScoredArticle(article_id=article.id)
        add = scored.results.add  # filled in place (a result built apart would be copied in)
        for result in results:
            fill_result(add(), result)
        out = [OutMessage(self.settings.scored_topic, article.id.encode(), scored.SerializeToString(),
                          make_headers(trace))]
        for result in results:
            reason = None
            if result.uncertain and self.budget.take(result.filter_name):
                reason = oracle_pb2.LABEL_REASON_UNCERTAIN
            elif in_audit_sample(self.settings.audit_seed, article.id, result.filter_name, self.settings.audit_rate):
                reason = oracle_pb2.LABEL_REASON_AUDIT
            if reason is None:
                continue
            request = oracle_pb2.LabelRequest(
                article=article, reason=reason,
                filter=common_pb2.FilterRef(name=result.filter_name, version=result.filter_version))
            out.append(OutMessage(self.settings.oracle_requests_topic, f"{article.id}:{result.filter_name}".encode(),
                                  request.SerializeToString(), make_headers(trace)))
            label = "uncertain" if reason == oracle_pb2.LABEL_REASON_UNCERTAIN else "audit"
            metrics.ORACLE_REQUESTS.labels(result.filter_name, label).inc()
            if self.audit_store is not None:
                self.audit_store.remember(article.id, result, label)
        metrics.STAGE_MESSAGES.labels(record.topic, "scored").inc()
        return out

    # -- models.events -------------------------------------------------------------------------------
    def start(self):
        if self.audit_matcher is not None:
            # Before the stage consumes: every label of a request this stage sends must be seen.
            from distillery_services.inference.audit_consumer import AuditConsumer

            self.audit_consumer = AuditConsumer(self.bootstrap, self.settings.oracle_labels_topic,
                                                self.group_id, self.audit_matcher).start()
        super().start()
        if self.on_model_event is not None:
            self._events_thread = threading.Thread(target=self._watch_events, name="models-events", daemon=True)
            self._events_thread.start()
        return self

    def _watch_events(self) -> None:
        # Every replica must see every promotion: a group of its own, starting at the newest event.
        consumer = make_consumer(self.bootstrap, f"{self.group_id}-models-{uuid.uuid4().hex[:8]}",
                                 [self.settings.models_events_topic], auto_offset_reset="latest",
                                 enable_auto_commit=True)
        try:
            while not self._stop.is_set():
                batch = consumer.poll(timeout_ms=300)
                for records in batch.values():
                    for record in records:
                        event = events_pb2.ModelPromoted()
                        try:
                            event.ParseFromString(record.value or b"")
                        except Exception:  # noqa: BLE001
                            metrics.STAGE_MESSAGES.labels(record.topic, "invalid").inc()
                            continue
                        try:
                            identifiers.check_filter_ref(event.filter, "filter")
                            identifiers.model_version(event.version, "version")
                        except ValueError as exc:  # never a registry path from a hostile event
                            metrics.STAGE_MESSAGES.labels(record.topic, "invalid").inc()
                            logger.warning("ignoring an invalid model event", extra={"fields": {"error": str(exc)}})
                            continue
                        metrics.STAGE_MESSAGES.labels(record.topic, "reload").inc()
                        logger.info("model promoted event", extra={"fields": {
                            "filter": event.filter.name, "version": event.version}})
                        self.on_model_event(event.filter.name)
        except Exception:
            logger.exception("models.events watcher stopped")
        finally:
            consumer.close()

    def stop(self, timeout: float = 15.0) -> None:
        super().stop(timeout)
        if self._events_thread is not None:
            self._events_thread.join(5)
        if self.audit_consumer is not None:
            self.audit_consumer.stop()
