"""Stages scale by consumer group: two inference workers split the partitions; one leaving hands them over."""

from __future__ import annotations

import re
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from distillery.bus import ensure_topics
from distillery.filters import FilterCatalog
from distillery.messages import from_record
from distillery.runtime.supervisor import start_service
from distillery.v1 import events_pb2

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
confluent_kafka = pytest.importorskip("confluent_kafka")
FILTERS = Path(__file__).resolve().parents[2] / "filters"


def _consumed(svc, topic: str) -> float:
    body = urllib.request.urlopen(f"http://127.0.0.1:{svc.metrics_port}/metrics", timeout=5).read().decode()
    m = re.search(rf'distillery_inference_kafka_consumed_total{{topic="{re.escape(topic)}"}} ([0-9.e+]+)', body)
    return float(m.group(1)) if m else 0.0


def _produce(producer, topic, articles) -> None:
    for a in articles:
        producer.produce(topic, key=a.id.encode(), value=events_pb2.CandidateArticle(article=a).SerializeToString())
    producer.flush(10)


def test_two_workers_split_partitions_and_one_leaving_hands_over(kafka_bootstrap, kafka_prefix, tmp_path, read_topic):
    from distillery.calibration import Calibration
    from distillery.registry import ModelRegistry
    from distillery.students import compose_text, make_student
    from distillery.synthetic import generate, scores_of

    spec = FilterCatalog.load(FILTERS, ["uplifting"]).get("uplifting")
    records = list(generate(spec, 260, seed=11, off_topic_share=0.0))
    texts = [compose_text(r["title"], r["text"]) for r in records]
    y = np.array([[scores_of(r)[d] for d in spec.dimension_names] for r in records])
    student = make_student("lexical", spec.dimension_names, filter=spec.name, char_ngram_max=0).fit(texts, y)
    registry = ModelRegistry(tmp_path / "registry")
    info = registry.register(spec, student, Calibration.identity(spec.dimension_names))
    registry.promote(spec.name, info.version_id)

    candidates, scored = f"{kafka_prefix}articles.candidates", f"{kafka_prefix}articles.scored"
    ensure_topics(kafka_bootstrap, [candidates], partitions=4)
    env = {"DISTILLERY_INFERENCE_CANDIDATES_TOPIC": candidates, "DISTILLERY_INFERENCE_SCORED_TOPIC": scored,
           "DISTILLERY_INFERENCE_ORACLE_REQUESTS_TOPIC": f"{kafka_prefix}oracle.requests",
           "DISTILLERY_INFERENCE_MODELS_EVENTS_TOPIC": f"{kafka_prefix}models.events",
           "DISTILLERY_INFERENCE_ORACLE_LABELS_TOPIC": f"{kafka_prefix}oracle.labels",
           "DISTILLERY_INFERENCE_CONSUMER_GROUP": f"{kafka_prefix}inference",
           "DISTILLERY_INFERENCE_AUDIT_RATE": "0", "DISTILLERY_INFERENCE_UNCERTAIN_DAILY_BUDGET": "0"}
    args = ["--filters-dir", str(FILTERS), "--filter", "uplifting", "--state-dir", str(tmp_path),
            "--kafka-bootstrap", kafka_bootstrap, "--log-level", "WARNING"]
    workers = [start_service("inference", args=args, env=env, log_dir=tmp_path / f"logs{i}") for i in range(2)]
    producer = confluent_kafka.Producer({"bootstrap.servers": kafka_bootstrap})
    articles = [from_record(r) for r in records]
    try:
        time.sleep(8)  # let the group settle with both members
        _produce(producer, candidates, articles[:160])
        got = read_topic(kafka_bootstrap, scored, 160, timeout=60)
        assert {m.key().decode() for m in got} == {a.id for a in articles[:160]}
        shares = [_consumed(w, candidates) for w in workers]
        assert all(s > 0 for s in shares), f"both workers must consume a share of the partitions: {shares}"

        workers[0].stop()  # one leaves: the other gets its partitions
        _produce(producer, candidates, articles[160:])
        got = read_topic(kafka_bootstrap, scored, 260, timeout=90)
        assert {m.key().decode() for m in got} == {a.id for a in articles}
    finally:
        for w in workers:
            w.stop()
