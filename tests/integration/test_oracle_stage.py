"""The oracle Kafka stage in the real gateway process on a real broker (independent confluent-kafka client)."""

from __future__ import annotations

import pytest

from distillery import synthetic
from distillery.bus import headers as h
from distillery.messages import from_record
from distillery.runtime.supervisor import start_service
from distillery.v1 import article_pb2, common_pb2, oracle_pb2

pytestmark = pytest.mark.integration
confluent_kafka = pytest.importorskip("confluent_kafka")


def test_requests_become_labels_and_bad_ones_dead_letter(kafka_bootstrap, kafka_prefix, tmp_path, catalog,
                                                         filters_dir, read_topic):
    svc = start_service("oracle_gateway", log_dir=tmp_path / "logs", args=[
        "--filters-dir", str(filters_dir), "--state-dir", str(tmp_path / "state"),
        "--kafka-bootstrap", kafka_bootstrap, "--kafka-topic-prefix", kafka_prefix,
        "--kafka-group", kafka_prefix + "oracle"])
    try:
        spec = catalog.get("uplifting")
        requests = [oracle_pb2.LabelRequest(article=from_record(r), filter=common_pb2.FilterRef(name="uplifting"))
                    for r in synthetic.generate(spec, 5, seed=2)]
        producer = confluent_kafka.Producer({"bootstrap.servers": kafka_bootstrap})
        topic = kafka_prefix + "oracle.requests"
        for i, req in enumerate(requests):
            producer.produce(topic, key=req.article.id.encode(), value=req.SerializeToString(),
                             headers=[(h.TRACE_ID, f"t{i}".encode())])
        producer.produce(topic, key=requests[0].article.id.encode(), value=requests[0].SerializeToString())
        producer.produce(topic, key=b"junk", value=b"\xff\xfe not protobuf")
        bad = oracle_pb2.LabelRequest(article=article_pb2.Article(id="e", title="t", text=""),
                                      filter=common_pb2.FilterRef(name="uplifting"))
        producer.produce(topic, key=b"e", value=bad.SerializeToString())
        producer.flush(10)
        labels = read_topic(kafka_bootstrap, kafka_prefix + "oracle.labels", 6)
        assert len(labels) == 6
        decoded = []
        for msg in labels:
            label = oracle_pb2.OracleLabel()
            label.ParseFromString(msg.value())
            decoded.append(label)
            assert msg.key().decode().startswith(label.article_id + ":uplifting/v1:")
        assert {lab.article_id for lab in decoded} == {r.article.id for r in requests}
        assert sum(lab.cached for lab in decoded) == 1  # the redelivered request is not paid again
        traces = {dict(m.headers() or []).get(h.TRACE_ID) for m in labels}
        assert b"t0" in traces
        dead = read_topic(kafka_bootstrap, kafka_prefix + "oracle.requests.dlq", 2)
        assert sorted(m.key() for m in dead) == [b"e", b"junk"]
        errors = [dict(m.headers())[h.ERROR].decode() for m in dead]
        assert any("article.text is empty" in e for e in errors)
    finally:
        svc.stop()
