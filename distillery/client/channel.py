"""How a client connects: target, TLS/mTLS, bearer token, retries with backoff, client-side round-robin.

Everything here is plain grpcio: retries and load balancing come from a gRPC service config, so the sync
and the asyncio clients behave the same, and other-language clients can copy the same JSON.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import grpc

ENV_TARGET = "DISTILLERY_TARGET"
ENV_TOKEN = "DISTILLERY_TOKEN"
ENV_TLS_CA = "DISTILLERY_TLS_CA"
ENV_TLS_CERT = "DISTILLERY_TLS_CERT"
ENV_TLS_KEY = "DISTILLERY_TLS_KEY"

# Statuses that mean "try again, maybe on another replica": the server was unreachable or shed load.
RETRYABLE = ("UNAVAILABLE", "RESOURCE_EXHAUSTED")


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter (gRPC's own retry: each attempt may land on another replica)."""

    max_attempts: int = 4
    initial_backoff_s: float = 0.1
    max_backoff_s: float = 2.0
    multiplier: float = 2.0
    codes: tuple[str, ...] = RETRYABLE

    def as_service_config(self) -> dict:
        return {
            "maxAttempts": max(2, min(self.max_attempts, 5)),  # gRPC caps attempts at 5
            "initialBackoff": f"{self.initial_backoff_s:.3f}s",
            "maxBackoff": f"{self.max_backoff_s:.3f}s",
            "backoffMultiplier": self.multiplier,
            "retryableStatusCodes": list(self.codes),
        }


NO_RETRY = None


@dataclass(frozen=True)
class ChannelConfig:
    """Connection settings shared by every client.

    ``target``: ``host:port``, or ``dns:///svc.ns.svc.cluster.local:50051`` for a Kubernetes headless Service:
    every pod IP the name resolves to gets a sub-channel and calls go round-robin over them.
    ``tls_ca`` alone: TLS with that CA bundle (``tls=True`` without a CA: the system roots); with
    ``tls_cert`` + ``tls_key`` as well: mutual TLS. ``token``: sent as ``authorization: Bearer <token>``.
    ``timeout``: the default deadline of every call in seconds (a call may pass its own).
    """

    target: str = "127.0.0.1:50051"
    token: str | None = None
    tls: bool = False
    tls_ca: Path | str | None = None
    tls_cert: Path | str | None = None
    tls_key: Path | str | None = None
    server_name: str | None = None  # TLS name to verify when it differs from the target host
    timeout: float | None = 30.0
    retry: RetryPolicy | None = field(default_factory=RetryPolicy)
    round_robin: bool = True
    max_message_bytes: int = 64 * 1024 * 1024

    @classmethod
    def from_env(cls, **overrides) -> ChannelConfig:
        """Defaults from ``DISTILLERY_TARGET``, ``DISTILLERY_TOKEN``, ``DISTILLERY_TLS_CA/CERT/KEY``; explicit
        non-None ``overrides`` win."""
        env = {
            "target": os.environ.get(ENV_TARGET),
            "token": os.environ.get(ENV_TOKEN),
            "tls_ca": os.environ.get(ENV_TLS_CA),
            "tls_cert": os.environ.get(ENV_TLS_CERT),
            "tls_key": os.environ.get(ENV_TLS_KEY),
        }
        values = {k: v for k, v in env.items() if v}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    @property
    def secure(self) -> bool:
        return bool(self.tls or self.tls_ca or self.tls_cert)

    def credentials(self) -> grpc.ChannelCredentials:
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("mutual TLS needs both a client certificate (tls_cert) and its key (tls_key)")

        def read(path) -> bytes | None:
            if not path:
                return None
            try:
                return Path(path).read_bytes()
            except OSError as exc:
                raise ValueError(f"cannot read TLS file {path}: {exc.strerror}") from None

        return grpc.ssl_channel_credentials(read(self.tls_ca), read(self.tls_key), read(self.tls_cert))

    def options(self) -> list[tuple[str, object]]:
        config: dict = {}
        if self.round_robin:
            config["loadBalancingConfig"] = [{"round_robin": {}}]
        if self.retry is not None:
            config["methodConfig"] = [{"name": [{}], "retryPolicy": self.retry.as_service_config()}]
        opts: list[tuple[str, object]] = [
            ("grpc.max_send_message_length", self.max_message_bytes),
            ("grpc.max_receive_message_length", self.max_message_bytes),
            ("grpc.enable_retries", 1 if self.retry is not None else 0),
            ("grpc.service_config", json.dumps(config)),
        ]
        if self.server_name:
            opts.append(("grpc.ssl_target_name_override", self.server_name))
        return opts

    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),) if self.token else ()


def open_channel(config: ChannelConfig) -> grpc.Channel:
    if config.secure:
        return grpc.secure_channel(config.target, config.credentials(), options=config.options())
    return grpc.insecure_channel(config.target, options=config.options())


def open_aio_channel(config: ChannelConfig) -> grpc.aio.Channel:
    if config.secure:
        return grpc.aio.secure_channel(config.target, config.credentials(), options=config.options())
    return grpc.aio.insecure_channel(config.target, options=config.options())
