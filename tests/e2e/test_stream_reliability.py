"""Reliability of the streaming pipeline: kill -9 a stage mid-stream, a gateway outage; nothing is lost.

Real service processes (prefilter, oracle gateway, inference) on a real broker. The outputs are counted
by confluent-kafka, a client independent of the project's bus code, reading every topic from the start.
Delivery is at least once: a redelivered article may be produced again with identical content, but
never with different content, and the oracle never labels (pays for) the same key twice.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from distillery.bus import ensure_topics
from distillery.bus import topics as t
from distillery.filters import FilterCatalog
from distillery.messages import from_record
from distillery.runtime.supervisor import start_service
from distillery.v1 import common_pb2, events_pb2, oracle_pb2

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(240)]
confluent_kafka = pytest.importorskip("confluent_kafka")

FILTERS = Path(__file__).resolve().parents[2] / "filters"
FILTER = "uplifting"


class Collector:
    """Reads the given topics from the beginning with confluent-kafka (no group, no commits)."""

    def __init__(self, bootstrap: str, topics: list[str]):
        self.topics = topics
        self.messages: dict[str, list] = defaultdict(list)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._consumer = confluent_kafka.Consumer({"bootstrap.servers": bootstrap, "group.id": "reliability-check",
                                                   "enable.auto.commit": False, "fetch.wait.max.ms": 50})
        parts = []
        metadata = self._consumer.list_topics(timeout=10).topics
        for topic in topics:
            meta = metadata.get(topic)
            assert meta is not None and meta.partitions, f"topic {topic} missing"
            parts += [confluent_kafka.TopicPartition(topic, p, confluent_kafka.OFFSET_BEGINNING)
                      for p in meta.partitions]
        self._consumer.assign(parts)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for msg in self._consumer.consume(500, 0.2):
                if msg.error():
                    continue
                with self._lock:
                    self.messages[msg.topic()].append(msg)

    def get(self, topic: str) -> list:
        with self._lock:
            return list(self.messages.get(topic, []))

    def keys(self, topic: str) -> set[str]:
        return {m.key().decode() for m in self.get(topic)}

    def wait(self, condition, timeout: float, what: str, services=()) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            for svc in services:
                assert svc.process.poll() is None, f"{svc.name} died:\n{svc.log_tail()}"
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(0.1)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._consumer.close()


class Pipeline:
    """Prefilter, oracle gateway and inference stages under one topic prefix, with a promoted lexical student
    whose identity calibration makes every result uncertain (so every scored article asks the oracle)."""

    def __init__(self, bootstrap: str, prefix: str, tmp: Path, stages=("prefilter", "oracle_gateway", "inference")):
        from distillery.calibration import Calibration
        from distillery.registry import ModelRegistry
        from distillery.students import compose_text, make_student
        from distillery.synthetic import generate, scores_of

        self.bootstrap, self.prefix, self.tmp = bootstrap, prefix, tmp
        self.spec = FilterCatalog.load(FILTERS, [FILTER]).get(FILTER)
        train = list(generate(self.spec, 80, seed=11))
        texts = [compose_text(r["title"], r.get("text") or "") for r in train]
        y = np.array([[scores_of(r)[d] for d in self.spec.dimension_names] for r in train])
        student = make_student("lexical", self.spec.dimension_names, filter=self.spec.name).fit(texts, y)
        registry = ModelRegistry(tmp / "inference" / "registry")
        info = registry.register(self.spec, student, Calibration.identity(self.spec.dimension_names))
        registry.promote(self.spec.name, info.version_id)
        self.model_version = info.version_id
        self.topic = {name: prefix + name for name in t.TOPICS}
        self.dlq = {name: prefix + t.dlq(name) for name in (t.ARTICLES_RAW, t.ARTICLES_CANDIDATES, t.ORACLE_REQUESTS)}
        ensure_topics(bootstrap, [*self.topic.values(), *self.dlq.values()], partitions=2)
        self.services: dict = {}
        with ThreadPoolExecutor(3) as pool:
            for name, svc in zip(stages, pool.map(self._start, stages)):
                self.services[name] = svc

    def _start(self, name: str):
        common = ["--filters-dir", str(FILTERS), "--filter", FILTER, "--state-dir", str(self.tmp / name),
                  "--kafka-bootstrap", self.bootstrap, "--log-level", "WARNING"]
        env: dict[str, str] = {}
        if name == "inference":
            p = self.prefix
            env = {"DISTILLERY_INFERENCE_CANDIDATES_TOPIC": p + t.ARTICLES_CANDIDATES,
                   "DISTILLERY_INFERENCE_SCORED_TOPIC": p + t.ARTICLES_SCORED,
                   "DISTILLERY_INFERENCE_ORACLE_REQUESTS_TOPIC": p + t.ORACLE_REQUESTS,
                   "DISTILLERY_INFERENCE_MODELS_EVENTS_TOPIC": p + t.MODELS_EVENTS,
                   "DISTILLERY_INFERENCE_CONSUMER_GROUP": p + "inference",
                   "DISTILLERY_INFERENCE_UNCERTAIN_DAILY_BUDGET": "100000",
                   "DISTILLERY_INFERENCE_AUDIT_RATE": "0", "DISTILLERY_INFERENCE_RELOAD_POLL_SECONDS": "0"}
        else:
            common += ["--kafka-topic-prefix", self.prefix, "--kafka-group", self.prefix + name]
        return start_service(name, args=common, env=env, log_dir=self.tmp / "logs")

    def stop(self) -> None:
        for svc in self.services.values():
            svc.stop()

    def label_store_count(self) -> int:
        from distillery.store import LabelStore

        with LabelStore.open(self.tmp / "oracle_gateway" / "labels.sqlite") as store:
            return store.count(FILTER)


def scored_content(msg) -> tuple:
    """(article, filter, model version) -> the result without its phase timings (they differ per run)."""
    scored = events_pb2.ScoredArticle.FromString(msg.value())
    out = []
    for result in scored.results:
        result.ClearField("timings")
        out.append(((scored.article_id, result.filter.name, result.model_version),
                    result.SerializeToString(deterministic=True)))
    return tuple(out)


def check_no_distinct_duplicates(collector: Collector, pipeline: Pipeline) -> None:
    contents: dict[tuple, set[bytes]] = defaultdict(set)
    for msg in collector.get(pipeline.topic[t.ARTICLES_SCORED]):
        for key, content in scored_content(msg):
            contents[key].add(content)
    distinct = {k: len(v) for k, v in contents.items() if len(v) > 1}
    assert not distinct, f"different ScoredArticle contents for the same (article, filter, model): {distinct}"


def check_oracle_paid_once(collector: Collector, pipeline: Pipeline) -> set[str]:
    """Every label key was paid for (cached=false) at most once; returns the labelled article ids."""
    paid: dict[str, int] = defaultdict(int)
    labelled = set()
    for msg in collector.get(pipeline.topic[t.ORACLE_LABELS]):
        label = oracle_pb2.OracleLabel.FromString(msg.value())
        labelled.add(label.article_id)
        if not label.cached:
            paid[msg.key().decode()] += 1
    twice = {k: n for k, n in paid.items() if n > 1}
    assert not twice, f"labelled more than once by the oracle: {twice}"
    assert pipeline.label_store_count() == len(labelled)
    return labelled


def produce(producer, topic: str, items) -> None:
    for key, value in items:
        producer.produce(topic, key=key.encode(), value=value)
        producer.poll(0)
    producer.flush(30)


def test_kill_each_stage_mid_stream_loses_nothing(kafka_bootstrap, kafka_prefix, tmp_path):
    from distillery.synthetic import generate

    pipeline = Pipeline(kafka_bootstrap, kafka_prefix, tmp_path)
    topic = pipeline.topic
    collector = Collector(kafka_bootstrap, [*topic.values(), *pipeline.dlq.values()])
    producer = confluent_kafka.Producer({"bootstrap.servers": kafka_bootstrap, "linger.ms": 5})
    articles = [from_record(r) for r in generate(pipeline.spec, 300, seed=21)]
    chunks = [articles[i:i + 60] for i in range(0, 300, 60)]
    sent: list = []

    def stream(chunk) -> None:
        # Paced so the stages are busy with it when the kill comes.
        for i in range(0, len(chunk), 10):
            produce(producer, topic[t.ARTICLES_RAW], [(a.id, a.SerializeToString()) for a in chunk[i:i + 10]])
            time.sleep(0.05)
        sent.extend(chunk)

    def decided() -> set[str]:
        return collector.keys(topic[t.ARTICLES_SCORED]) | collector.keys(topic[t.ARTICLES_REJECTED])

    try:
        services = lambda: list(pipeline.services.values())
        # Each stage in turn: a chunk streams in, the stage is killed -9 as soon as it produced part of the
        # pipeline's output for it, the rest of the chunk arrives while it is down, then it is restarted.
        outputs = {"prefilter": lambda: collector.keys(topic[t.ARTICLES_CANDIDATES]) | collector.keys(
                       topic[t.ARTICLES_REJECTED]),
                   "inference": lambda: collector.keys(topic[t.ARTICLES_SCORED]),
                   "oracle_gateway": lambda: collector.keys(topic[t.ORACLE_LABELS])}
        for n, stage in enumerate(["prefilter", "inference", "oracle_gateway"]):
            before = len(outputs[stage]())
            feeder = threading.Thread(target=stream, args=(chunks[n],))
            feeder.start()
            collector.wait(lambda s=stage, b=before: len(outputs[s]()) > b, 60, f"{stage} output", services())
            killed = pipeline.services.pop(stage)
            killed.kill()
            assert killed.process.returncode == -9
            feeder.join()  # the rest of the chunk arrives while the stage is down
            pipeline.services[stage] = pipeline._start(stage)
        stream(chunks[3])
        stream(chunks[4])
        ids = {a.id for a in sent}
        assert len(ids) == 300

        dead = lambda: set().union(*(collector.keys(d) for d in pipeline.dlq.values()))
        collector.wait(lambda: ids <= decided() | dead(), 90, "every article scored or rejected", services())
        candidates = collector.keys(topic[t.ARTICLES_CANDIDATES])
        collector.wait(lambda: candidates <= collector.keys(topic[t.ARTICLES_SCORED]), 60, "candidates scored",
                       services())
        requested = lambda: {k.split(":")[0] for k in collector.keys(topic[t.ORACLE_REQUESTS])}
        labelled = lambda: {oracle_pb2.OracleLabel.FromString(m.value()).article_id
                            for m in collector.get(topic[t.ORACLE_LABELS])}
        collector.wait(lambda: requested() <= labelled(), 60, "every oracle request labelled", services())

        assert not dead(), "valid synthetic articles were dead-lettered"
        assert ids == collector.keys(topic[t.ARTICLES_RAW])
        assert 0 < len(collector.keys(topic[t.ARTICLES_REJECTED])) < 300  # off-topic share blocked
        assert requested() == collector.keys(topic[t.ARTICLES_SCORED])  # identity calibration: all uncertain
        check_no_distinct_duplicates(collector, pipeline)
        assert check_oracle_paid_once(collector, pipeline) == requested()
        for svc in pipeline.services.values():
            assert svc.process.poll() is None, svc.log_tail()
    finally:
        collector.close()
        pipeline.stop()


def test_oracle_gateway_outage_then_restart_labels_every_request(kafka_bootstrap, kafka_prefix, tmp_path):
    """Gateway stopped while inference keeps sending oracle.requests; after the restart all are labelled."""
    from distillery.synthetic import generate

    pipeline = Pipeline(kafka_bootstrap, kafka_prefix, tmp_path, stages=("oracle_gateway", "inference"))
    topic = pipeline.topic
    collector = Collector(kafka_bootstrap, [*topic.values(), *pipeline.dlq.values()])
    producer = confluent_kafka.Producer({"bootstrap.servers": kafka_bootstrap, "linger.ms": 5})
    articles = [from_record(r) for r in generate(pipeline.spec, 150, seed=31)]
    ref = [common_pb2.FilterRef(name=FILTER, version=pipeline.spec.version)]

    def candidates(items):
        return [(a.id, events_pb2.CandidateArticle(article=a, passed_filters=ref).SerializeToString())
                for a in items]

    requested = lambda: {k.split(":")[0] for k in collector.keys(topic[t.ORACLE_REQUESTS])}

    def labelled() -> set[str]:
        return {oracle_pb2.OracleLabel.FromString(m.value()).article_id for m in collector.get(topic[t.ORACLE_LABELS])}

    try:
        first, rest = articles[:30], articles[30:]
        produce(producer, topic[t.ARTICLES_CANDIDATES], candidates(first))
        collector.wait(lambda: {a.id for a in first} <= labelled(), 60, "labels before the outage")

        gateway = pipeline.services.pop("oracle_gateway")
        assert gateway.stop() is not None
        produce(producer, topic[t.ARTICLES_CANDIDATES], candidates(rest))
        every = {a.id for a in articles}
        collector.wait(lambda: every <= requested(), 60, "oracle.requests during the outage",
                       [pipeline.services["inference"]])
        time.sleep(2.0)
        assert labelled() == {a.id for a in first}, "labels appeared while the gateway was down"

        pipeline.services["oracle_gateway"] = pipeline._start("oracle_gateway")
        collector.wait(lambda: every <= labelled(), 90, "every request labelled after the restart",
                       list(pipeline.services.values()))
        assert not any(collector.get(d) for d in pipeline.dlq.values())
        assert check_oracle_paid_once(collector, pipeline) == every
        check_no_distinct_duplicates(collector, pipeline)
    finally:
        collector.close()
        pipeline.stop()
