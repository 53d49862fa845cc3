"""``distillery.bus.reader.iter_topic`` (the article source of ``distillery score --source kafka:<topic>``) on a
real broker: it reads what a topic holds now from the beginning, stops at ``count``, skips and reports what
does not decode, and fails with a clear error for a missing topic or bootstrap."""

from __future__ import annotations

import re

import pytest

from distillery.bus import ensure_topics, make_producer
from distillery.bus.reader import iter_topic
from distillery.v1 import article_pb2

pytestmark = pytest.mark.integration


def _publish(bootstrap: str, topic: str, values: list[bytes]) -> None:
    ensure_topics(bootstrap, [topic])
    producer = make_producer(bootstrap)
    for value in values:
        producer.send(topic, value=value).get(timeout=10)
    producer.close()


def test_reads_the_topic_from_the_beginning_and_skips_undecodable(kafka_bootstrap, kafka_prefix):
    topic = kafka_prefix + "articles.raw"
    articles = [article_pb2.Article(id=f"a{i}", title=f"title {i}", text="text") for i in range(5)]
    # A varint field with no bytes after it: not a valid Article message.
    _publish(kafka_bootstrap, topic, [a.SerializeToString() for a in articles[:3]] + [b"\x08"]
             + [a.SerializeToString() for a in articles[3:]])

    undecodable: list[str] = []
    read = list(iter_topic(topic, kafka_bootstrap, 0, timeout=20, undecodable=undecodable))
    assert sorted(a.id for a in read) == [f"a{i}" for i in range(5)]
    assert len(undecodable) == 1 and re.fullmatch(r"\d+:\d+", undecodable[0])  # partition:offset

    assert len(list(iter_topic(topic, kafka_bootstrap, 2, timeout=20))) == 2  # a rerun reads again: no commits


def test_missing_topic_or_bootstrap_is_a_clear_error(kafka_bootstrap, kafka_prefix):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        list(iter_topic(kafka_prefix + "nothing-here", kafka_bootstrap, 0, timeout=5))
    with pytest.raises(ValueError, match="needs a Kafka bootstrap"):
        list(iter_topic("articles.raw", "", 0))
