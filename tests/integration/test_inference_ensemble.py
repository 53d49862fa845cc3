"""Ensemble disagreement in the real service and stage: results whose members' spread exceeds the filter's
``student.uncertain_member_spread`` are uncertain (and go to oracle.requests like other uncertain results);
the spread is in every DimensionScore."""

from __future__ import annotations

import shutil
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


def _filters_with_spread_limit(root: Path, limit: float) -> Path:
    """A copy of the uplifting package whose spec sets ``student.uncertain_member_spread``."""
    folder = root / "filters"
    shutil.copytree(FILTERS / "uplifting", folder / "uplifting")
    yaml = folder / "uplifting" / "v1" / "filter.yaml"
    text = yaml.read_text()
    assert "  uncertain_interval_width: 4.0\n" in text
    yaml.write_text(text.replace("  uncertain_interval_width: 4.0\n",
                                 f"  uncertain_interval_width: 4.0\n  uncertain_member_spread: {limit}\n"))
    return folder


def test_ensemble_disagreement_is_uncertain_and_routed(kafka_bootstrap, kafka_prefix, tmp_path, read_topic):
    from distillery.calibration import Calibration
    from distillery.registry import ModelRegistry
    from distillery.students import compose_text, make_student
    from distillery.synthetic import generate, scores_of

    spec = FilterCatalog.load(FILTERS, ["uplifting"]).get("uplifting")
    records = list(generate(spec, 110, seed=11))
    texts = [compose_text(r["title"], r.get("text") or "") for r in records]
    y = np.array([[scores_of(r)[d] for d in spec.dimension_names] for r in records])
    student = make_student("ensemble", spec.dimension_names, filter=spec.name, k=3).fit(texts[:100], y[:100])
    _, spread = student.predict_with_spread(texts[100:])
    worst = spread.max(axis=1)  # an article is uncertain when any dimension's spread is over the limit
    limit = float(np.round(np.median(worst), 4))
    expected = {from_record(r).id: bool(w > limit) for r, w in zip(records[100:], worst, strict=True)}
    assert 0 < sum(expected.values()) < len(expected), "the limit must split the articles"

    registry = ModelRegistry(tmp_path / "registry")
    # Narrow intervals: only the members' disagreement can make a result uncertain here.
    info = registry.register(spec, student, Calibration.identity(spec.dimension_names, 0.5))
    registry.promote(spec.name, info.version_id)

    p = kafka_prefix
    topics = {"CANDIDATES_TOPIC": f"{p}articles.candidates", "SCORED_TOPIC": f"{p}articles.scored",
              "ORACLE_REQUESTS_TOPIC": f"{p}oracle.requests", "MODELS_EVENTS_TOPIC": f"{p}models.events"}
    env = {f"DISTILLERY_INFERENCE_{k}": v for k, v in topics.items()}
    env.update(DISTILLERY_INFERENCE_CONSUMER_GROUP=f"{p}inference", DISTILLERY_INFERENCE_UNCERTAIN_DAILY_BUDGET="100",
               DISTILLERY_INFERENCE_AUDIT_RATE="0", DISTILLERY_INFERENCE_RELOAD_POLL_SECONDS="0")
    svc = start_service("inference", args=[
        "--filters-dir", str(_filters_with_spread_limit(tmp_path, limit)), "--filter", "uplifting",
        "--state-dir", str(tmp_path), "--kafka-bootstrap", kafka_bootstrap, "--log-level", "WARNING"],
        env=env, log_dir=tmp_path / "logs")
    try:
        producer = confluent_kafka.Producer({"bootstrap.servers": kafka_bootstrap})
        articles = [from_record(r) for r in records[100:]]
        for a in articles:
            value = events_pb2.CandidateArticle(article=a, passed_filters=[common_pb2.FilterRef(name="uplifting",
                                                                                                version=1)])
            producer.produce(topics["CANDIDATES_TOPIC"], key=a.id.encode(), value=value.SerializeToString())
        producer.flush(10)

        scored = read_topic(kafka_bootstrap, topics["SCORED_TOPIC"], len(articles))
        results = {m.key().decode(): events_pb2.ScoredArticle.FromString(m.value()).results[0] for m in scored}
        assert {k: r.uncertain for k, r in results.items()} == expected
        by_id = {from_record(r).id: s for r, s in zip(records[100:], spread, strict=True)}
        for article_id, result in results.items():
            np.testing.assert_allclose([d.spread for d in result.dimensions], by_id[article_id], atol=1e-9)

        wanted = sum(expected.values())
        requests = read_topic(kafka_bootstrap, topics["ORACLE_REQUESTS_TOPIC"], wanted + 1, timeout=8)
        routed = {oracle_pb2.LabelRequest.FromString(m.value()).article.id for m in requests}
        assert routed == {k for k, uncertain in expected.items() if uncertain}
        assert all(oracle_pb2.LabelRequest.FromString(m.value()).reason == oracle_pb2.LABEL_REASON_UNCERTAIN
                   for m in requests)
    finally:
        svc.stop()
