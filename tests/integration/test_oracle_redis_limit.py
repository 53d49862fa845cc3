"""Two gateway processes share one requests/min limit through Redis: the provider never sees a burst."""

from __future__ import annotations

import threading
import uuid

import pytest
import yaml

from distillery import synthetic
from distillery.articles import from_record
from distillery.runtime.supervisor import Stack
from distillery.v1 import common_pb2, oracle_pb2, oracle_pb2_grpc
from services.oracle_gateway.fake_llm import FakeLLMConfig, FakeLLMServer

pytestmark = pytest.mark.integration
REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture()
def redis_prefix():
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError as exc:  # pragma: no cover
        pytest.skip(f"Redis not reachable: {exc}")
    prefix = f"test:oracle:{uuid.uuid4().hex[:8]}:"
    yield prefix
    for key in client.scan_iter(prefix + "*"):
        client.delete(key)
    client.close()


def test_shared_limit_across_two_gateways(tmp_path, redis_prefix, catalog, filters_dir):
    # The provider allows 600/min with a 0.3 s window (3 requests of burst); each gateway alone paces at
    # 600/min, so two unshared gateways would send 1,200/min and get 429s.
    with FakeLLMServer(FakeLLMConfig(latency_seconds=0.05, requests_per_minute=600, window_seconds=0.3,
                                     retry_after_seconds=0.5)) as fake:
        cfg = {"oracle_gateway": {
            "redis_url": REDIS_URL, "redis_prefix": redis_prefix, "cache_url": "off",
            "oracles": {"fake": {"kind": "openai", "model": "gpt-4o-mini", "base_url": fake.url + "/v1",
                                 "requests_per_minute": 600, "max_concurrency": 4}}}}
        spec = catalog.get("uplifting")
        records = list(synthetic.generate(spec, 40, seed=9))
        with Stack() as stack:
            gateways = []
            for i in range(2):
                path = tmp_path / f"c{i}.yaml"
                path.write_text(yaml.safe_dump(cfg))
                gateways.append(stack.start("oracle_gateway", args=[
                    "--config", str(path), "--state-dir", str(tmp_path / f"state{i}"),
                    "--filters-dir", str(filters_dir)], log_dir=tmp_path / f"logs{i}"))
                stack.services[f"g{i}"] = stack.services.pop("oracle_gateway")
            results: list[list] = [[], []]

            def drive(i: int) -> None:
                with gateways[i].channel() as channel:
                    stub = oracle_pb2_grpc.OracleServiceStub(channel)
                    reqs = [oracle_pb2.LabelRequest(article=from_record(r), filter=common_pb2.FilterRef(
                        name="uplifting"), oracle="fake") for r in records[i::2]]
                    results[i] = list(stub.LabelStream(iter(reqs), timeout=120))

            threads = [threading.Thread(target=drive, args=(i,)) for i in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        assert sum(len(r) for r in results) == 40
        assert all(a.HasField("label") for r in results for a in r)
        assert fake.stats["rate_limited"] == 0
        assert fake.stats["requests"] == 40
