"""What a service needs to reach before it serves: Kafka, PostgreSQL, Redis, the object store of the registry.

At start each configured endpoint is tried with backoff for ``startup_retry_seconds``; a service that cannot
reach one exits non-zero with one line naming it (credentials left out), never a traceback, and Kubernetes
restarts it with its own backoff. Which endpoints a service needs is its settings' ``dependencies``.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from urllib.parse import urlsplit

logger = logging.getLogger(__name__)


class DependencyError(RuntimeError):
    """An endpoint stayed unreachable for the whole retry window; the message names it."""


def redact(url: str) -> str:
    """``scheme://host:port/path`` of a URL, without user, password or query (safe for logs)."""
    if "://" not in url:
        return url
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def _kafka(settings) -> tuple[str, str, Callable[[], None]] | None:
    if not settings.kafka_bootstrap:
        return None

    def probe() -> None:
        from kafka.admin import KafkaAdminClient

        # A TCP connect first: kafka-python's bootstrap against a closed port takes ~30 s per attempt, which
        # would stretch the bounded retry far past startup_retry_seconds.
        for address in settings.kafka_bootstrap.split(","):
            host, _, port = address.strip().rpartition(":")
            socket.create_connection((host.strip("[]") or "localhost", int(port)), timeout=3).close()
        admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, client_id="distillery-probe",
                                 request_timeout_ms=5000, **settings.kafka_security())
        admin.close()

    return "Kafka", settings.kafka_bootstrap, probe


def _postgres(settings) -> tuple[str, str, Callable[[], None]] | None:
    url = settings.resolved_label_store()
    if not url.startswith(("postgresql://", "postgres://")):
        return None

    def probe() -> None:
        import psycopg

        psycopg.connect(url, connect_timeout=5).close()

    return "PostgreSQL (label store)", redact(url), probe


def _redis(settings) -> tuple[str, str, Callable[[], None]] | None:
    url = settings.redis_url
    if not url:
        return None

    def probe() -> None:
        import redis

        client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        try:
            client.ping()
        finally:
            client.close()

    return "Redis", redact(url), probe


def _object_store(settings) -> tuple[str, str, Callable[[], None]] | None:
    uri = settings.resolved_registry()
    if "://" not in uri or uri.startswith(("file://", "memory://")):
        return None

    def probe() -> None:
        import fsspec

        fs, root = fsspec.core.url_to_fs(uri, use_listings_cache=False)
        bucket = root.split("/", 1)[0]
        if not fs.exists(bucket):
            raise FileNotFoundError(f"bucket {bucket} does not exist")

    # The endpoint is the AWS SDK's, as s3fs/botocore resolve it.
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or "the default endpoint"
    return "object store (model registry)", f"{redact(uri)} via {redact(endpoint)}", probe


PROBES = {"kafka": _kafka, "label_store": _postgres, "redis": _redis, "registry": _object_store}


def wait_for_dependencies(settings, names: tuple[str, ...], timeout: float | None = None,
                          sleep: Callable[[float], None] = time.sleep) -> None:
    """Try every configured endpoint of ``names`` until it answers; DependencyError after ``timeout`` seconds."""
    timeout = settings.startup_retry_seconds if timeout is None else timeout
    for name in names:
        found = PROBES[name](settings)
        if found is None:
            continue
        what, endpoint, probe = found
        deadline = time.monotonic() + timeout
        delay, attempts = 0.5, 0
        while True:
            attempts += 1
            try:
                probe()
                break
            except Exception as exc:  # noqa: BLE001 - any failure to reach it is retried, then reported
                error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
                if time.monotonic() + delay > deadline:
                    raise DependencyError(f"cannot reach {what} at {endpoint} ({attempts} attempts in "
                                          f"{timeout:.0f}s): {error}") from None
                logger.warning("waiting for a dependency", extra={"fields": {
                    "dependency": what, "endpoint": endpoint, "attempt": attempts, "error": error}})
                sleep(delay)
                delay = min(delay * 2, 10.0)
