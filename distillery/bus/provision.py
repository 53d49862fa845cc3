"""Topic provisioning: every topic the services use, with partitions, replication and retention from config.

``distillery topics ensure`` (and the chart's pre-install/pre-upgrade hook Job that runs it) creates the
missing topics and grows those with fewer partitions than configured; it never shrinks or deletes anything,
so running it again changes nothing (idempotent). Services deployed this way run with
``kafka_create_topics: false`` and stop at start, naming the topic, when one is missing
(:func:`require_topics`): a stage never relies on a broker's auto-creation (one partition, replication 1).

Partitions bound parallelism: a consumer group uses at most one member per partition, so the stream topics
need at least as many partitions as the largest replica count an HPA may reach.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import ClassVar

from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewPartitions, NewTopic
from kafka.errors import IncompatibleBrokerVersion, KafkaError, TopicAlreadyExistsError
from pydantic import Field
from pydantic_settings import SettingsConfigDict

from distillery.bus.clients import security_options
from distillery.bus.topics import MODELS_EVENTS, TOPICS, dlq, with_prefix
from distillery.config import ServiceSettings

logger = logging.getLogger(__name__)
HOUR_MS = 3_600_000


class TopicsSettings(ServiceSettings):
    """Section ``topics:`` / env ``DISTILLERY_TOPICS_*`` (plus the shared Kafka connection settings)."""

    section: ClassVar[str] = "topics"
    model_config = SettingsConfigDict(env_prefix="DISTILLERY_TOPICS_", extra="forbid", validate_default=True)

    prefix: str = Field(default="", description="Namespace prepended to every topic name.")
    partitions: int = Field(
        default=4, ge=1, description="Partitions of the stream topics (articles.*, oracle.*) and their DLQs: the "
        "most consumers of one stage that can work at once.")
    control_partitions: int = Field(
        default=1, ge=1, description="Partitions of models.events (ordered per filter, read by every replica).")
    replication_factor: int = Field(default=1, ge=1, description="Copies of each partition (3 in production).")
    retention_hours: float = Field(default=168.0, ge=0, description="retention.ms of the topics (0: broker's).")
    dlq_retention_hours: float = Field(default=720.0, ge=0, description="retention.ms of the dead-letter topics.")


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication: int
    configs: dict[str, str] = field(default_factory=dict)


@dataclass
class EnsureReport:
    created: list[str] = field(default_factory=list)
    grown: dict[str, tuple[int, int]] = field(default_factory=dict)  # name -> (before, after)
    unchanged: list[str] = field(default_factory=list)
    configured: list[str] = field(default_factory=list)


class ProvisionError(RuntimeError):
    """A topic could not be brought to its configured shape; the message names it and what to do."""


def planned_topics(settings: TopicsSettings) -> list[TopicSpec]:
    """Every topic of the pipeline (ARCHITECTURE.md section 4) and a DLQ for each stream topic."""

    def retention(hours: float) -> dict[str, str]:
        return {"retention.ms": str(int(hours * HOUR_MS))} if hours > 0 else {}

    specs = []
    for topic in TOPICS:
        control = topic == MODELS_EVENTS
        partitions = settings.control_partitions if control else settings.partitions
        name = with_prefix(topic, settings.prefix)
        specs.append(TopicSpec(name, partitions, settings.replication_factor, retention(settings.retention_hours)))
        if not control:
            specs.append(TopicSpec(with_prefix(dlq(topic), settings.prefix), partitions,
                                   settings.replication_factor, retention(settings.dlq_retention_hours)))
    return specs


def admin_client(bootstrap: str, security: dict | None = None, timeout: float = 30.0) -> KafkaAdminClient:
    """An admin client, retried while the broker starts; ConnectionError naming the endpoint after ``timeout``."""
    deadline = time.monotonic() + timeout
    delay = 0.2
    while True:
        try:
            options = security_options() if security is None else security
            return KafkaAdminClient(bootstrap_servers=bootstrap, client_id="distillery-admin", **options)
        except KafkaError as exc:
            if time.monotonic() + delay > deadline:
                raise ConnectionError(f"Kafka at {bootstrap} is not reachable after {timeout:.0f}s: {exc}") from None
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def partition_counts(admin: KafkaAdminClient, names: Iterable[str]) -> dict[str, int]:
    """Partitions of each of ``names`` that exists."""
    existing = set(admin.list_topics())
    wanted = [n for n in names if n in existing]
    if not wanted:
        return {}
    return {d["name"]: len(d["partitions"]) for d in admin.describe_topics(wanted) if not d.get("error_code")}


def ensure(specs: list[TopicSpec], admin: KafkaAdminClient) -> EnsureReport:
    """Create missing topics, grow partitions, set retention; never shrinks or deletes (idempotent)."""
    report = EnsureReport()
    current = partition_counts(admin, [s.name for s in specs])
    for spec in specs:
        have = current.get(spec.name)
        if have is None:
            try:
                admin.create_topics([NewTopic(spec.name, spec.partitions, spec.replication,
                                              topic_configs=spec.configs)])
                report.created.append(spec.name)
                continue
            except TopicAlreadyExistsError:  # another run created it meanwhile
                have = partition_counts(admin, [spec.name]).get(spec.name, spec.partitions)
        if have < spec.partitions:
            try:
                admin.create_partitions({spec.name: NewPartitions(total_count=spec.partitions)})
            except IncompatibleBrokerVersion:
                raise ProvisionError(
                    f"topic {spec.name} has {have} partitions, {spec.partitions} configured, and this broker cannot "
                    f"add partitions (no CreatePartitions API); recreate the topic or keep partitions at {have}"
                ) from None
            report.grown[spec.name] = (have, spec.partitions)
        else:
            report.unchanged.append(spec.name)
            if have > spec.partitions:
                logger.warning("topic has more partitions than configured (never shrunk)",
                               extra={"fields": {"topic": spec.name, "partitions": have,
                                                 "configured": spec.partitions}})
        if spec.configs:
            _set_configs(admin, spec)
            report.configured.append(spec.name)
    return report


def _set_configs(admin: KafkaAdminClient, spec: TopicSpec) -> None:
    try:
        admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, spec.name, configs=spec.configs)])
    except KafkaError as exc:
        raise ProvisionError(f"could not set {', '.join(spec.configs)} of topic {spec.name}: {exc}") from None


def ensure_from_settings(settings: TopicsSettings) -> EnsureReport:
    if not settings.kafka_bootstrap:
        raise ProvisionError("no Kafka bootstrap servers: set kafka_bootstrap (DISTILLERY_KAFKA_BOOTSTRAP)")
    admin = admin_client(settings.kafka_bootstrap, settings.kafka_security(), settings.startup_retry_seconds)
    try:
        report = ensure(planned_topics(settings), admin)
    finally:
        admin.close()
    logger.info("topics ensured", extra={"fields": {"created": report.created, "grown": report.grown,
                                                    "unchanged": len(report.unchanged)}})
    return report
