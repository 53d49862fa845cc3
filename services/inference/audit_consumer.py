"""The Kafka edge of live accuracy: a thread reading ``oracle.labels`` into the :class:`AuditMatcher`.

Labels arrive as ``distillery.v1.OracleLabel`` bytes; each is translated once (:mod:`distillery.messages`) into
the domain label the matcher reads. Undecodable records are counted and skipped: the oracle stage owns that
topic's dead letters.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterable

from distillery_services.inference import metrics
from distillery_services.inference.audit import AuditMatcher

from distillery.messages import label_of
from distillery.v1 import oracle_pb2

logger = logging.getLogger(__name__)


class AuditConsumer:
    """A thread reading ``oracle.labels`` (a consumer group of its own, newest first) into a matcher."""

    def __init__(self, bootstrap: str, topic: str, group_prefix: str, matcher: AuditMatcher,
                 ready_timeout: float = 30.0):
        self.bootstrap = bootstrap
        self.topic = topic
        self.group_id = f"{group_prefix}-audit-{uuid.uuid4().hex[:8]}"
        self.matcher = matcher
        self.ready_timeout = ready_timeout
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._consumer = None

    def start(self) -> AuditConsumer:
        """Join the group and pin the start offsets before returning, so that no label of a request sent
        after this call can be missed; then consume in a thread."""
        from distillery.bus import ensure_topics, make_consumer

        ensure_topics(self.bootstrap, [self.topic])
        consumer = make_consumer(self.bootstrap, self.group_id, [self.topic], client_id="distillery-inference-audit",
                                 auto_offset_reset="latest", enable_auto_commit=False)
        deadline = time.monotonic() + self.ready_timeout
        while not consumer.assignment() and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=200).values():
                self.handle(records)
        for tp in consumer.assignment():
            consumer.position(tp)  # resolve "latest" now, not at the first fetch
        if not consumer.assignment():
            logger.warning("audit consumer has no partitions yet; labels before it joins are not matched",
                           extra={"fields": {"topic": self.topic}})
        self._consumer = consumer
        self._thread = threading.Thread(target=self._run, name="audit-labels", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        consumer = self._consumer
        try:
            while not self._stop.is_set():
                batch = consumer.poll(timeout_ms=300)
                for records in batch.values():
                    self.handle(records)
        except Exception:
            logger.exception("audit label consumer stopped")
        finally:
            consumer.close(autocommit=False)

    def handle(self, records: Iterable) -> None:
        for record in records:
            label = oracle_pb2.OracleLabel()
            try:
                label.ParseFromString(record.value or b"")
            except Exception:  # noqa: BLE001 - protobuf DecodeError; the oracle stage owns that topic's DLQ
                metrics.STAGE_MESSAGES.labels(record.topic, "invalid").inc()
                continue
            self.matcher.observe(label_of(label))

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
