"""Consumer lag read from a real broker (tansu): committed offsets of a group against the partitions' ends,
whether or not any member of the group is alive; series that are no longer measured disappear."""

from __future__ import annotations

import time

import pytest
from kafka.structs import OffsetAndMetadata, TopicPartition
from prometheus_client import REGISTRY

from distillery.bus import ensure_topics, make_consumer, make_producer
from distillery.bus.lag import LagExporter, LagExporterSettings

pytestmark = pytest.mark.integration


def _lag(group: str, topic: str, partition: int) -> float | None:
    return REGISTRY.get_sample_value("distillery_trainer_consumer_group_lag_messages",
                                     {"group": group, "topic": topic, "partition": str(partition)})


def _produce(bootstrap: str, topic: str, keys: list[str]) -> None:
    producer = make_producer(bootstrap)
    for key in keys:  # batches of several records: the exporter must not undercount them
        producer.send(topic, key=key.encode(), value=b"x", partition=int(key) % 2)
    producer.flush()
    producer.close()


def test_lag_comes_from_the_broker_and_stale_series_are_removed(kafka_bootstrap, kafka_prefix):
    topic, group = f"{kafka_prefix}articles.raw", f"{kafka_prefix}prefilter"
    ensure_topics(kafka_bootstrap, [topic], partitions=2)
    _produce(kafka_bootstrap, topic, [str(i) for i in range(10)])  # 5 per partition
    # A member consumes and commits 3 records of partition 0, then dies (closes): nobody reports lag any more.
    consumer = make_consumer(kafka_bootstrap, group, [], enable_auto_commit=False)
    tp0 = TopicPartition(topic, 0)
    consumer.assign([tp0])
    consumer.seek(tp0, 0)
    consumer.commit({tp0: OffsetAndMetadata(3, "", -1)})
    consumer.close()

    settings = LagExporterSettings.load(kafka_bootstrap=kafka_bootstrap, groups={group: [topic]})
    exporter = LagExporter(settings)
    try:
        snapshot = exporter.poll_once()
        assert snapshot == {(group, topic, 0): 2, (group, topic, 1): 5}
        assert _lag(group, topic, 0) == 2 and _lag(group, topic, 1) == 5
        assert REGISTRY.get_sample_value("distillery_trainer_lag_read_timestamp_seconds") > 0
        _produce(kafka_bootstrap, topic, ["0", "2", "4"])
        exporter.poll_once()
        assert _lag(group, topic, 0) == 5
        # The group is no longer watched: its series go at the next read (not frozen at their last value).
        exporter.settings = LagExporterSettings.load(kafka_bootstrap=kafka_bootstrap, groups={})
        exporter._close_reader()
        assert exporter.poll_once() == {}
        assert _lag(group, topic, 0) is None and _lag(group, topic, 1) is None
    finally:
        exporter.stop()
        exporter._close_reader()


def test_the_exporter_command_serves_the_lag(kafka_bootstrap, kafka_prefix, tmp_path):
    import json
    import os
    import subprocess
    import sys
    import urllib.request

    from distillery.bus.broker import free_port

    topic, group = f"{kafka_prefix}oracle.requests", f"{kafka_prefix}oracle"
    ensure_topics(kafka_bootstrap, [topic], partitions=1)
    _produce(kafka_bootstrap, topic, ["0", "2", "4", "6"])
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISTILLERY_")}
    env.update({"DISTILLERY_KAFKA_BOOTSTRAP": kafka_bootstrap, "DISTILLERY_LAG_EXPORTER_INTERVAL_SECONDS": "0.5",
                "DISTILLERY_LAG_EXPORTER_GROUPS": json.dumps({group: [topic]})})
    exe = os.path.join(os.path.dirname(sys.executable), "distillery")
    proc = subprocess.Popen([exe, "lag-exporter", "--metrics-port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        wanted = f'distillery_trainer_consumer_group_lag_messages{{group="{group}",partition="0",topic="{topic}"}} 4.0'
        while True:
            try:
                text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
                if wanted in text:
                    break
            except OSError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.poll() else ""
            time.sleep(0.3)
    finally:
        proc.terminate()
        proc.wait(20)
    assert proc.returncode == 0


def test_the_trainer_exports_the_lag_when_asked(kafka_bootstrap, kafka_prefix, tmp_path):
    """The chart's wiring: the single trainer replica serves the broker-measured lag on its /metrics."""
    import json
    import urllib.request

    from distillery.runtime.supervisor import start_service

    topic, group = f"{kafka_prefix}articles.candidates", f"{kafka_prefix}inference"
    ensure_topics(kafka_bootstrap, [topic], partitions=1)
    _produce(kafka_bootstrap, topic, ["0", "2", "4"])
    svc = start_service("trainer", args=["--state-dir", str(tmp_path), "--log-level", "WARNING"],
                        env={"DISTILLERY_KAFKA_BOOTSTRAP": kafka_bootstrap,
                             "DISTILLERY_TRAINER_EXPORT_CONSUMER_LAG": "true",
                             "DISTILLERY_LAG_EXPORTER_INTERVAL_SECONDS": "0.5",
                             "DISTILLERY_LAG_EXPORTER_GROUPS": json.dumps({group: [topic]})},
                        log_dir=tmp_path / "logs")
    try:
        wanted = f'distillery_trainer_consumer_group_lag_messages{{group="{group}",partition="0",topic="{topic}"}} 3.0'
        deadline = time.monotonic() + 60
        while True:
            text = urllib.request.urlopen(f"http://127.0.0.1:{svc.metrics_port}/metrics", timeout=5).read().decode()
            if wanted in text:
                break
            assert time.monotonic() < deadline, svc.log_tail()
            time.sleep(0.3)
    finally:
        svc.stop()
