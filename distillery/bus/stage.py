"""The Kafka stage every service runs: consume -> process -> produce -> flush -> commit, at least once.

A subclass implements :meth:`Stage.process` (one consumed record -> the messages to produce). The base
class owns delivery: the output of a batch is produced by an idempotent producer (acks=all) and the
input offsets are committed only after every output was acknowledged; if producing fails, nothing is
committed and the batch is consumed again (so ``process`` must be idempotent by key). A record whose
``process`` raises is a poison message: it goes to ``<topic>.dlq`` with the error and its origin, and
the stage carries on. :meth:`stop` finishes the batch in hand, commits it and closes the clients.
"""

from __future__ import annotations

import abc
import logging
import threading
import time
import weakref
from collections.abc import Iterable, Sequence

from kafka.structs import OffsetAndMetadata, TopicPartition

from distillery.bus.clients import ensure_topics, make_consumer, make_producer
from distillery.bus.dlq import OutMessage, dead_letter
from distillery.bus.metrics import stage_metrics
from distillery.bus.topics import dlq

logger = logging.getLogger(__name__)

# Stages started in this process and not stopped on purpose: what the service's liveness watches.
_STARTED: weakref.WeakSet = weakref.WeakSet()


def failed_stages() -> list[str]:
    """'<service> stage (group g): <error>' for every started stage whose loop died."""
    return [f"{s.service} stage (group {s.group_id}): {type(s.error).__name__ if s.error else 'stopped'}: "
            f"{str(s.error)[:300] if s.error else ''}" for s in list(_STARTED) if s.failed]


class Stage(abc.ABC):
    """Base class of the Kafka stages (prefilter, oracle gateway, inference ...)."""

    def __init__(
        self,
        *,
        service: str,
        bootstrap: str,
        group_id: str,
        input_topics: Sequence[str],
        output_topics: Sequence[str] = (),
        max_records: int = 500,
        poll_timeout_ms: int = 200,
        create_topics: bool = True,
        send_timeout_s: float = 30.0,
        retry_backoff_s: float = 1.0,
        connect_timeout_s: float = 30.0,
        consumer_config: dict | None = None,
        producer_config: dict | None = None,
    ):
        self.service = service
        self.bootstrap = bootstrap
        self.group_id = group_id
        self.input_topics = list(input_topics)
        self.output_topics = list(output_topics)
        self.max_records = max_records
        self.poll_timeout_ms = poll_timeout_ms
        self.create_topics = create_topics
        self.send_timeout_s = send_timeout_s
        self.retry_backoff_s = retry_backoff_s
        self.connect_timeout_s = connect_timeout_s
        self._consumer_config = consumer_config or {}
        self._producer_config = producer_config or {}
        self.metrics = stage_metrics(service)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._consumer = None
        self._producer = None
        self.error: BaseException | None = None
        self._lag_series: set[tuple[str, str]] = set()

    # -- to implement --------------------------------------------------------------------------------
    @abc.abstractmethod
    def process(self, record) -> Iterable[OutMessage]:
        """Turn one consumed record into the messages to produce; raise to dead-letter the record."""

    def process_batch(self, records: Sequence) -> list[Iterable[OutMessage] | BaseException]:
        """One polled batch at once: per record, its messages or the exception that dead-letters it.

        The default calls :meth:`process` per record. Stages whose engine is faster on batches (model
        inference) override it, keeping the one-result-per-record contract.
        """
        results: list[Iterable[OutMessage] | BaseException] = []
        for record in records:
            try:
                results.append(list(self.process(record)))
            except Exception as exc:  # noqa: BLE001 - a poison message never stops the stage
                results.append(exc)
        return results

    def ready(self) -> bool:
        """False while the stage cannot process yet (e.g. no model loaded): its partitions are paused."""
        return True

    # -- lifecycle -----------------------------------------------------------------------------------
    def open(self) -> None:
        """Create topics (when asked) and the clients; called by :meth:`start` or :meth:`run`."""
        if self._consumer is not None:
            return
        # Create the missing topics; where they are provisioned (kafka_create_topics false) stop, naming them,
        # rather than consume a topic that is not there (a missing output shows as unacknowledged batches).
        if self.create_topics:
            ensure_topics(self.bootstrap, [*self.input_topics, *self.output_topics,
                                           *(dlq(t) for t in self.input_topics)], timeout=self.connect_timeout_s)
        else:
            ensure_topics(self.bootstrap, self.input_topics, timeout=self.connect_timeout_s, create=False)
        client_id = f"distillery-{self.service}"
        self._producer = make_producer(self.bootstrap, client_id=client_id, **self._producer_config)
        self._consumer = make_consumer(self.bootstrap, self.group_id, self.input_topics, client_id=client_id,
                                       **self._consumer_config)

    def start(self) -> Stage:
        """Open the clients here (errors surface to the caller), then run the loop in a thread."""
        self.open()
        self._thread = threading.Thread(target=self._run_guarded, name=f"{self.service}-stage", daemon=True)
        _STARTED.add(self)
        self._thread.start()
        logger.info("stage started", extra={"fields": {"group": self.group_id, "topics": self.input_topics}})
        return self

    def stop(self, timeout: float = 15.0) -> None:
        """Finish the batch in hand (produce + commit), then close the clients."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        else:
            self.close()

    def close(self) -> None:
        for labels in self._lag_series:  # a stopped member reports no lag (the broker-side exporter still does)
            self.metrics.lag.remove(*labels)
        self._lag_series = set()
        consumer, producer = self._consumer, self._producer
        self._consumer = self._producer = None
        if producer is not None:
            try:
                producer.flush(timeout=self.send_timeout_s)
            finally:
                producer.close(timeout=5)
        if consumer is not None:
            consumer.close(autocommit=False)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run_guarded(self) -> None:
        self.metrics.up.labels(self.group_id).set(1)
        try:
            self.run()
        except BaseException as exc:
            self.error = exc
            logger.exception("stage stopped by an error; the service reports NOT_SERVING and exits")
        finally:
            self.metrics.up.labels(self.group_id).set(0)
            if self._stop.is_set() and self.error is None:
                _STARTED.discard(self)

    @property
    def failed(self) -> bool:
        """The loop ended without :meth:`stop` (an error, e.g. CommitFailedError): nothing is consumed any more."""
        return self._thread is not None and not self._thread.is_alive() and not self._stop.is_set()

    def run(self) -> None:
        """The loop (blocking) until :meth:`stop`."""
        self.open()
        try:
            while not self._stop.is_set():
                self.run_once()
        finally:
            self.close()

    # -- one batch -----------------------------------------------------------------------------------
    def run_once(self) -> int:
        """Poll one batch and deliver it; returns the number of records consumed."""
        consumer = self._consumer
        if not self.ready():
            self._hold()
            return 0
        if consumer.paused():
            consumer.resume(*consumer.paused())
        batch = consumer.poll(timeout_ms=self.poll_timeout_ms, max_records=self.max_records)
        if not batch:
            self._update_lag()
            return 0
        started = time.perf_counter()
        records = [record for tp in batch for record in batch[tp]]
        first: dict[TopicPartition, int] = {}
        commit: dict[TopicPartition, OffsetAndMetadata] = {}
        for record in records:
            tp = TopicPartition(record.topic, record.partition)
            first.setdefault(tp, record.offset)
            commit[tp] = OffsetAndMetadata(record.offset + 1, "", -1)
            self.metrics.consumed.labels(record.topic).inc()
        outgoing = self._outgoing(records)
        if not self._deliver(outgoing):
            # Not acknowledged: consume the batch again (nothing was committed).
            for tp, offset in first.items():
                consumer.seek(tp, offset)
            self._stop.wait(self.retry_backoff_s)
            return len(records)
        consumer.commit(commit)
        self.metrics.batch_seconds.observe(time.perf_counter() - started)
        self._update_lag()
        return len(records)

    def _hold(self) -> None:
        """Keep polling (group membership stays alive) but process nothing until the stage can. Partitions
        assigned by this very poll are not paused yet and may return records: rewind to them, so that
        nothing is skipped (their offsets are committed only once they are processed)."""
        consumer = self._consumer
        if consumer.assignment():
            consumer.pause(*consumer.assignment())
        early = consumer.poll(timeout_ms=self.poll_timeout_ms)
        for tp, records in early.items():
            if records:
                consumer.seek(tp, records[0].offset)
        if consumer.assignment():
            consumer.pause(*consumer.assignment())
        self._stop.wait(0.2)

    def _outgoing(self, records: list) -> list[OutMessage]:
        """The messages to produce for a batch: each record's results, or its dead letter when it failed."""
        results = self.process_batch(records)
        if len(results) != len(records):
            raise RuntimeError(f"{type(self).__name__}.process_batch returned {len(results)} results "
                               f"for {len(records)} records")
        outgoing: list[OutMessage] = []
        for record, result in zip(records, results):
            if isinstance(result, BaseException):
                logger.warning(
                    "dead-lettering a message",
                    extra={"fields": {"topic": record.topic, "partition": record.partition,
                                      "offset": record.offset, "error": str(result)[:300]}},
                )
                self.metrics.dead_letters.labels(record.topic).inc()
                result = [dead_letter(record, result)]
            outgoing.extend(result)
        return outgoing

    def _deliver(self, outgoing: list[OutMessage]) -> bool:
        """Produce and wait for every acknowledgement; False (logged, counted) when any is missing."""
        try:
            futures = [self._producer.send(m.topic, key=m.key, value=m.value, headers=m.headers) for m in outgoing]
            self._producer.flush(timeout=self.send_timeout_s)
            for future in futures:
                future.get(timeout=self.send_timeout_s)
        except Exception as exc:  # noqa: BLE001 - not acknowledged: consume the batch again
            self.metrics.produce_failures.inc()
            logger.error("output not acknowledged; the batch will be consumed again",
                         extra={"fields": {"error": str(exc)[:300]}})
            return False
        for message in outgoing:
            self.metrics.produced.labels(message.topic).inc()
        return True

    def _update_lag(self) -> None:
        """This member's own view of its lag (the broker's view, per group: distillery.bus.lag). Series of
        partitions a rebalance moved to another member are removed, so that sums over members stay right."""
        consumer = self._consumer
        try:
            assigned = consumer.assignment()
            current = {(tp.topic, str(tp.partition)) for tp in assigned}
            for labels in self._lag_series - current:
                self.metrics.lag.remove(*labels)
            self._lag_series = current
            for tp in assigned:
                high = consumer.highwater(tp)
                if high is None:
                    continue
                position = consumer.position(tp, timeout_ms=100)
                if position is not None:
                    self.metrics.lag.labels(tp.topic, str(tp.partition)).set(max(0, high - position))
        except Exception:
            logger.debug("lag update failed", exc_info=True)
