"""The client library's connection behaviour against real gRPC servers on loopback sockets: retries with
backoff on UNAVAILABLE / RESOURCE_EXHAUSTED (and not on other codes), deadlines, round-robin over several
addresses, token metadata, TLS and mutual TLS; and that importing it never pulls torch."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
from concurrent import futures
from pathlib import Path

import grpc
import pytest

from distillery.client import ChannelConfig, ClientError, RetryPolicy, ScoringClient
from distillery.v1 import common_pb2, scoring_pb2, scoring_pb2_grpc

ARTICLE = {"title": "A headline", "text": "Some text long enough to score."}


class FlakyScoring(scoring_pb2_grpc.ScoringServiceServicer):
    """Fails the first ``failures`` calls with ``code``, then answers; records each call's metadata."""

    def __init__(self, name: str, failures: int = 0, code=grpc.StatusCode.UNAVAILABLE, delay: float = 0.0):
        self.name, self.failures, self.code, self.delay = name, failures, code, delay
        self.calls = 0
        self.metadata: list[dict] = []
        self._lock = threading.Lock()

    def Score(self, request, context):
        with self._lock:
            self.calls += 1
            failing = self.calls <= self.failures
        self.metadata.append(dict(context.invocation_metadata()))
        if self.delay:
            threading.Event().wait(self.delay)
        if failing:
            context.abort(self.code, f"{self.name} says no ({self.calls})")
        result = scoring_pb2.ScoreResult(article_id=request.article.id or "x", overall=5.0, tier="medium",
                                         model_version=self.name,
                                         filter=common_pb2.FilterRef(name="uplifting", version=1),
                                         dimensions=[scoring_pb2.DimensionScore(name="d", raw=4.0, calibrated=5.0,
                                                                                lower=3.0, upper=7.0)])
        return scoring_pb2.ScoreResponse(article_id=result.article_id, results=[result])


def _serve(servicer, credentials=None):
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    scoring_pb2_grpc.add_ScoringServiceServicer_to_server(servicer, server)
    port = server.add_secure_port("127.0.0.1:0", credentials) if credentials else server.add_insecure_port(
        "127.0.0.1:0")
    server.start()
    return server, port


@pytest.fixture
def serve():
    servers = []

    def start(servicer, credentials=None) -> int:
        server, port = _serve(servicer, credentials)
        servers.append(server)
        return port

    yield start
    for server in servers:
        server.stop(0)


FAST = RetryPolicy(max_attempts=4, initial_backoff_s=0.01, max_backoff_s=0.05)


@pytest.mark.parametrize("code", [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED])
def test_retries_transient_failures_then_returns_typed_scores(serve, code):
    flaky = FlakyScoring("a", failures=2, code=code)
    port = serve(flaky)
    with ScoringClient(f"127.0.0.1:{port}", retry=FAST, token="t0k") as client:
        [score] = client.score({**ARTICLE, "id": "art-1"}, filters=["uplifting/v1"])
    assert flaky.calls == 3
    assert (score.article_id, score.filter, score.overall, score.tier) == ("art-1", "uplifting/v1", 5.0, "medium")
    assert score["d"] == 5.0 and score.dimensions["d"].lower == 3.0
    assert all(m.get("authorization") == "Bearer t0k" for m in flaky.metadata)


def test_gives_up_after_max_attempts_and_never_retries_other_codes(serve):
    down = FlakyScoring("down", failures=100)
    bad = FlakyScoring("bad", failures=100, code=grpc.StatusCode.INVALID_ARGUMENT)
    with ScoringClient(f"127.0.0.1:{serve(down)}", retry=FAST) as client, pytest.raises(ClientError) as exc:
        client.score(ARTICLE)
    assert exc.value.code == "UNAVAILABLE" and down.calls == 4
    with ScoringClient(f"127.0.0.1:{serve(bad)}", retry=FAST) as client, pytest.raises(ClientError) as exc:
        client.score(ARTICLE)
    assert exc.value.code == "INVALID_ARGUMENT" and bad.calls == 1


def test_deadline(serve):
    slow = FlakyScoring("slow", delay=2.0)
    with ScoringClient(f"127.0.0.1:{serve(slow)}", timeout=0.2, retry=None) as client, pytest.raises(ClientError) as exc:
        client.score(ARTICLE)
    assert exc.value.code == "DEADLINE_EXCEEDED"


def test_round_robin_over_every_address(serve):
    # A headless Service resolves to several pod IPs (dns:///...); an ipv4: list exercises the same policy.
    replicas = [FlakyScoring(f"r{i}") for i in range(3)]
    target = "ipv4:" + ",".join(f"127.0.0.1:{serve(r)}" for r in replicas)
    with ScoringClient(target) as client:
        client.wait_ready(10)
        served = {client.score(ARTICLE)[0].model_version for _ in range(12)}
    assert served == {"r0", "r1", "r2"}
    assert all(r.calls >= 2 for r in replicas)


def test_from_env(monkeypatch):
    monkeypatch.setenv("DISTILLERY_TARGET", "dns:///svc.ns.svc.cluster.local:50054")
    monkeypatch.setenv("DISTILLERY_TOKEN", "from-env")
    config = ChannelConfig.from_env(timeout=5.0)
    assert config.target == "dns:///svc.ns.svc.cluster.local:50054" and config.token == "from-env"
    assert ChannelConfig.from_env(token="explicit").token == "explicit"
    with pytest.raises(ValueError, match="both a client certificate"):
        ChannelConfig(tls_cert="c.pem").credentials()


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI not installed")
    d = tmp_path_factory.mktemp("pki")

    def openssl(*args):
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True, timeout=60)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
            "-subj", "/CN=test-ca")
    (d / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    for name in ("server", "client"):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj",
                f"/CN={name}")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", f"{name}.crt", "-days", "2", "-extfile", "san.ext")
    return d


def test_tls_and_mutual_tls(serve, pki):
    key, cert, ca = ((pki / n).read_bytes() for n in ("server.key", "server.crt", "ca.crt"))
    tls_port = serve(FlakyScoring("tls"), grpc.ssl_server_credentials([(key, cert)]))
    with ScoringClient(f"127.0.0.1:{tls_port}", tls_ca=pki / "ca.crt", retry=None, timeout=10) as client:
        assert client.score(ARTICLE)[0].model_version == "tls"
    mtls_port = serve(FlakyScoring("mtls"), grpc.ssl_server_credentials([(key, cert)], root_certificates=ca,
                                                                       require_client_auth=True))
    with ScoringClient(f"127.0.0.1:{mtls_port}", tls_ca=pki / "ca.crt", tls_cert=pki / "client.crt",
                       tls_key=pki / "client.key", retry=None, timeout=10) as client:
        assert client.score(ARTICLE)[0].model_version == "mtls"
    with ScoringClient(f"127.0.0.1:{mtls_port}", tls_ca=pki / "ca.crt", retry=None, timeout=5) as client, pytest.raises(ClientError) as exc:
        client.score(ARTICLE)  # no client certificate: the handshake fails
    assert exc.value.code == "UNAVAILABLE"


def test_the_client_never_imports_torch():
    code = ("import sys, distillery.client, distillery.client.aio; "
            "heavy = [m for m in ('torch', 'transformers', 'numpy', 'sklearn', 'services') if m in sys.modules]; "
            "print(heavy); sys.exit(1 if heavy else 0)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
