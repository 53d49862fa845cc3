"""Rate limiting (local and Redis-shared), budgets shared through Redis, and the response caches."""

from __future__ import annotations

import math
import random
import uuid
from collections import Counter

import pytest
from distillery_services.oracle_gateway.budget import Budgets
from distillery_services.oracle_gateway.cache import (
    CachedResponse,
    RedisResponseCache,
    SqliteResponseCache,
    cache_key,
)
from distillery_services.oracle_gateway.ratelimit import (
    LocalRateLimiter,
    RedisRateLimiter,
    Window,
    default_windows,
    make_limiter,
    parse_duration,
    rate_info,
)

from distillery.rpc.errors import BudgetExhaustedError


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


def _greedy_sends(limiter: LocalRateLimiter, clock: list[float], horizon: float, tokens=lambda i: 0.0):
    """A sender that always has work: send whenever admitted, else advance the clock by the wait."""
    sent = []
    while clock[0] < horizon:
        wait = limiter.try_acquire(tokens(len(sent)))
        if wait <= 0:
            sent.append(clock[0])
        else:
            clock[0] += wait + 1e-6
    return sent


def _max_in_fixed_windows(times: list[float], seconds: float, offsets=20) -> int:
    """The most arrivals in any fixed window of ``seconds``, over many alignments of the provider's clock."""
    worst = 0
    for k in range(offsets):
        counts: dict[int, int] = {}
        for t in times:
            b = math.floor((t + k * seconds / offsets) / seconds)
            counts[b] = counts.get(b, 0) + 1
        worst = max(worst, max(counts.values(), default=0))
    return worst


def test_limiter_never_exceeds_a_fixed_window_whatever_the_jitter_below_the_margin():
    clock = [1000.0]
    limiter = LocalRateLimiter(default_windows(600, 0), margin_seconds=0.03, clock=lambda: clock[0])
    sent = _greedy_sends(limiter, clock, 1000.0 + 120)
    rng = random.Random(3)
    arrivals = sorted(t + rng.uniform(0, 0.0299) for t in sent)  # network/scheduling jitter under the margin
    assert _max_in_fixed_windows(arrivals, 1.0) <= 10
    assert _max_in_fixed_windows(arrivals, 60.0) <= 600
    # and it uses the limit: 10 per (1 s + margin) over two minutes, minus the edge
    assert len(sent) >= int(120 / 1.03) * 10 - 10


def test_fixed_window_limiter_uses_the_whole_limit_and_tolerates_late_arrivals():
    clock = [1000.0]
    limiter = LocalRateLimiter(default_windows(600, 0, kind="fixed"), margin_seconds=0.03, clock=lambda: clock[0])
    sent = _greedy_sends(limiter, clock, 1000.0 + 120)
    assert len(sent) >= 10 * 119  # 10 in every clock-aligned second: the full limit
    rng = random.Random(5)
    for jitter in (0.0299, 0.3):  # up to the margin anywhere; far more for what leaves at a window's start
        arrivals = sorted(t + rng.uniform(0, jitter) for t in sent)
        assert _max_in_fixed_windows(arrivals, 1.0, offsets=1) <= 10
    assert max(Counter(math.floor(t / 60) for t in sent).values()) <= 600
    with pytest.raises(ValueError, match="margin"):
        LocalRateLimiter([Window("requests", 1, 0.05, "fixed")], margin_seconds=0.03)


def test_limiter_sliding_windows_of_tokens_and_requests():
    clock = [0.0]
    windows = [Window("requests", 5, 1.0), Window("tokens", 1000, 10.0)]
    limiter = LocalRateLimiter(windows, margin_seconds=0.0, clock=lambda: clock[0])
    sent = _greedy_sends(limiter, clock, 60.0, tokens=lambda i: 300.0)
    for t in sent:  # any sliding window
        assert sum(1 for u in sent if t <= u < t + 1.0) <= 5
        assert 300 * sum(1 for u in sent if t <= u < t + 10.0) <= 1000
    assert len(sent) >= 3 * 6  # 3 per 10 s by tokens


def test_limiter_admits_a_request_larger_than_a_window_alone():
    clock = [0.0]
    limiter = LocalRateLimiter([Window("tokens", 100, 1.0)], margin_seconds=0.0, clock=lambda: clock[0])
    assert limiter.try_acquire(500) == 0  # window empty: it goes alone
    assert limiter.try_acquire(1) == pytest.approx(1.0)


def test_limiter_holds_and_header_parsing():
    clock = [0.0]
    limiter = LocalRateLimiter([], clock=lambda: clock[0])
    assert limiter.try_acquire() == 0
    info = rate_info({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1m2.5s",
                      "x-ratelimit-remaining-tokens": "5000", "x-ratelimit-reset-tokens": "20ms"})
    assert info.holds() == {"requests": pytest.approx(62.5)}
    for unit, seconds in info.holds().items():
        limiter.hold(unit, seconds)
    assert limiter.try_acquire() == pytest.approx(62.5)
    assert rate_info({"content-type": "application/json"}) is None
    assert parse_duration("250ms") == pytest.approx(0.25) and parse_duration("3") == 3.0
    assert rate_info({"retry-after-ms": "1500"}).retry_after == pytest.approx(1.5)


def test_default_windows_follow_the_providers_quantum():
    assert set(default_windows(600, 0)) == {Window("requests", 600, 60), Window("requests", 10, 1)}
    assert Window("requests", 1, 2.0) in default_windows(30, 0)  # below one per second: one per 2 s
    assert default_windows(0, 90000) == [Window("tokens", 90000, 60)]


def test_redis_limiter_is_shared_between_clients(redis_client):
    client, prefix = redis_client
    windows = [Window("requests", 5, 60.0)]
    a = RedisRateLimiter(client, prefix, windows, margin_seconds=0.0)
    b = RedisRateLimiter(client, prefix, windows, margin_seconds=0.0)
    waits = [(a if i % 2 else b).try_acquire() for i in range(12)]
    assert sum(1 for w in waits if w == 0) == 5  # exactly the limit, across both clients
    assert all(w > 50 for w in waits[5:])
    fixed = [Window("requests", 5, 3600.0, "fixed")]
    a, b = (RedisRateLimiter(client, prefix + "f:", fixed, margin_seconds=0.03) for _ in range(2))
    waits = [(a if i % 2 else b).try_acquire() for i in range(12)]
    assert sum(1 for w in waits if w == 0) == 5  # this hour's five, across both clients
    other = RedisRateLimiter(client, prefix + "x:", windows, margin_seconds=0.0)
    other.hold("tokens", 30.0)
    assert other.try_acquire() > 29
    assert isinstance(make_limiter(windows, 0.0), LocalRateLimiter)


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
