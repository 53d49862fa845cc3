"""Two gateway processes share one limit through Redis: a strict provider (fixed one-second windows, counted
exactly) never answers 429, and what the two gateways' cost ledgers record is what the provider billed."""

from __future__ import annotations

import threading
import uuid

import pytest
import yaml

from distillery import synthetic
from distillery.messages import from_record
from distillery.runtime.supervisor import Stack
from distillery.store import LabelStore
from distillery.testing.fake_provider import FakeLLMConfig, FakeLLMServer
from distillery.v1 import common_pb2, oracle_pb2, oracle_pb2_grpc

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
    # The provider allows 300/min as 5 per fixed one-second window; each gateway alone would use all of it, so
    # two unshared gateways would send twice that and get 429s. The margin (0.25 s) is far above the jitter
    # between a send and its arrival here, so a 429 can only come from a limiter that is not shared.
    with FakeLLMServer(FakeLLMConfig(latency_seconds=0.05, rate_windows=[
            {"unit": "requests", "limit": 5, "seconds": 1.0, "kind": "fixed"}])) as fake:
        cfg = {"oracle_gateway": {
            "redis_url": REDIS_URL, "redis_prefix": redis_prefix, "cache_url": "off",
            "oracles": {"fake": {"kind": "openai", "model": "gpt-4o-mini", "base_url": fake.url + "/v1",
                                 "requests_per_minute": 300, "rate_margin_seconds": 0.25, "max_concurrency": 4}}}}
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
        bill = fake.bill_summary()
    stores = [LabelStore.open(tmp_path / f"state{i}" / "labels.sqlite") for i in range(2)]
    calls = [c for s in stores for c in s.calls()]
    for s in stores:
        s.close()
    assert len(calls) == bill["calls"] == 40
    assert sum(c["input_tokens"] for c in calls) == bill["input_tokens"]
    assert sum(c["output_tokens"] for c in calls) == bill["output_tokens"]
