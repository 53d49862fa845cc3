"""Consumer lag measured from the broker: each watched group's committed offsets against the partitions' ends.

A stage reporting its own lag stops reporting when it dies (the gauge freezes at its last value) and keeps the
series of partitions a rebalance took away; lag read from the broker has neither problem. ``distillery
lag-exporter`` (one small Deployment in the chart) exports ``distillery_trainer_consumer_group_lag_messages``
per group, topic and partition; the HPAs scale the stages on it and the alerts watch it. Series of partitions,
topics or groups that are no longer measured are removed at once.

The end of a partition is the high watermark of a Fetch response (read from one record before the end
reported by ListOffsets): some Kafka-protocol brokers (tansu 0.6) answer ListOffsets(latest) with the base
offset of the last record batch + 1, which undercounts when producers batch.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import ClassVar

from kafka import KafkaConsumer
from kafka.structs import TopicPartition
from prometheus_client import Gauge
from pydantic import Field
from pydantic_settings import SettingsConfigDict

from distillery.bus.clients import security_options
from distillery.bus.topics import ARTICLES_CANDIDATES, ARTICLES_RAW, ORACLE_REQUESTS, with_prefix
from distillery.config import ServiceSettings

logger = logging.getLogger(__name__)

LAG = Gauge("distillery_trainer_consumer_group_lag_messages",
            "Messages of a partition not yet committed by a consumer group (partition end - committed offset), "
            "measured from the broker.", ["group", "topic", "partition"])
LAST_SUCCESS = Gauge("distillery_trainer_lag_read_timestamp_seconds",
                     "When the lag exporter last read every watched group from the broker.")

# The stages' default consumer groups and their input topics.
DEFAULT_GROUPS = {
    "distillery-prefilter": [ARTICLES_RAW],
    "distillery-oracle-gateway": [ORACLE_REQUESTS],
    "inference": [ARTICLES_CANDIDATES],
}


class LagExporterSettings(ServiceSettings):
    """Section ``lag_exporter:`` / env ``DISTILLERY_LAG_EXPORTER_*`` (plus the shared kafka_* settings)."""

    section: ClassVar[str] = "lag_exporter"
    model_config = SettingsConfigDict(env_prefix="DISTILLERY_LAG_EXPORTER_", extra="forbid", validate_default=True)

    metrics_port: int = Field(default=9105, ge=0, le=65535, description="Prometheus /metrics port.")
    groups: dict[str, list[str]] = Field(
        default_factory=lambda: {g: list(t) for g, t in DEFAULT_GROUPS.items()},
        description="Consumer groups to watch and their input topics (JSON in the environment).")
    topic_prefix: str = Field(default="", description="Namespace prepended to every topic name.")
    interval_seconds: float = Field(default=15.0, gt=0, description="How often lag is read from the broker.")


class LagReader:
    """Reads committed and end offsets with one admin client and one group-less consumer (never joins a group)."""

    def __init__(self, bootstrap: str, groups: dict[str, list[str]], topic_prefix: str = ""):
        from kafka.admin import KafkaAdminClient

        self.groups = {g: [with_prefix(t, topic_prefix) for t in topics] for g, topics in groups.items()}
        self._admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="distillery-lag", **security_options())
        self._consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                       client_id="distillery-lag", fetch_max_wait_ms=50,
                                       max_partition_fetch_bytes=65536, **security_options())

    def close(self) -> None:
        self._consumer.close()
        self._admin.close()

    def partitions(self, topic: str) -> list[TopicPartition]:
        return [TopicPartition(topic, p) for p in sorted(self._consumer.partitions_for_topic(topic) or ())]

    def ends(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        """High watermark per partition, from a Fetch response (see the module's note on ListOffsets)."""
        if not tps:
            return {}
        listed = self._consumer.end_offsets(tps)
        self._consumer.assign(tps)
        for tp in tps:
            self._consumer.seek(tp, max(listed[tp] - 1, 0))
        ends: dict[TopicPartition, int] = {}
        deadline = time.monotonic() + 5.0
        while len(ends) < len(tps) and time.monotonic() < deadline:
            self._consumer.poll(timeout_ms=200, max_records=1)
            for tp in tps:
                high = self._consumer.highwater(tp)
                if high is not None:
                    ends[tp] = max(high, listed[tp])
        for tp in tps:
            ends.setdefault(tp, listed[tp])
        return ends

    def read(self) -> dict[tuple[str, str, int], int]:
        """{(group, topic, partition): lag} for every watched group and partition."""
        wanted = {g: [tp for t in topics for tp in self.partitions(t)] for g, topics in self.groups.items()}
        all_tps = sorted({tp for tps in wanted.values() for tp in tps})
        ends = self.ends(all_tps)
        starts = self._consumer.beginning_offsets(all_tps) if all_tps else {}
        out: dict[tuple[str, str, int], int] = {}
        for group, tps in wanted.items():
            committed = self._admin.list_group_offsets(group).get(group, {})
            for tp in tps:
                meta = committed.get(tp)
                position = meta.offset if meta is not None and meta.offset >= 0 else starts.get(tp, 0)
                out[(group, tp.topic, tp.partition)] = max(0, ends[tp] - position)
        return out


def publish(snapshot: dict[tuple[str, str, int], int], exported: set[tuple[str, str, str]]) -> set:
    """Set the gauge from ``snapshot`` and remove every series ``exported`` before that it no longer holds."""
    now = {(g, t, str(p)) for g, t, p in snapshot}
    for labels in exported - now:
        LAG.remove(*labels)
    for (group, topic, partition), lag in snapshot.items():
        LAG.labels(group, topic, str(partition)).set(lag)
    return now


class LagExporter:
    """Reads the lag every ``interval`` seconds in a thread; errors are logged and the old values removed."""

    def __init__(self, settings: LagExporterSettings):
        self.settings = settings
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._exported: set = set()
        self._reader: LagReader | None = None

    def poll_once(self) -> dict[tuple[str, str, int], int]:
        if self._reader is None:
            self._reader = LagReader(self.settings.kafka_bootstrap, self.settings.groups, self.settings.topic_prefix)
        snapshot = self._reader.read()
        self._exported = publish(snapshot, self._exported)
        LAST_SUCCESS.set_to_current_time()
        return snapshot

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception as exc:  # noqa: BLE001 - the broker may be away; never export stale numbers
                logger.warning("lag not read", extra={"fields": {"error": f"{type(exc).__name__}: {exc}"[:300]}})
                self._exported = publish({}, self._exported)
                self._close_reader()
            self._stop.wait(self.settings.interval_seconds)
        self._close_reader()

    def _close_reader(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            try:
                reader.close()
            except Exception:
                logger.debug("closing the lag reader failed", exc_info=True)

    def start(self) -> LagExporter:
        self._thread = threading.Thread(target=self.run, name="lag-exporter", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
