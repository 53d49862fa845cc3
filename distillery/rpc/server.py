"""One way to build and run every service's gRPC server: health, reflection, metrics, graceful shutdown."""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import start_http_server

from distillery.config import ServiceSettings
from distillery.redact import register_secret
from distillery.roles import TokenRoles
from distillery.rpc.interceptors import AuthInterceptor, MetricsInterceptor

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServiceBinding:
    """A servicer and how to add it: ``add_fn`` is the generated ``add_XServicer_to_server``."""

    add_fn: Callable[[object, grpc.Server], None]
    servicer: object
    full_name: str  # e.g. "distillery.v1.PrefilterService"


class GrpcServer:
    """A started gRPC server plus its /metrics endpoint; ``stop()`` drains in-flight calls."""

    def __init__(self, name: str, settings: ServiceSettings, bindings: Sequence[ServiceBinding]):
        self.name = name
        self.settings = settings
        self.bindings = list(bindings)
        self.health = health.HealthServicer(experimental_non_blocking=True)
        options = [
            ("grpc.max_receive_message_length", settings.max_message_bytes),
            ("grpc.max_send_message_length", settings.max_message_bytes),
            ("grpc.so_reuseport", 0),
        ]
        if settings.grpc_max_connection_age_seconds > 0:
            # Clients reconnect (re-resolving a headless Service's pod addresses), so new replicas get calls.
            age_ms = int(settings.grpc_max_connection_age_seconds * 1000)
            options += [("grpc.max_connection_age_ms", age_ms),
                        ("grpc.max_connection_age_grace_ms", max(int(settings.shutdown_grace_seconds * 1000), 5000))]
        tokens = TokenRoles.from_settings(settings)
        if getattr(settings, "auth_required", False) and not tokens:
            raise OSError("auth_required is set but no token is configured (auth_token, auth_scoring_token, "
                          "auth_labelling_token or auth_admin_token)")
        for token in tokens.tokens():
            register_secret(token)  # never echoed in a status detail, a log line or a dead letter
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=settings.workers, thread_name_prefix=f"{name}-rpc"),
            interceptors=[MetricsInterceptor(name)] + ([AuthInterceptor(tokens)] if tokens else []),
            options=options,
        )
        for binding in self.bindings:
            binding.add_fn(binding.servicer, self._server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)
        if getattr(settings, "reflection", True):
            names = [b.full_name for b in self.bindings] + [health.SERVICE_NAME, reflection.SERVICE_NAME]
            reflection.enable_server_reflection(names, self._server)
        self.port = 0
        self.metrics_port = 0
        self._metrics_http = None
        self._stopped = threading.Event()

    def start(self) -> GrpcServer:
        credentials = server_credentials(self.settings)
        if credentials is None:
            self.port = self._server.add_insecure_port(self.settings.address())
        else:
            self.port = self._server.add_secure_port(self.settings.address(), credentials)
        if self.port == 0:
            raise OSError(f"could not bind gRPC port {self.settings.address()} (in use?)")
        httpd, _ = start_http_server(self.settings.metrics_port, addr=self.settings.host)
        self._metrics_http = httpd
        self.metrics_port = httpd.server_port
        self._server.start()
        for binding in self.bindings:
            self.health.set(binding.full_name, health_pb2.HealthCheckResponse.SERVING)
        self.health.set("", health_pb2.HealthCheckResponse.SERVING)
        logger.info(
            "serving",
            extra={"fields": {"grpc_port": self.port, "metrics_port": self.metrics_port, "pid": os.getpid()}},
        )
        return self

    def stop(self, grace: float | None = None) -> None:
        """Report NOT_SERVING, drain in-flight calls for ``grace`` seconds, then stop (bounded wait)."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        grace = self.settings.shutdown_grace_seconds if grace is None else grace
        self.health.enter_graceful_shutdown()
        event = self._server.stop(grace)
        # grpcio's stop() can hang after a broken client stream; never let shutdown block forever.
        event.wait(grace + 2.0)
        if self._metrics_http is not None:
            self._metrics_http.shutdown()
            self._metrics_http.server_close()
        logger.info("stopped")

    def wait(self) -> None:
        while not self._stopped.is_set():
            self._stopped.wait(0.5)


def server_credentials(settings: ServiceSettings) -> grpc.ServerCredentials | None:
    """TLS credentials from the settings' PEM files (client certificates required when a client CA is set)."""
    if not settings.tls_cert_file and not settings.tls_key_file:
        if settings.tls_client_ca_file:
            raise OSError("tls_client_ca_file needs tls_cert_file and tls_key_file (mTLS runs over TLS)")
        return None
    if not (settings.tls_cert_file and settings.tls_key_file):
        raise OSError("TLS needs both tls_cert_file and tls_key_file")
    try:
        cert = Path(settings.tls_cert_file).read_bytes()
        key = Path(settings.tls_key_file).read_bytes()
        ca = Path(settings.tls_client_ca_file).read_bytes() if settings.tls_client_ca_file else None
    except OSError as exc:
        raise OSError(f"cannot read TLS files: {exc}") from None
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=ca is not None)


def write_ready_file(path: Path | str, server: GrpcServer) -> None:
    """Tell a supervisor (demo, tests) where the service listens, atomically."""
    path = Path(path)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"grpc_port": server.port, "metrics_port": server.metrics_port, "pid": os.getpid(),
                               **getattr(server, "extra_ports", {})}))  # e.g. inference's http_port
    tmp.replace(path)


def run_until_signalled(server: GrpcServer, on_stop: Callable[[], None] | None = None,
                        check: Callable[[], list[str]] | None = None) -> str | None:
    """Block until SIGTERM/SIGINT, then shut down gracefully.

    ``check`` (polled twice a second) returns what has failed for good, e.g. a Kafka stage whose loop died:
    the service then reports NOT_SERVING, shuts down and this returns the reason, so that the process exits
    non-zero and its supervisor (Kubernetes, ``distillery up``) restarts it.
    """
    stop = threading.Event()
    reason: str | None = None

    def _handler(signum, _frame):
        logger.info("signal received, shutting down", extra={"fields": {"signal": signal.Signals(signum).name}})
        stop.set()

    signal.signal(signal.SIGTERM, _handler)
    signal.signal(signal.SIGINT, _handler)
    while not stop.is_set():
        stop.wait(0.5)
        failures = check() if check is not None else []
        if failures:
            reason = "; ".join(failures)
            logger.error("a background stage failed; NOT_SERVING and exiting", extra={"fields": {"reason": reason}})
            server.health.enter_graceful_shutdown()  # every service NOT_SERVING at once
            break
    started = time.monotonic()
    server.stop()
    if on_stop is not None:
        on_stop()
    logger.info("shutdown complete", extra={"fields": {"seconds": round(time.monotonic() - started, 3)}})
    return reason
