"""kafka-python client factories with the settings every stage needs, and topic creation.

Transport security (TLS, SASL) is one per process: a service calls :func:`use_security` with its settings'
``kafka_security()`` at start, and every producer, consumer and admin client made here uses it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping

from kafka import ConsumerRebalanceListener, KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

logger = logging.getLogger(__name__)

_SECURITY: dict = {}
_POLICY = {"create_topics": True}


class MissingTopicError(RuntimeError):
    """A topic the service needs does not exist and it may not create it (provisioned deployments)."""


def configure(security: Mapping[str, object] | None = None, create_topics: bool = True) -> None:
    """Per process, from the service's settings: TLS/SASL options (kafka-python names: security_protocol,
    sasl_*, ssl_*) for every client, and whether :func:`ensure_topics` may create topics or only checks them."""
    _SECURITY.clear()
    _SECURITY.update(security or {})
    _POLICY["create_topics"] = create_topics


def configure_from(settings) -> None:
    """:func:`configure` from a service's settings (the shared kafka_* vocabulary)."""
    configure(settings.kafka_security(), settings.kafka_create_topics)


def security_options() -> dict:
    return dict(_SECURITY)


def make_producer(bootstrap: str, client_id: str = "distillery", **overrides) -> KafkaProducer:
    """Idempotent producer, acks=all: a retried send is written once; an acknowledged send is durable.

    Values and keys are bytes (protobuf); stages encode themselves.
    """
    config = {
        **_SECURITY,
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
        **_SECURITY,
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
    bootstrap: str, topics: Iterable[str], partitions: int = 1, replication: int = 1, timeout: float = 30.0,
    create: bool | None = None,
) -> list[str]:
    """Create the topics that do not exist yet; returns the ones created. Retries while the broker starts.

    Where topics are provisioned (``configure(create_topics=False)``), only checks: MissingTopicError names
    the missing ones, so a stage never runs against a topic the broker would auto-create with defaults.
    """
    wanted = list(dict.fromkeys(topics))
    deadline = time.monotonic() + timeout
    while True:
        try:
            admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="distillery-admin", **_SECURITY)
            break
        except KafkaError as exc:
            if time.monotonic() > deadline:
                raise ConnectionError(f"Kafka at {bootstrap} is not reachable: {exc}") from None
            time.sleep(0.2)
    try:
        existing = set(admin.list_topics())
        missing = [t for t in wanted if t not in existing]
        if missing and not (_POLICY["create_topics"] if create is None else create):
            raise MissingTopicError(f"Kafka at {bootstrap} has no topic {', '.join(missing)}; run `distillery "
                                    "topics ensure` (the chart's topics hook) or set kafka_create_topics: true")
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
