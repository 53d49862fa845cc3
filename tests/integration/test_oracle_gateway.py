"""The oracle gateway as a real process: health, Label, LabelStream, errors, idempotency, key hygiene."""

from __future__ import annotations

import grpc
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from distillery import synthetic
from distillery.messages import from_record
from distillery.runtime.supervisor import start_service
from distillery.store import LabelStore
from distillery.testing.fake_provider import FakeLLMConfig, FakeLLMServer
from distillery.v1 import article_pb2, common_pb2, oracle_pb2, oracle_pb2_grpc

pytestmark = pytest.mark.integration
SECRET = "sk-integration-SECRET-0123456789abcdef"


@pytest.fixture(scope="module")
def fake():
    with FakeLLMServer(FakeLLMConfig(api_key=SECRET, retry_after_seconds=0.05)) as srv:
        yield srv


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, fake, filters_dir):
    root = tmp_path_factory.mktemp("oracle")
    config = root / "config.yaml"
    config.write_text(yaml.safe_dump({"oracle_gateway": {
        "oracles": {
            "synthetic": {"kind": "synthetic"},
            "fake-openai": {"kind": "openai", "model": "gpt-4o-mini", "base_url": fake.url + "/v1",
                            "api_key_env": "FAKE_OPENAI_KEY", "requests_per_minute": 6000,
                            "backoff_base_seconds": 0.02},
        },
    }}))
    svc = start_service("oracle_gateway", args=["--config", str(config), "--state-dir", str(root / "state"),
                                                "--filters-dir", str(filters_dir)],
                        env={"FAKE_OPENAI_KEY": SECRET}, log_dir=root / "logs")
    try:
        yield svc, root
    finally:
        svc.stop()


def _request(catalog, i=0, oracle=""):
    spec = catalog.get("uplifting")
    record = list(synthetic.generate(spec, i + 1, seed=5))[i]
    return oracle_pb2.LabelRequest(article=from_record(record), filter=common_pb2.FilterRef(name="uplifting"),
                                   oracle=oracle)


def test_health_and_label_then_cached(gateway, catalog):
    svc, root = gateway
    with svc.channel() as channel:
        health = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="distillery.v1.OracleService"), timeout=5)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        stub = oracle_pb2_grpc.OracleServiceStub(channel)
        first = stub.Label(_request(catalog), timeout=20).label
        assert first.provider == "synthetic" and not first.cached
        assert len(first.dimensions) == len(catalog.get("uplifting").dimensions)
        again = stub.Label(_request(catalog), timeout=20).label
        assert again.cached and again.usage.cost_usd == 0
    store = LabelStore.open(root / "state" / "labels.sqlite")
    assert store.count("uplifting") == 1
    store.close()


def test_label_stream_mixes_good_and_bad_items(gateway, catalog):
    svc, _ = gateway
    requests = [_request(catalog, i, oracle="fake-openai") for i in range(8)]
    requests.append(oracle_pb2.LabelRequest(article=article_pb2.Article(id="bad", title="t", text=""),
                                            filter=common_pb2.FilterRef(name="uplifting")))
    with svc.channel() as channel:
        stub = oracle_pb2_grpc.OracleServiceStub(channel)
        answers = list(stub.LabelStream(iter(requests), timeout=60))
    assert len(answers) == 9
    errors = [a for a in answers if a.HasField("error")]
    assert [e.article_id for e in errors] == ["bad"] and errors[0].error.code == "INVALID_ARGUMENT"
    good = [a for a in answers if a.HasField("label")]
    assert {a.article_id for a in good} == {r.article.id for r in requests[:8]}
    assert all(a.label.oracle_model == "gpt-4o-mini-2025-01-01" and a.label.usage.cost_usd > 0 for a in good)


def test_errors_map_to_status_codes(gateway, catalog):
    svc, _ = gateway
    with svc.channel() as channel:
        stub = oracle_pb2_grpc.OracleServiceStub(channel)
        bad = oracle_pb2.LabelRequest(article=article_pb2.Article(title="t", text="  "),
                                      filter=common_pb2.FilterRef(name="uplifting"))
        with pytest.raises(grpc.RpcError) as info:
            stub.Label(bad, timeout=10)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.RpcError) as info:
            stub.Label(oracle_pb2.LabelRequest(article=_request(catalog).article,
                                               filter=common_pb2.FilterRef(name="no_such_filter")), timeout=10)
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.RpcError) as info:
            stub.Label(_request(catalog, oracle="no-such-oracle"), timeout=10)
        assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_auth_failure_status_and_no_key_in_logs(gateway, catalog, fake):
    svc, _ = gateway
    fake.inject("auth")
    with svc.channel() as channel:
        stub = oracle_pb2_grpc.OracleServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.Label(_request(catalog, 20, oracle="fake-openai"), timeout=20)
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert SECRET not in info.value.details()
        fake.inject("500", "429")
        label = stub.Label(_request(catalog, 21, oracle="fake-openai"), timeout=20).label
        assert label.provider == "openai"
    assert SECRET not in svc.log_path.read_text()


def test_metrics_count_cost_and_requests(gateway, catalog):
    import urllib.request

    svc, _ = gateway
    with svc.channel() as channel:
        oracle_pb2_grpc.OracleServiceStub(channel).Label(_request(catalog, 30, oracle="fake-openai"), timeout=20)
    text = urllib.request.urlopen(f"http://127.0.0.1:{svc.metrics_port}/metrics", timeout=5).read().decode()
    cost = [line for line in text.splitlines() if line.startswith("distillery_oracle_cost_usd_total{")]
    assert any('filter="uplifting"' in line and 'provider="openai"' in line and float(line.split()[-1]) > 0
               for line in cost)
    assert 'distillery_oracle_requests_total{model="gpt-4o-mini-2025-01-01",outcome="ok",provider="openai"}' in text
    assert "distillery_oracle_cache_hits_total" in text and "distillery_oracle_tokens_total" in text
