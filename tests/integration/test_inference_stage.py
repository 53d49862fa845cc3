"""The inference Kafka stage in the real service process on a real broker: candidates are scored to
articles.scored, uncertain ones go to oracle.requests within the daily budget, poison messages to the DLQ.
confluent-kafka (an independent client) produces the input and reads the outputs."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from distillery.filters import FilterCatalog
from distillery.messages import from_record
from distillery.runtime.supervisor import start_service
from distillery.v1 import common_pb2, events_pb2, oracle_pb2

pytestmark = pytest.mark.integration

confluent_kafka = pytest.importorskip("confluent_kafka")

FILTERS = Path(__file__).resolve().parents[2] / "filters"


def test_stage_scores_routes_uncertain_within_budget_and_dead_letters(kafka_bootstrap, kafka_prefix, tmp_path, read_topic):
    from distillery.calibration import Calibration
    from distillery.registry import ModelRegistry
    from distillery.students import compose_text, make_student
    from distillery.synthetic import generate, scores_of

    spec = FilterCatalog.load(FILTERS, ["uplifting"]).get("uplifting")
    records = list(generate(spec, 80, seed=5))
    texts = [compose_text(r["title"], r.get("text") or "") for r in records]
    y = np.array([[scores_of(r)[d] for d in spec.dimension_names] for r in records])
    student = make_student("lexical", spec.dimension_names, filter=spec.name).fit(texts, y)
    registry = ModelRegistry(tmp_path / "registry")
    # Identity calibration: 0-10 intervals, wider than the spec's limit, so every result is uncertain.
    info = registry.register(spec, student, Calibration.identity(spec.dimension_names))
    registry.promote(spec.name, info.version_id)

    p = kafka_prefix
    topics = {"CANDIDATES_TOPIC": f"{p}articles.candidates", "SCORED_TOPIC": f"{p}articles.scored",
              "ORACLE_REQUESTS_TOPIC": f"{p}oracle.requests", "MODELS_EVENTS_TOPIC": f"{p}models.events"}
    env = {f"DISTILLERY_INFERENCE_{k}": v for k, v in topics.items()}
    env.update(DISTILLERY_INFERENCE_CONSUMER_GROUP=f"{p}inference", DISTILLERY_INFERENCE_UNCERTAIN_DAILY_BUDGET="3",
               DISTILLERY_INFERENCE_AUDIT_RATE="0", DISTILLERY_INFERENCE_RELOAD_POLL_SECONDS="0")
    svc = start_service("inference", args=[
        "--filters-dir", str(FILTERS), "--filter", "uplifting", "--state-dir", str(tmp_path),
        "--kafka-bootstrap", kafka_bootstrap, "--log-level", "WARNING"], env=env, log_dir=tmp_path / "logs")
    try:
        producer = confluent_kafka.Producer({"bootstrap.servers": kafka_bootstrap})
        articles = [from_record(r) for r in records[:5]]
        for a in articles:
            value = events_pb2.CandidateArticle(article=a, passed_filters=[common_pb2.FilterRef(name="uplifting",
                                                                                                version=1)])
            producer.produce(topics["CANDIDATES_TOPIC"], key=a.id.encode(), value=value.SerializeToString())
        producer.produce(topics["CANDIDATES_TOPIC"], key=b"bad", value=b"\xff\x00 not a protobuf")
        producer.flush(10)

        scored = read_topic(kafka_bootstrap, topics["SCORED_TOPIC"], 5)
        assert sorted(m.key().decode() for m in scored) == sorted(a.id for a in articles)
        first = events_pb2.ScoredArticle.FromString(scored[0].value())
        assert first.results[0].model_version == info.version_id and first.results[0].uncertain

        requests = read_topic(kafka_bootstrap, topics["ORACLE_REQUESTS_TOPIC"], 5, timeout=8)
        assert len(requests) == 3, "the daily budget of 3 uncertain requests was not respected"
        for m in requests:
            req = oracle_pb2.LabelRequest.FromString(m.value())
            assert req.reason == oracle_pb2.LABEL_REASON_UNCERTAIN and req.filter.name == "uplifting"
            assert m.key().decode() == f"{req.article.id}:uplifting"

        dead = read_topic(kafka_bootstrap, topics["CANDIDATES_TOPIC"] + ".dlq", 1)
        assert len(dead) == 1 and dead[0].key() == b"bad"

        # models.events: with registry polling off, a promotion event alone makes the service reload.
        from distillery.v1 import scoring_pb2, scoring_pb2_grpc

        newer = registry.register(spec, student, Calibration.fit(student.predict(texts), y, spec.dimension_names))
        registry.promote(spec.name, newer.version_id)
        event = events_pb2.ModelPromoted(filter=common_pb2.FilterRef(name="uplifting", version=1),
                                         version=newer.version_id, previous_version=info.version_id)
        stub = scoring_pb2_grpc.ScoringServiceStub(svc.channel())
        served = ""
        deadline = time.monotonic() + 30
        while served != newer.version_id and time.monotonic() < deadline:
            producer.produce(topics["MODELS_EVENTS_TOPIC"], key=b"uplifting", value=event.SerializeToString())
            producer.flush(5)
            time.sleep(0.5)
            reply = stub.Score(scoring_pb2.ScoreRequest(article=articles[0]), timeout=10)
            served = reply.results[0].model_version
        assert served == newer.version_id
    finally:
        svc.stop()


def test_candidates_wait_for_the_first_model_instead_of_being_dropped(kafka_bootstrap, kafka_prefix, tmp_path, read_topic):
    """Cold start: with no model promoted, candidates stay in the topic; once one is promoted they are scored."""
    from distillery.calibration import Calibration
    from distillery.registry import ModelRegistry
    from distillery.students import compose_text, make_student
    from distillery.synthetic import generate, scores_of

    spec = FilterCatalog.load(FILTERS, ["uplifting"]).get("uplifting")
    records = list(generate(spec, 60, seed=8))
    p = kafka_prefix
    topics = {"CANDIDATES_TOPIC": f"{p}articles.candidates", "SCORED_TOPIC": f"{p}articles.scored",
              "ORACLE_REQUESTS_TOPIC": f"{p}oracle.requests", "MODELS_EVENTS_TOPIC": f"{p}models.events"}
    env = {f"DISTILLERY_INFERENCE_{k}": v for k, v in topics.items()}
    env.update(DISTILLERY_INFERENCE_CONSUMER_GROUP=f"{p}inference", DISTILLERY_INFERENCE_AUDIT_RATE="0",
               DISTILLERY_INFERENCE_RELOAD_POLL_SECONDS="0.5")
    svc = start_service("inference", args=[
        "--filters-dir", str(FILTERS), "--filter", "uplifting", "--state-dir", str(tmp_path),
        "--kafka-bootstrap", kafka_bootstrap, "--log-level", "WARNING"], env=env, log_dir=tmp_path / "logs")
    try:
        producer = confluent_kafka.Producer({"bootstrap.servers": kafka_bootstrap})
        articles = [from_record(r) for r in records[:6]]
        for a in articles:
            value = events_pb2.CandidateArticle(article=a)
            producer.produce(topics["CANDIDATES_TOPIC"], key=a.id.encode(), value=value.SerializeToString())
        producer.flush(10)
        assert read_topic(kafka_bootstrap, topics["SCORED_TOPIC"], 1, timeout=6) == []

        texts = [compose_text(r["title"], r["text"]) for r in records]
        y = np.array([[scores_of(r)[d] for d in spec.dimension_names] for r in records])
        student = make_student("lexical", spec.dimension_names, filter=spec.name).fit(texts, y)
        registry = ModelRegistry(tmp_path / "registry")
        info = registry.register(spec, student, Calibration.identity(spec.dimension_names))
        registry.promote(spec.name, info.version_id)

        scored = read_topic(kafka_bootstrap, topics["SCORED_TOPIC"], 6)
        assert sorted(m.key().decode() for m in scored) == sorted(a.id for a in articles)
    finally:
        svc.stop()
