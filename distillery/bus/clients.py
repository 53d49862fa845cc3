"""kafka-python client factories with the settings every stage needs, and topic creation."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from kafka import ConsumerRebalanceListener, KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

logger = logging.getLogger(__name__)


def make_producer(bootstrap: str, client_id: str = "distillery", **overrides) -> KafkaProducer:
    """Idempotent producer, acks=all: a retried send is written once; an acknowledged send is durable.

    Values and keys are bytes (protobuf); stages encode themselves.
    """
    config = {
        "bootstrap_servers": bootstrap,
        "client_id": client_id,
        "acks": "all",
        "enable_idempotence": True,
        "retries": 2**31 - 1,
        "max_in_flight_requests_per_connection": 5,
        "linger_ms": 5,
        "request_timeout_ms": 30_000,
    }
    config.update(overrides)
    return KafkaProducer(**config)


def make_consumer(
    bootstrap: str, group_id: str, topics: Iterable[str] = (), client_id: str = "distillery", **overrides
) -> KafkaConsumer:
    """Manual-commit consumer (a stage commits only after its output is acknowledged), fast group join.

    ``session_timeout_ms=6000`` / ``heartbeat_interval_ms=500`` notice a dead member in seconds and let a
    group form in about a second; the library defaults (45 s / 3 s) make restarts and tests slow.
    """
    config = {
        "bootstrap_servers": bootstrap,
        "group_id": group_id,
        "client_id": client_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "session_timeout_ms": 6000,
        "heartbeat_interval_ms": 500,
        "max_poll_interval_ms": 300_000,
        "fetch_max_wait_ms": 100,
    }
    config.update(overrides)
    consumer = KafkaConsumer(**config)
    topics = list(topics)
    if topics:
        consumer.subscribe(topics, listener=_LogRebalance(group_id))
    return consumer


class _LogRebalance(ConsumerRebalanceListener):
    """Log partition moves: the first thing to look at when a stage seems to consume nothing."""

    def __init__(self, group_id: str):
        self.group_id = group_id

    def on_partitions_revoked(self, revoked):
        if revoked:
            logger.info("partitions revoked", extra={"fields": {"group": self.group_id,
                                                                "partitions": sorted(f"{tp.topic}/{tp.partition}"
                                                                                     for tp in revoked)}})

    def on_partitions_assigned(self, assigned):
        logger.info("partitions assigned", extra={"fields": {"group": self.group_id,
                                                             "partitions": sorted(f"{tp.topic}/{tp.partition}"
                                                                                  for tp in assigned)}})


def ensure_topics(
    bootstrap: str, topics: Iterable[str], partitions: int = 1, replication: int = 1, timeout: float = 30.0
) -> list[str]:
    """Create the topics that do not exist yet; returns the ones created. Retries while the broker starts."""
    wanted = list(dict.fromkeys(topics))
    deadline = time.monotonic() + timeout
    while True:
        try:
            admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="distillery-admin")
            break
        except KafkaError as exc:
            if time.monotonic() > deadline:
                raise ConnectionError(f"Kafka at {bootstrap} is not reachable: {exc}") from None
            time.sleep(0.2)
    try:
        existing = set(admin.list_topics())
        missing = [t for t in wanted if t not in existing]
        created: list[str] = []
        for topic in missing:
            try:
                admin.create_topics([NewTopic(topic, partitions, replication)])
                created.append(topic)
            except TopicAlreadyExistsError:
                pass  # another replica created it meanwhile
        if created:
            logger.info("topics created", extra={"fields": {"topics": created}})
        return created
    finally:
        admin.close()
