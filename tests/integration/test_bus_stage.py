"""The shared Kafka plumbing on a real broker, checked with confluent-kafka (librdkafka) as an
independent client: topics, producer/consumer factories, headers, dead letters, the Stage loop."""

from __future__ import annotations

import threading
import time

import pytest

from distillery.bus import (
    OutMessage,
    Stage,
    ensure_topics,
    header,
    make_consumer,
    make_headers,
    make_producer,
)
from distillery.bus import headers as h
from distillery.bus.broker import EmbeddedBroker

pytestmark = pytest.mark.integration

confluent_kafka = pytest.importorskip("confluent_kafka")


def rd_producer(bootstrap):
    return confluent_kafka.Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})


def rd_consume(bootstrap, topic, n, timeout=20.0):
    """Read ``n`` messages of ``topic`` from the beginning with confluent-kafka (no group: assigned
    partitions), polling until they arrive."""
    consumer = confluent_kafka.Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": "independent-check",
        "enable.auto.commit": False,
    })
    out = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            meta = consumer.list_topics(topic, timeout=5).topics.get(topic)
            if meta is not None and meta.partitions:
                break
            if time.monotonic() > deadline:
                return out
            time.sleep(0.1)
        consumer.assign([confluent_kafka.TopicPartition(topic, p, confluent_kafka.OFFSET_BEGINNING)
                         for p in meta.partitions])
        while len(out) < n and time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None or msg.error():
                continue
            out.append(msg)
    finally:
        consumer.close()
    return out


def test_embedded_broker_start_stop(tmp_path):
    broker = EmbeddedBroker(log_dir=tmp_path).start()
    try:
        assert broker.alive()
        assert ensure_topics(broker.bootstrap, ["a.b", "a.b", "c"]) == ["a.b", "c"]
        assert ensure_topics(broker.bootstrap, ["a.b"]) == []
    finally:
        broker.stop()
    assert not broker.alive()


def test_our_producer_to_independent_consumer(kafka_bootstrap, kafka_prefix):
    topic = kafka_prefix + "ours"
    ensure_topics(kafka_bootstrap, [topic])
    producer = make_producer(kafka_bootstrap)
    for i in range(20):
        producer.send(topic, key=f"k{i}".encode(), value=f"v{i}".encode(), headers=make_headers("trace-1"))
    producer.flush(10)
    producer.close()
    msgs = rd_consume(kafka_bootstrap, topic, 20)
    assert sorted(m.value() for m in msgs) == sorted(f"v{i}".encode() for i in range(20))
    headers = dict(msgs[0].headers())
    assert headers[h.SCHEMA] == b"1" and headers[h.TRACE_ID] == b"trace-1"


def test_independent_producer_to_our_consumer(kafka_bootstrap, kafka_prefix):
    topic = kafka_prefix + "theirs"
    ensure_topics(kafka_bootstrap, [topic])
    p = rd_producer(kafka_bootstrap)
    for i in range(10):
        p.produce(topic, key=b"k", value=f"m{i}".encode(), headers=[(h.TRACE_ID, b"abc")])
    p.flush(10)
    consumer = make_consumer(kafka_bootstrap, kafka_prefix + "g", [topic])
    got = []
    deadline = time.monotonic() + 20
    while len(got) < 10 and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=200).values():
            got.extend(records)
    consumer.close(autocommit=False)
    assert [r.value for r in got] == [f"m{i}".encode() for i in range(10)]
    assert header(got[0].headers, h.TRACE_ID) == "abc"


class UpperStage(Stage):
    """Upper-cases values; b"poison" cannot be processed."""

    def process(self, record):
        if record.value == b"poison":
            raise ValueError("cannot upper-case poison")
        yield OutMessage(self.output_topics[0], record.key, record.value.upper(),
                         make_headers(header(record.headers, h.TRACE_ID)))


def make_stage(bootstrap, prefix, **kw):
    return UpperStage(service="bustest", bootstrap=bootstrap, group_id=prefix + "stage",
                      input_topics=[prefix + "in"], output_topics=[prefix + "out"], poll_timeout_ms=100, **kw)


def test_stage_processes_dead_letters_and_commits(kafka_bootstrap, kafka_prefix):
    stage = make_stage(kafka_bootstrap, kafka_prefix).start()
    try:
        p = rd_producer(kafka_bootstrap)
        for value in (b"a", b"poison", b"b", b"\xff\xfe", b"c"):
            p.produce(kafka_prefix + "in", key=b"key", value=value, headers=[(h.TRACE_ID, b"t1")])
        p.flush(10)
        out = rd_consume(kafka_bootstrap, kafka_prefix + "out", 4)
        assert [m.value() for m in out] == [b"A", b"B", b"\xff\xfe".upper(), b"C"]
        assert dict(out[0].headers())[h.TRACE_ID] == b"t1"
        (dead,) = rd_consume(kafka_bootstrap, kafka_prefix + "in.dlq", 1)
        assert dead.value() == b"poison" and dead.key() == b"key"
        meta = dict(dead.headers())
        assert meta[h.ERROR] == b"ValueError: cannot upper-case poison"
        assert meta[h.SOURCE_TOPIC] == (kafka_prefix + "in").encode()
        assert meta[h.SOURCE_PARTITION] == b"0" and meta[h.SOURCE_OFFSET] == b"1"
        assert meta[h.ATTEMPTS] == b"1" and meta[h.TRACE_ID] == b"t1"  # original headers kept
        assert stage.running
    finally:
        stage.stop()
    assert not stage.running and stage.error is None

    # Offsets were committed: a new stage in the same group only sees what came after.
    p.produce(kafka_prefix + "in", key=b"key", value=b"d")
    p.flush(10)
    stage = make_stage(kafka_bootstrap, kafka_prefix).start()
    try:
        out = rd_consume(kafka_bootstrap, kafka_prefix + "out", 5)
        assert [m.value() for m in out] == [b"A", b"B", b"\xff\xfe".upper(), b"C", b"D"]
    finally:
        stage.stop()


def test_stage_does_not_commit_when_output_is_not_acknowledged(kafka_bootstrap, kafka_prefix):
    """Output to a topic that cannot be written: nothing is committed, the batch is consumed again."""
    ensure_topics(kafka_bootstrap, [kafka_prefix + "in", kafka_prefix + "out"])
    stage = make_stage(kafka_bootstrap, kafka_prefix, create_topics=False, send_timeout_s=2.0,
                       retry_backoff_s=0.1, producer_config={"max_block_ms": 1000})
    stage.output_topics = [kafka_prefix + "bad topic name!"]  # invalid name: every send fails
    stage.open()
    p = rd_producer(kafka_bootstrap)
    p.produce(kafka_prefix + "in", key=b"k", value=b"x")
    p.flush(10)
    try:
        deadline = time.monotonic() + 20
        consumed = 0
        while consumed < 2 and time.monotonic() < deadline:
            consumed += stage.run_once()
        assert consumed >= 2  # the same record came back after the failed produce
        assert stage.metrics.produce_failures._value.get() >= 1
        committed = stage._consumer.committed(next(iter(stage._consumer.assignment())))
        assert committed in (None, 0)
    finally:
        stage.close()


def test_stage_stop_is_graceful_while_idle(kafka_bootstrap, kafka_prefix):
    stage = make_stage(kafka_bootstrap, kafka_prefix).start()
    stopper = threading.Thread(target=stage.stop)
    started = time.monotonic()
    stopper.start()
    stopper.join(20)
    assert not stopper.is_alive() and not stage.running
    assert time.monotonic() - started < 20


def test_a_stage_that_is_not_ready_skips_nothing(kafka_bootstrap, kafka_prefix):
    """Records that arrive while the stage cannot process (e.g. no model yet) are processed once it can."""
    ensure_topics(kafka_bootstrap, [kafka_prefix + "in", kafka_prefix + "out"])
    stage = make_stage(kafka_bootstrap, kafka_prefix)
    gate = threading.Event()
    stage.ready = gate.is_set  # not ready until the gate opens
    stage.open()
    p = rd_producer(kafka_bootstrap)
    for i in range(20):
        p.produce(kafka_prefix + "in", key=f"k{i}".encode(), value=b"x")
    p.flush(10)
    try:
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:  # joins the group and is assigned while not ready
            assert stage.run_once() == 0
        gate.set()
        consumed, deadline = 0, time.monotonic() + 20
        while consumed < 20 and time.monotonic() < deadline:
            consumed += stage.run_once()
        assert consumed == 20
    finally:
        stage.close()
