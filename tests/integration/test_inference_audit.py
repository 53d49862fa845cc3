"""Live student-vs-oracle accuracy on a real broker: the inference service (real process) emits audit
requests, an independent client (confluent-kafka) answers them on oracle.labels with known errors, and
the service's /metrics show the sliding MAE, coverage and match counters."""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from distillery.filters import FilterCatalog
from distillery.messages import from_record
from distillery.runtime.supervisor import start_service
from distillery.v1 import common_pb2, events_pb2, oracle_pb2

pytestmark = pytest.mark.integration

confluent_kafka = pytest.importorskip("confluent_kafka")

FILTERS = Path(__file__).resolve().parents[2] / "filters"


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))))


def test_audit_labels_give_the_live_mae_coverage_and_match_counts(kafka_bootstrap, kafka_prefix, tmp_path, read_topic):
    from distillery.calibration import Calibration
    from distillery.registry import ModelRegistry
    from distillery.students import compose_text, make_student
    from distillery.synthetic import generate, scores_of

    spec = FilterCatalog.load(FILTERS, ["uplifting"]).get("uplifting")
    dims = spec.dimension_names
    records = list(generate(spec, 80, seed=11))
    texts = [compose_text(r["title"], r.get("text") or "") for r in records]
    y = np.array([[scores_of(r)[d] for d in dims] for r in records])
    student = make_student("lexical", dims, filter=spec.name).fit(texts, y)
    registry = ModelRegistry(tmp_path / "registry")
    info = registry.register(spec, student, Calibration.identity(dims))  # intervals 0-10: always covered
    registry.promote(spec.name, info.version_id)

    p = kafka_prefix
    topics = {"CANDIDATES_TOPIC": f"{p}articles.candidates", "SCORED_TOPIC": f"{p}articles.scored",
              "ORACLE_REQUESTS_TOPIC": f"{p}oracle.requests", "MODELS_EVENTS_TOPIC": f"{p}models.events",
              "ORACLE_LABELS_TOPIC": f"{p}oracle.labels"}
    env = {f"DISTILLERY_INFERENCE_{k}": v for k, v in topics.items()}
    # Budget 0: nothing goes as "uncertain"; audit rate 1: every (article, filter) is audited.
    env.update(DISTILLERY_INFERENCE_CONSUMER_GROUP=f"{p}inference", DISTILLERY_INFERENCE_UNCERTAIN_DAILY_BUDGET="0",
               DISTILLERY_INFERENCE_AUDIT_RATE="1", DISTILLERY_INFERENCE_RELOAD_POLL_SECONDS="0",
               DISTILLERY_INFERENCE_AUDIT_WINDOW="50")
    svc = start_service("inference", args=[
        "--filters-dir", str(FILTERS), "--filter", "uplifting", "--state-dir", str(tmp_path),
        "--kafka-bootstrap", kafka_bootstrap, "--log-level", "WARNING"], env=env, log_dir=tmp_path / "logs")
    try:
        producer = confluent_kafka.Producer({"bootstrap.servers": kafka_bootstrap})
        articles = [from_record(r) for r in records[:4]]
        for a in articles:
            value_ = events_pb2.CandidateArticle(
                article=a, passed_filters=[common_pb2.FilterRef(name="uplifting", version=1)])
            producer.produce(topics["CANDIDATES_TOPIC"], key=a.id.encode(), value=value_.SerializeToString())
        producer.flush(10)

        requests = read_topic(kafka_bootstrap, topics["ORACLE_REQUESTS_TOPIC"], 4)
        assert len(requests) == 4
        assert all(oracle_pb2.LabelRequest.FromString(m.value()).reason == oracle_pb2.LABEL_REASON_AUDIT
                   for m in requests)
        scored = {m.key().decode(): events_pb2.ScoredArticle.FromString(m.value())
                  for m in read_topic(kafka_bootstrap, topics["SCORED_TOPIC"], 4)}
        assert sorted(scored) == sorted(a.id for a in articles)

        # The "oracle" answers each audit with a known error per dimension: 0.5, 1.0, 1.5, ... (cycled)
        # and the direction that stays inside 0-10, so the MAE of dimension i is exactly its error.
        error_of = {d: 0.5 * (1 + i % 4) for i, d in enumerate(dims)}
        for article_id, article in scored.items():
            result = article.results[0]
            label_dims = []
            for d in result.dimensions:
                e = error_of[d.name]
                label_dims.append(oracle_pb2.DimensionLabel(
                    name=d.name, score=d.calibrated + e if d.calibrated + e <= 10 else d.calibrated - e))
            label = oracle_pb2.OracleLabel(article_id=article_id, filter=common_pb2.FilterRef(name="uplifting",
                                           version=1), reason=oracle_pb2.LABEL_REASON_AUDIT, provider="fake",
                                           dimensions=label_dims)
            producer.produce(topics["ORACLE_LABELS_TOPIC"], key=f"{article_id}:uplifting:x".encode(),
                             value=label.SerializeToString())
        # A label nobody asked for: counted as unmatched.
        stray = oracle_pb2.OracleLabel(article_id="not-asked", filter=common_pb2.FilterRef(name="uplifting"),
                                       reason=oracle_pb2.LABEL_REASON_AUDIT,
                                       dimensions=[oracle_pb2.DimensionLabel(name=dims[0], score=1.0)])
        producer.produce(topics["ORACLE_LABELS_TOPIC"], key=b"not-asked", value=stray.SerializeToString())
        producer.flush(10)

        deadline = time.monotonic() + 30
        samples = scrape(svc.metrics_port)
        while time.monotonic() < deadline and (
                value(samples, "distillery_inference_audit_matched_total", filter="uplifting", reason="audit") != 4
                or value(samples, "distillery_inference_audit_unmatched_total", filter="uplifting",
                         reason="audit") != 1):
            time.sleep(0.3)
            samples = scrape(svc.metrics_port)
        assert value(samples, "distillery_inference_audit_matched_total", filter="uplifting", reason="audit") == 4
        assert value(samples, "distillery_inference_audit_unmatched_total", filter="uplifting", reason="audit") == 1
        for d in dims:
            mae = value(samples, "distillery_inference_audit_mae", filter="uplifting", dimension=d)
            assert mae == pytest.approx(error_of[d], abs=1e-6), d
            assert value(samples, "distillery_inference_audit_interval_total", filter="uplifting", dimension=d,
                         covered="true") == 4
            assert value(samples, "distillery_inference_audit_abs_error_count", filter="uplifting", dimension=d,
                         reason="audit") == 4
        assert value(samples, "distillery_inference_target_mae", filter="uplifting") == spec.student.target_mae
        assert value(samples, "distillery_inference_audit_pending_predictions") == 0
    finally:
        svc.stop()
