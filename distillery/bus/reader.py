"""Read what a topic holds now, from the beginning, without a consumer group (a CLI job's article source)."""

from __future__ import annotations

import time
from collections.abc import Iterator

from distillery.v1 import article_pb2


def iter_topic(topic: str, bootstrap: str, count: int, timeout: float = 30.0,
               undecodable: list[str] | None = None) -> Iterator[article_pb2.Article]:
    """Articles (``Article`` protobuf values, e.g. ``articles.raw``) from the beginning of a Kafka topic.

    Reads every partition until it is caught up (past the end offsets seen at the start, and a poll
    returns nothing: a topic never ends, this reads what it holds now), at most ``count`` articles (0: all). No consumer group and no commits: a rerun
    reads the same articles, and the label store answers the ones already labelled for free. Messages
    that do not decode are skipped and listed in ``undecodable`` (``partition:offset``).
    """
    if not bootstrap:
        raise ValueError(f"reading topic {topic!r} needs a Kafka bootstrap address (--bootstrap or "
                         "DISTILLERY_KAFKA_BOOTSTRAP)")
    consumer = _connect(bootstrap, timeout)
    try:
        tps = _assign_whole_topic(consumer, topic, bootstrap, timeout)
        limit = consumer.end_offsets(tps)
        n = 0
        idle_since = time.monotonic()
        while True:
            batch = consumer.poll(timeout_ms=500, max_records=500)
            if not batch:
                # Caught up: nothing more came and every partition is past the end seen at the start (some
                # brokers report a low end offset, so reading goes on until the topic is quiet).
                if all(consumer.position(tp) >= limit.get(tp, 0) for tp in tps):
                    return
                if time.monotonic() - idle_since > timeout:
                    raise ConnectionError(f"no messages from topic {topic!r} on {bootstrap} for {timeout:g} s "
                                          "before its end offsets were reached")
                continue
            idle_since = time.monotonic()
            for article in _decoded(batch, undecodable):
                yield article
                n += 1
                if count and n >= count:
                    return
    finally:
        consumer.close()


def _connect(bootstrap: str, timeout: float):
    """A consumer without a group (nothing committed); an unreachable broker is a ConnectionError."""
    from kafka.errors import KafkaError

    from distillery.bus.clients import make_consumer

    try:
        return make_consumer(bootstrap, group_id=None, client_id="distillery-score",
                             request_timeout_ms=int(timeout * 1000) + 1000)
    except KafkaError as exc:
        raise ConnectionError(f"Kafka at {bootstrap} is not reachable: {exc}") from None


def _assign_whole_topic(consumer, topic: str, bootstrap: str, timeout: float) -> list:
    """Assign every partition of ``topic`` to ``consumer``, each at its beginning (waiting up to ``timeout``
    for partition metadata); a missing topic is a FileNotFoundError."""
    from kafka import TopicPartition

    deadline = time.monotonic() + timeout
    if topic not in consumer.topics():  # fetches fresh metadata
        raise FileNotFoundError(f"Kafka topic {topic!r} does not exist on {bootstrap}")
    partitions = consumer.partitions_for_topic(topic)
    while not partitions:
        if time.monotonic() > deadline:
            raise ConnectionError(f"no partition metadata for topic {topic!r} from {bootstrap}")
        time.sleep(0.2)
        partitions = consumer.partitions_for_topic(topic)
    tps = [TopicPartition(topic, p) for p in sorted(partitions)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    return tps


def _decoded(batch: dict, undecodable: list[str] | None) -> Iterator[article_pb2.Article]:
    """The articles of one poll, in partition order; what does not decode is noted as ``partition:offset``."""
    from google.protobuf.message import DecodeError

    for tp, records in batch.items():
        for record in records:
            article = article_pb2.Article()
            try:
                article.ParseFromString(record.value or b"")
            except DecodeError:
                if undecodable is not None:
                    undecodable.append(f"{tp.partition}:{record.offset}")
                continue
            yield article
