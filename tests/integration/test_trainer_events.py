"""Promotion publishes ModelPromoted on models.events (real trainer process, real Kafka-protocol broker)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "unit" / "trainer"))
from helpers import write_filter, write_labels

from distillery.runtime.supervisor import start_service
from distillery.v1 import common_pb2, events_pb2, trainer_pb2, trainer_pb2_grpc

pytestmark = pytest.mark.integration


def test_promotions_publish_model_events(tmp_path, kafka_bootstrap, kafka_prefix):
    from distillery.bus import ensure_topics, make_consumer

    topic = f"{kafka_prefix}models.events"
    ensure_topics(kafka_bootstrap, [topic])
    write_filter(tmp_path / "filters")
    labels = write_labels(tmp_path / "labels.jsonl", n=120, seed=2)
    svc = start_service("trainer", args=["--filters-dir", str(tmp_path / "filters"), "--state-dir",
                                         str(tmp_path / "state")], log_dir=tmp_path / "logs",
                        env={"DISTILLERY_TRAINER_KAFKA_BOOTSTRAP": kafka_bootstrap,
                             "DISTILLERY_TRAINER_DATA_ROOT": str(tmp_path),
                             "DISTILLERY_TRAINER_MODELS_TOPIC": topic})
    try:
        with svc.channel() as channel:
            stub = trainer_pb2_grpc.TrainerServiceStub(channel)
            ref = common_pb2.FilterRef(name="tiny", version=1)
            versions = []
            for _ in range(2):
                job = stub.StartJob(trainer_pb2.StartJobRequest(
                    filter=ref, student_kind=trainer_pb2.STUDENT_KIND_LEXICAL, labels_path=str(labels),
                    promote=True, params={"char_ngram_max": "0"}))
                final = list(stub.WatchJob(trainer_pb2.GetJobRequest(job_id=job.job_id), timeout=120))[-1]
                assert final.state == trainer_pb2.JOB_STATE_SUCCEEDED, final.error
                versions.append(final.model_version)
            stub.Promote(trainer_pb2.PromoteRequest(filter=ref, version=versions[0]))
        consumer = make_consumer(kafka_bootstrap, f"{kafka_prefix}g", [topic])
        events = []
        deadline = time.monotonic() + 30
        while len(events) < 3 and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                for rec in records:
                    assert rec.key == b"tiny"
                    events.append(events_pb2.ModelPromoted.FromString(rec.value))
        consumer.close()
        assert [(e.version, e.previous_version) for e in events] == [
            (versions[0], ""), (versions[1], versions[0]), (versions[0], versions[1])]
        assert all(e.filter.name == "tiny" and e.filter.version == 1 and e.uri for e in events)
    finally:
        svc.stop()
