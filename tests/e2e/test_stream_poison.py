"""Poison messages in every input topic of the streaming pipeline go to the topic's DLQ; the stage goes on.

Real prefilter, inference and oracle gateway processes on a real broker. For each input topic
(articles.raw, articles.candidates, oracle.requests) an undecodable message and a decodable but invalid
one are written to one partition, followed by a good message on the same partition. confluent-kafka (an
independent client) checks the DLQ records (original key and bytes, error, source topic/partition/offset
headers) and that the good message behind the poison was processed.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from distillery.bus import ensure_topics
from distillery.bus import headers as h
from distillery.bus import topics as t
from distillery.filters import FilterCatalog
from distillery.messages import from_record
from distillery.runtime.supervisor import start_service
from distillery.v1 import article_pb2, common_pb2, events_pb2, oracle_pb2

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(180)]
confluent_kafka = pytest.importorskip("confluent_kafka")

FILTERS = Path(__file__).resolve().parents[2] / "filters"
FILTER = "uplifting"
INPUTS = (t.ARTICLES_RAW, t.ARTICLES_CANDIDATES, t.ORACLE_REQUESTS)


def read_all(bootstrap: str, topic: str, until, timeout: float = 60.0) -> list:
    """Every record of ``topic`` from the beginning, polling until ``until(records)`` or the timeout."""
    consumer = confluent_kafka.Consumer({"bootstrap.servers": bootstrap, "group.id": "poison-check",
                                         "enable.auto.commit": False})
    out: list = []
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        consumer.assign([confluent_kafka.TopicPartition(topic, p, confluent_kafka.OFFSET_BEGINNING)
                         for p in meta.partitions])
        deadline = time.monotonic() + timeout
        while not until(out) and time.monotonic() < deadline:
            for msg in consumer.consume(100, 0.2):
                if not msg.error():
                    out.append(msg)
    finally:
        consumer.close()
    return out


def test_poison_in_every_input_topic_is_dead_lettered_and_the_stage_goes_on(kafka_bootstrap, kafka_prefix,
                                                                             tmp_path):
    from distillery.calibration import Calibration
    from distillery.registry import ModelRegistry
    from distillery.students import compose_text, make_student
    from distillery.synthetic import generate, scores_of

    p = kafka_prefix
    spec = FilterCatalog.load(FILTERS, [FILTER]).get(FILTER)
    records = list(generate(spec, 60, seed=13))
    texts = [compose_text(r["title"], r.get("text") or "") for r in records]
    y = np.array([[scores_of(r)[d] for d in spec.dimension_names] for r in records])
    student = make_student("lexical", spec.dimension_names, filter=spec.name).fit(texts, y)
    registry = ModelRegistry(tmp_path / "inference" / "registry")
    info = registry.register(spec, student, Calibration.fit(student.predict(texts), y, spec.dimension_names))
    registry.promote(spec.name, info.version_id)
    ensure_topics(kafka_bootstrap, [p + name for name in (*t.TOPICS, *(t.dlq(i) for i in INPUTS))], partitions=2)

    def start(name: str):
        args = ["--filters-dir", str(FILTERS), "--filter", FILTER, "--state-dir", str(tmp_path / name),
                "--kafka-bootstrap", kafka_bootstrap, "--log-level", "WARNING"]
        env = {}
        if name == "inference":
            env = {"DISTILLERY_INFERENCE_CANDIDATES_TOPIC": p + t.ARTICLES_CANDIDATES,
                   "DISTILLERY_INFERENCE_SCORED_TOPIC": p + t.ARTICLES_SCORED,
                   "DISTILLERY_INFERENCE_ORACLE_REQUESTS_TOPIC": p + t.ORACLE_REQUESTS,
                   "DISTILLERY_INFERENCE_MODELS_EVENTS_TOPIC": p + t.MODELS_EVENTS,
                   "DISTILLERY_INFERENCE_CONSUMER_GROUP": p + "inference", "DISTILLERY_INFERENCE_AUDIT_RATE": "0",
                   "DISTILLERY_INFERENCE_UNCERTAIN_DAILY_BUDGET": "0",
                   "DISTILLERY_INFERENCE_RELOAD_POLL_SECONDS": "0"}
        else:
            args += ["--kafka-topic-prefix", p, "--kafka-group", p + name]
        return start_service(name, args=args, env=env, log_dir=tmp_path / "logs")

    names = ("prefilter", "inference", "oracle_gateway")
    with ThreadPoolExecutor(3) as pool:
        services = dict(zip(names, pool.map(start, names)))
    try:
        articles = [from_record(r) for r in records[:3]]
        ref = common_pb2.FilterRef(name=FILTER, version=spec.version)
        empty_text = article_pb2.Article(id="poison-empty", title="A title", text="")
        undecodable = b"\xff\x00\x13 definitely not a protobuf"
        plan = {  # input topic -> [(key, value, poison?)], all on partition 1, the good one last
            t.ARTICLES_RAW: [(b"poison-bytes", undecodable, True),
                             (b"poison-empty", empty_text.SerializeToString(), True),
                             (articles[0].id.encode(), articles[0].SerializeToString(), False)],
            t.ARTICLES_CANDIDATES: [
                (b"poison-bytes", undecodable, True),
                (b"poison-empty", events_pb2.CandidateArticle(article=empty_text,
                                                              passed_filters=[ref]).SerializeToString(), True),
                (articles[1].id.encode(), events_pb2.CandidateArticle(article=articles[1], passed_filters=[ref])
                 .SerializeToString(), False)],
            t.ORACLE_REQUESTS: [
                (b"poison-bytes", undecodable, True),
                (b"poison-empty", oracle_pb2.LabelRequest(article=empty_text, filter=ref).SerializeToString(), True),
                (f"{articles[2].id}:{FILTER}".encode(), oracle_pb2.LabelRequest(
                    article=articles[2], filter=ref, reason=oracle_pb2.LABEL_REASON_TRAINING).SerializeToString(),
                 False)],
        }
        offsets: dict[tuple[str, bytes], tuple[int, int]] = {}

        def delivered(err, msg):
            assert err is None, err
            offsets[(msg.topic(), msg.key())] = (msg.partition(), msg.offset())

        producer = confluent_kafka.Producer({"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True})
        for topic, messages in plan.items():
            for key, value, _ in messages:
                producer.produce(p + topic, key=key, value=value, partition=1, on_delivery=delivered,
                                 headers=[(h.TRACE_ID, b"poison-trace")])
                producer.flush(10)  # in order, one by one
        assert len(offsets) == 9

        # The good message behind each poison one was processed.
        decided = read_all(kafka_bootstrap, p + t.ARTICLES_CANDIDATES, lambda out: any(
            m.key() == articles[0].id.encode() for m in out), timeout=30)
        decided += read_all(kafka_bootstrap, p + t.ARTICLES_REJECTED, lambda out: any(
            m.key() == articles[0].id.encode() for m in out), timeout=1 if decided else 30)
        assert articles[0].id.encode() in {m.key() for m in decided}, services["prefilter"].log_tail()
        scored = read_all(kafka_bootstrap, p + t.ARTICLES_SCORED,
                          lambda out: articles[1].id.encode() in {m.key() for m in out})
        assert articles[1].id.encode() in {m.key() for m in scored}, services["inference"].log_tail()
        assert events_pb2.ScoredArticle.FromString(scored[-1].value()).results[0].model_version == info.version_id
        labels = read_all(kafka_bootstrap, p + t.ORACLE_LABELS, lambda out: len(out) >= 1)
        assert [oracle_pb2.OracleLabel.FromString(m.value()).article_id for m in labels] == [articles[2].id]

        for topic, messages in plan.items():
            dead = read_all(kafka_bootstrap, p + t.dlq(topic), lambda out: len(out) >= 2)
            assert sorted(m.key() for m in dead) == [b"poison-bytes", b"poison-empty"], topic
            sent = {key: value for key, value, _ in messages}
            for msg in dead:
                head = {k: v.decode() for k, v in msg.headers()}
                partition, offset = offsets[(p + topic, msg.key())]
                assert msg.value() == sent[msg.key()]
                assert head[h.SOURCE_TOPIC] == p + topic
                assert int(head[h.SOURCE_PARTITION]) == partition == 1
                assert int(head[h.SOURCE_OFFSET]) == offset
                assert head[h.ERROR], "no error text in the DLQ record"
                assert head[h.TRACE_ID] == "poison-trace"  # original headers kept
            errors = {msg.key(): dict(msg.headers())[h.ERROR].decode() for msg in dead}
            assert "empty" in errors[b"poison-empty"], errors
        for svc in services.values():
            assert svc.process.poll() is None, svc.log_tail()
    finally:
        for svc in services.values():
            svc.stop()
