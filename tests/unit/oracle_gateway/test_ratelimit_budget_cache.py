"""Pacing (local and Redis-shared), budgets shared through Redis, and the response caches."""

from __future__ import annotations

import uuid

import pytest

from distillery.rpc.errors import BudgetExhaustedError
from services.oracle_gateway.budget import Budgets
from services.oracle_gateway.cache import CachedResponse, RedisResponseCache, SqliteResponseCache, cache_key
from services.oracle_gateway.ratelimit import LocalPacer, RedisPacer, make_pacer


@pytest.fixture()
def redis_client():
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    try:
        client.ping()
    except redis.ConnectionError as exc:  # pragma: no cover - Redis runs here and on CI
        pytest.skip(f"Redis not reachable: {exc}")
    prefix = f"test:oracle:{uuid.uuid4().hex[:8]}:"
    yield client, prefix
    for key in client.scan_iter(prefix + "*"):
        client.delete(key)
    client.close()


def test_local_pacer_spaces_requests_evenly():
    pacer = LocalPacer(per_minute=600)  # one every 0.1 s
    waits = [pacer.reserve() for _ in range(5)]
    assert waits[0] == pytest.approx(0, abs=0.01)
    for i in range(1, 5):
        assert waits[i] == pytest.approx(0.1 * i, abs=0.01)
    pacer.penalize(2.0)
    assert pacer.reserve() >= 1.9


def test_local_pacer_burst_tolerance():
    pacer = LocalPacer(per_minute=600, burst_seconds=0.5)  # 5 requests of burst
    waits = [pacer.reserve() for _ in range(7)]
    assert all(w <= 0.01 for w in waits[:6]) and waits[6] == pytest.approx(0.1, abs=0.01)
    assert make_pacer(0, 0) is None


def test_redis_pacer_is_shared_between_clients(redis_client):
    client, prefix = redis_client
    a = RedisPacer(client, prefix + "rpm", per_minute=600)
    b = RedisPacer(client, prefix + "rpm", per_minute=600)
    waits = [(a if i % 2 else b).reserve() for i in range(6)]
    for i in range(1, 6):
        assert waits[i] == pytest.approx(0.1 * i, abs=0.03)
    a.penalize(3.0)
    assert b.reserve() >= 2.9


def test_budgets_reserve_settle_and_redis_sharing(redis_client):
    client, prefix = redis_client
    spent = {"uplifting": 0.5}
    first = Budgets({"uplifting": 1.0}, 0.0, lambda f, j: spent.get(f, 0.0), client, prefix)
    second = Budgets({"uplifting": 1.0}, 0.0, lambda f, j: spent.get(f, 0.0), client, prefix)
    keys = first.reserve("uplifting", "", 0.3)
    with pytest.raises(BudgetExhaustedError):
        second.reserve("uplifting", "", 0.3)  # 0.5 spent + 0.3 reserved + 0.3 > 1.0
    first.settle(keys, 0.3, 0.1)
    second.reserve("uplifting", "", 0.3)
    assert second.remaining("uplifting") == pytest.approx(0.1)
    local = Budgets({}, 0.2, lambda f, j: 0.0)
    local.reserve("x", "job", 0.15)
    with pytest.raises(BudgetExhaustedError, match="job job"):
        local.reserve("x", "job", 0.1)
    local.reserve("x", "", 5.0)  # no job id, no filter budget: unlimited


def test_caches(tmp_path, redis_client):
    client, prefix = redis_client
    value = CachedResponse("{}", "m", 1, 2, 3)
    key = cache_key("openai", "m", "abc", "def")
    assert key != cache_key("openai", "m", "abc", "deg")
    for cache in (SqliteResponseCache(tmp_path / "c.sqlite"), RedisResponseCache(client, prefix)):
        assert cache.get(key) is None
        cache.put(key, value)
        assert cache.get(key) == value
        cache.close()
