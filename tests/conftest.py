"""Shared fixtures. Real parts only: services run as processes on loopback, brokers and databases are real."""

from __future__ import annotations

import os
import subprocess
import sys
import time
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


# --- Errors say what, never where -------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def _no_status_detail_shows_a_server_path(tmp_path_factory):
    """Every gRPC status detail any test receives is checked: none may contain the test's temporary folder or
    the checkout's path (a server path leaking to a client). The hook sits in the client's event handling, so
    it sees the statuses of in-process servers and of service processes alike, sync and asyncio."""
    import grpc
    import grpc._channel as channel_impl
    from grpc import aio

    seen: list[str] = []
    original_handle = channel_impl._handle_event
    original_aio_init = aio.AioRpcError.__init__

    def recording_handle(event, state, deserializer):
        callbacks = original_handle(event, state, deserializer)
        if state.code not in (None, grpc.StatusCode.OK) and state.details:
            seen.append(str(state.details))
        return callbacks

    def recording_aio_init(self, code, initial_metadata, trailing_metadata, details=None, *args, **kwargs):
        if details:
            seen.append(str(details))
        original_aio_init(self, code, initial_metadata, trailing_metadata, details, *args, **kwargs)

    channel_impl._handle_event = recording_handle
    aio.AioRpcError.__init__ = recording_aio_init
    try:
        yield
    finally:
        channel_impl._handle_event = original_handle
        aio.AioRpcError.__init__ = original_aio_init
    forbidden = [str(tmp_path_factory.getbasetemp()), str(REPO_ROOT)]
    leaks = sorted({d for d in seen if any(f in d for f in forbidden)})
    assert not leaks, f"status details that show a server path: {leaks}"


S3_BUCKET = "models"  # the bucket of the s3_server fixture (tests name it as BUCKET)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """moto's standalone S3 server on a free port with the bucket ``S3_BUCKET``; yields the AWS SDK variables
    that point at it (tests of the registry on object storage)."""
    pytest.importorskip("moto", reason="moto[server] not installed (dev extra)")
    from distillery.bus.broker import _accepting, free_port

    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not _accepting("127.0.0.1", port):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"moto server did not start: {log.read_text()[-2000:]}")
            time.sleep(0.1)
        env = {"AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "testing",
               "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
        import boto3

        boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL_S3"], region_name="us-east-1",
                     aws_access_key_id="testing", aws_secret_access_key="testing").create_bucket(Bucket=S3_BUCKET)
        yield env
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
