"""The prefilter Kafka stage in the real service process on a real broker; confluent-kafka produces the
input and reads the outputs (an independent client)."""

from __future__ import annotations

import pytest
import yaml

from distillery.bus import headers as h
from distillery.runtime.supervisor import start_service
from distillery.v1 import article_pb2, events_pb2, prefilter_pb2

pytestmark = pytest.mark.integration

confluent_kafka = pytest.importorskip("confluent_kafka")

SCALE = {band: f"band {band}" for band in ("0-2", "3-4", "5-6", "7-8", "9-10")}
BODY = " A long enough body about community energy projects in the region." * 3


def write_filter(root, name, prefilter):
    pkg = root / name / "v1"
    pkg.mkdir(parents=True)
    spec = {
        "name": name, "version": 1, "description": "stage test filter",
        "dimensions": [{"name": "impact", "weight": 1.0, "description": "impact", "scale": SCALE}],
        "tiers": [{"name": "low", "min_overall": 0}],
        "prefilter": prefilter,
    }
    (pkg / "filter.yaml").write_text(yaml.safe_dump(spec))
    (pkg / "prompt.md").write_text("{{dimensions}}\n{{output_schema}}\n{{article}}\n")


def test_stage_routes_candidates_rejections_and_dead_letters(kafka_bootstrap, kafka_prefix, tmp_path, read_topic):
    filters = tmp_path / "filters"
    write_filter(filters, "energy", {"min_length": 100, "require_any": ["energy"]})
    write_filter(filters, "calm", {"min_length": 100, "exclusions": [{"name": "crime", "keywords": ["murder"]}]})
    svc = start_service("prefilter", log_dir=tmp_path / "logs", args=[
        "--filters-dir", str(filters), "--kafka-bootstrap", kafka_bootstrap,
        "--kafka-topic-prefix", kafka_prefix, "--kafka-group", kafka_prefix + "prefilter",
    ])
    try:
        raw = kafka_prefix + "articles.raw"
        producer = confluent_kafka.Producer({"bootstrap.servers": kafka_bootstrap})
        good = article_pb2.Article(id="a1", title="Energy co-op", text="Community energy." + BODY)
        bad_crime = article_pb2.Article(id="a2", title="Town news", text="A murder downtown." + BODY.replace(
            "energy", "garden"))
        empty = article_pb2.Article(id="a3", title="Empty", text="")
        producer.produce(raw, key=b"a1", value=good.SerializeToString(), headers=[(h.TRACE_ID, b"trace-a1")])
        producer.produce(raw, key=b"junk", value=b"\xff\xfenot a protobuf at all")
        producer.produce(raw, key=b"a3", value=empty.SerializeToString())
        producer.produce(raw, key=b"a2", value=bad_crime.SerializeToString())
        producer.produce(raw, key=b"utf8", value=b"\x12\x02\xff\xfe\x1a\x05hello")  # title: invalid UTF-8
        producer.flush(10)

        found = read_topic(kafka_bootstrap, kafka_prefix + "articles.candidates", 1)
        assert len(found) == 1, svc.log_tail()
        (cand,) = found
        candidate = events_pb2.CandidateArticle.FromString(cand.value())
        assert cand.key() == b"a1" and candidate.article.id == "a1"
        assert [(f.name, f.version) for f in candidate.passed_filters] == [("calm", 1), ("energy", 1)]
        assert candidate.article.language == "en"  # detected and filled in
        headers = dict(cand.headers())
        assert headers[h.PASSED_FILTERS] == b"calm/v1,energy/v1" and headers[h.TRACE_ID] == b"trace-a1"

        rejected = read_topic(kafka_bootstrap, kafka_prefix + "articles.rejected", 2)
        decisions = sorted((prefilter_pb2.Decision.FromString(m.value()) for m in rejected),
                           key=lambda d: d.filter.name)
        assert [(d.article_id, d.filter.name, d.reasons[0].code) for d in decisions] == [
            ("a2", "calm", "excluded:crime"), ("a2", "energy", "off_topic")]
        assert decisions[0].reasons[0].matched == "murder"

        dead = read_topic(kafka_bootstrap, raw + ".dlq", 3)
        assert [m.key() for m in dead] == [b"junk", b"a3", b"utf8"]
        assert dead[0].value() == b"\xff\xfenot a protobuf at all"  # original bytes, never lost
        meta = dict(dead[0].headers())
        assert meta[h.SOURCE_TOPIC] == raw.encode() and meta[h.SOURCE_OFFSET] == b"1"
        assert b"not a distillery.v1.Article" in meta[h.ERROR]
        assert b"empty" in dict(dead[1].headers())[h.ERROR]
        assert b"UTF-8" in dict(dead[2].headers())[h.ERROR] and dead[2].value().startswith(b"\x12\x02\xff")
    finally:
        assert svc.stop() == 0
