"""gRPC TLS, mutual TLS and bearer-token authentication of the shared server (what the chart turns on):
a real GrpcServer on a loopback socket, certificates made by the openssl CLI."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import ClassVar

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from pydantic_settings import SettingsConfigDict

from distillery.config import ServiceSettings
from distillery.rpc.server import GrpcServer

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI not installed")

TOKEN = "s3cret-test-token"


class _Settings(ServiceSettings):
    section: ClassVar[str] = "security_test"
    model_config = SettingsConfigDict(env_prefix="DISTILLERY_SECURITY_TEST_", extra="forbid")


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
             "-subj", "/CN=distillery-test-ca", "-days", "2", cwd=d)
    for name in ("server", "client"):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                 "-subj", f"/CN={name}", "-addext", "subjectAltName=DNS:localhost", cwd=d)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", f"{name}.crt", "-days", "2", "-copy_extensions", "copy", cwd=d)
    return d


def _serve(**fields) -> GrpcServer:
    settings = _Settings.load(None, host="127.0.0.1", port=0, metrics_port=0, **fields)
    return GrpcServer("security_test", settings, []).start()


def _health(channel) -> int:
    return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5).status


def _reflect(channel, metadata=None) -> list[str]:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    replies = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                                        metadata=metadata, timeout=5)
    return [s.name for r in replies for s in r.list_services_response.service]


def _tls_channel(pki: Path, port: int, client_cert: bool = False) -> grpc.Channel:
    creds = grpc.ssl_channel_credentials(
        (pki / "ca.crt").read_bytes(),
        private_key=(pki / "client.key").read_bytes() if client_cert else None,
        certificate_chain=(pki / "client.crt").read_bytes() if client_cert else None,
    )
    return grpc.secure_channel(f"localhost:{port}", creds)


def test_tls_with_bearer_token(pki):
    server = _serve(tls_cert_file=pki / "server.crt", tls_key_file=pki / "server.key", auth_token=TOKEN)
    try:
        with _tls_channel(pki, server.port) as channel:
            # Probes carry no token: health stays open.
            assert _health(channel) == health_pb2.HealthCheckResponse.SERVING
            with pytest.raises(grpc.RpcError) as info:
                _reflect(channel)
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
            with pytest.raises(grpc.RpcError) as info:
                _reflect(channel, metadata=[("authorization", "Bearer wrong")])
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "grpc.health.v1.Health" in _reflect(channel, metadata=[("authorization", f"Bearer {TOKEN}")])
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as plain, pytest.raises(grpc.RpcError):
            _health(plain)
    finally:
        server.stop(0)


def test_mutual_tls_requires_a_client_certificate(pki):
    server = _serve(tls_cert_file=pki / "server.crt", tls_key_file=pki / "server.key",
                    tls_client_ca_file=pki / "ca.crt")
    try:
        with _tls_channel(pki, server.port, client_cert=True) as channel:
            assert _health(channel) == health_pb2.HealthCheckResponse.SERVING
        with _tls_channel(pki, server.port) as channel, pytest.raises(grpc.RpcError):
            _health(channel)
    finally:
        server.stop(0)


def test_plaintext_without_token_is_the_embedded_default():
    server = _serve()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            assert _health(channel) == health_pb2.HealthCheckResponse.SERVING
            assert _reflect(channel)
    finally:
        server.stop(0)


def test_incomplete_tls_settings_are_refused(pki):
    with pytest.raises(OSError, match="tls_key_file"):
        _serve(tls_cert_file=pki / "server.crt")
    with pytest.raises(OSError, match="mTLS"):
        _serve(tls_client_ca_file=pki / "ca.crt")
