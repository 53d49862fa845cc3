"""Shared fixtures. Real parts only: services run as processes on loopback, brokers and databases are real."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
FILTERS_DIR = REPO_ROOT / "filters"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("DS_BUILD_OPS", "0")
os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(REPO_ROOT / "build" / "torch_extensions"))


@pytest.fixture(scope="session")
def filters_dir() -> Path:
    return FILTERS_DIR


@pytest.fixture(scope="session")
def catalog(filters_dir):
    from distillery.filters import FilterCatalog

    return FilterCatalog.load(filters_dir)


# --- Kafka ------------------------------------------------------------------------------------------
# (owned by the bus module: a session-scoped embedded tansu broker, or DISTILLERY_TEST_KAFKA_BOOTSTRAP)


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory):
    """Bootstrap address of a real Kafka-protocol broker for the whole session.

    ``DISTILLERY_TEST_KAFKA_BOOTSTRAP`` points the tests at an existing broker; otherwise an embedded
    tansu broker is started on a free 127.0.0.1 port and stopped at the end. Tests isolate themselves
    with unique topic names / group ids (see ``kafka_prefix``).
    """
    external = os.environ.get("DISTILLERY_TEST_KAFKA_BOOTSTRAP")
    if external:
        yield external
        return
    from distillery.bus.broker import EmbeddedBroker

    broker = EmbeddedBroker(log_dir=tmp_path_factory.mktemp("tansu")).start()
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


@pytest.fixture
def kafka_prefix(request) -> str:
    """A topic/group namespace unique to one test, so tests sharing a broker never see each other's data."""
    import uuid

    return f"t{uuid.uuid4().hex[:10]}."


def _read_topic(bootstrap: str, topic: str, n: int, timeout: float = 40.0) -> list:
    """Read up to ``n`` records of ``topic`` from the beginning with confluent-kafka (librdkafka): an
    independent client, so that tests never check the project's consumer code with itself."""
    import time

    import confluent_kafka

    consumer = confluent_kafka.Consumer({"bootstrap.servers": bootstrap, "group.id": "independent-check",
                                         "enable.auto.commit": False})
    out: list = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            meta = consumer.list_topics(topic, timeout=5).topics.get(topic)
            if meta is not None and meta.partitions and meta.error is None:
                break
            if time.monotonic() > deadline:
                return out
            time.sleep(0.1)
        consumer.assign([confluent_kafka.TopicPartition(topic, p, confluent_kafka.OFFSET_BEGINNING)
                         for p in meta.partitions])
        while len(out) < n and time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is not None and not msg.error():
                out.append(msg)
    finally:
        consumer.close()
    return out


@pytest.fixture
def read_topic():
    """``read_topic(bootstrap, topic, n, timeout=40.0)`` -> confluent-kafka messages (independent client)."""
    return _read_topic
