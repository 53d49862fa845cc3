"""Kafka stage: ``oracle.requests`` (LabelRequest) -> ``oracle.labels`` (OracleLabel), ``oracle.requests.dlq``.

Delivery is at least once (see :class:`distillery.bus.Stage`): a redelivered request is answered from
the label store (``cached=true``), so it is never paid twice. The requests of one polled batch are
labelled concurrently (up to ``stage_concurrency``), then produced in order. A request that cannot be
decoded, is invalid, exceeds a budget or fails after every retry goes to ``oracle.requests.dlq`` with
the error in its headers.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor

from distillery_services.oracle_gateway.config import OracleGatewaySettings
from distillery_services.oracle_gateway.engine import OracleEngine
from google.protobuf.message import DecodeError

from distillery.articles import InvalidArticleError
from distillery.bus import OutMessage, Stage, header, make_headers, new_trace_id
from distillery.bus import headers as h
from distillery.bus.topics import ORACLE_LABELS, ORACLE_REQUESTS, with_prefix
from distillery.labels import OracleLabel
from distillery.messages import label_message, label_request_of
from distillery.v1 import oracle_pb2


def decode_request(value: bytes | None) -> oracle_pb2.LabelRequest:
    if not value:
        raise InvalidArticleError("empty message value: expected a serialized distillery.v1.LabelRequest")
    request = oracle_pb2.LabelRequest()
    try:
        request.ParseFromString(value)
    except DecodeError as exc:
        raise InvalidArticleError(f"value is not a distillery.v1.LabelRequest ({exc})") from None
    if not request.HasField("article"):
        raise InvalidArticleError("LabelRequest without an article")
    return request


class _ConcurrentPoll:
    """Wraps the consumer: after each poll, start labelling every record of the batch concurrently."""

    def __init__(self, consumer, stage: OracleStage):
        self._consumer = consumer
        self._stage = stage

    def poll(self, *args, **kwargs):
        batch = self._consumer.poll(*args, **kwargs)
        for records in (batch or {}).values():
            for record in records:
                self._stage._futures[(record.topic, record.partition, record.offset)] = self._stage._pool.submit(
                    self._stage.label_record, record)
        return batch

    def __getattr__(self, name):
        return getattr(self._consumer, name)


class OracleStage(Stage):
    def __init__(self, engine: OracleEngine, settings: OracleGatewaySettings):
        prefix = settings.kafka_topic_prefix
        self.requests_topic = with_prefix(ORACLE_REQUESTS, prefix)
        self.labels_topic = with_prefix(ORACLE_LABELS, prefix)
        super().__init__(service="oracle", bootstrap=settings.kafka_bootstrap, group_id=settings.kafka_group,
                         input_topics=[self.requests_topic], output_topics=[self.labels_topic],
                         max_records=settings.kafka_batch, create_topics=settings.kafka_create_topics)
        self.engine = engine
        self._pool = ThreadPoolExecutor(max_workers=settings.stage_concurrency, thread_name_prefix="oracle-stage")
        self._futures: dict[tuple[str, int, int], Future] = {}

    def open(self) -> None:
        super().open()
        if self._consumer is not None and not isinstance(self._consumer, _ConcurrentPoll):
            self._consumer = _ConcurrentPoll(self._consumer, self)

    def close(self) -> None:
        consumer = self._consumer
        if isinstance(consumer, _ConcurrentPoll):
            self._consumer = consumer._consumer
        super().close()

    def stop(self, timeout: float = 15.0) -> None:
        super().stop(timeout)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def label_record(self, record) -> OracleLabel:
        return self.engine.label(label_request_of(decode_request(record.value)))

    def process(self, record):
        future = self._futures.pop((record.topic, record.partition, record.offset), None)
        label = future.result() if future is not None else self.label_record(record)
        trace = header(record.headers, h.TRACE_ID) or new_trace_id()
        key = f"{label.article_id}:{label.filter.name}/v{label.filter.version}:{label.prompt_hash}".encode()
        return [OutMessage(self.labels_topic, key, label_message(label).SerializeToString(),
                           make_headers(trace))]
