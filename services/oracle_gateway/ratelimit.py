"""Even pacing of requests and tokens per minute (GCRA), in-process or shared by replicas through Redis.

A provider enforces "N per minute" over short windows: a minute's requests sent in one second get 429s.
So the pacer hands out *reservations*: each call learns how long to wait so that calls leave evenly
spaced (``60 / rpm`` seconds apart, with an optional burst tolerance). With Redis, every replica
reserves from the same schedule (one Lua script, Redis's clock), so N replicas together stay under
the limit. A 429 with ``Retry-After`` pushes the whole schedule back (:meth:`Pacer.penalize`).
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod

_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local interval = tonumber(ARGV[1])
local cost = tonumber(ARGV[2])
local tau = tonumber(ARGV[3])
local start = math.max(now, tat - tau)
local newtat = math.max(tat, now) + interval * cost
redis.call('SET', KEYS[1], string.format('%.6f', newtat), 'EX', math.ceil(newtat - now) + 60)
return string.format('%.6f', start - now)
"""

_PENALIZE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local until_ = now + tonumber(ARGV[1])
if until_ > tat then
  redis.call('SET', KEYS[1], string.format('%.6f', until_), 'EX', math.ceil(until_ - now) + 60)
end
return 1
"""


class Pacer(ABC):
    """Reserve ``cost`` units of a per-minute quota; returns seconds to wait before sending (0 when free)."""

    def __init__(self, per_minute: float, burst_seconds: float = 0.0):
        if per_minute <= 0:
            raise ValueError("per_minute must be > 0")
        self.interval = 60.0 / per_minute
        self.tau = burst_seconds * per_minute / 60.0 * self.interval

    @abstractmethod
    def reserve(self, cost: float = 1.0) -> float:
        """Book the next slot for ``cost`` units; return the seconds until it starts."""

    @abstractmethod
    def penalize(self, seconds: float) -> None:
        """Push the schedule back so that nothing is sent for ``seconds`` (a 429's Retry-After)."""

    def acquire(self, cost: float = 1.0) -> float:
        """Reserve and sleep until the reserved slot; returns the seconds waited."""
        wait = self.reserve(cost)
        if wait > 0:
            time.sleep(wait)
        return max(wait, 0.0)


class LocalPacer(Pacer):
    def __init__(self, per_minute: float, burst_seconds: float = 0.0):
        super().__init__(per_minute, burst_seconds)
        self._tat = 0.0
        self._lock = threading.Lock()

    def reserve(self, cost: float = 1.0) -> float:
        with self._lock:
            now = time.monotonic()
            start = max(now, self._tat - self.tau)
            self._tat = max(self._tat, now) + self.interval * cost
            return start - now

    def penalize(self, seconds: float) -> None:
        with self._lock:
            self._tat = max(self._tat, time.monotonic() + seconds)


class RedisPacer(Pacer):
    def __init__(self, client, key: str, per_minute: float, burst_seconds: float = 0.0):
        super().__init__(per_minute, burst_seconds)
        self._client = client
        self.key = key
        self._reserve = client.register_script(_RESERVE)
        self._penalize = client.register_script(_PENALIZE)

    def reserve(self, cost: float = 1.0) -> float:
        return float(self._reserve(keys=[self.key], args=[f"{self.interval:.9f}", f"{cost:.6f}", f"{self.tau:.9f}"]))

    def penalize(self, seconds: float) -> None:
        self._penalize(keys=[self.key], args=[f"{seconds:.6f}"])


def make_pacer(per_minute: float, burst_seconds: float, redis_client=None, key: str = "") -> Pacer | None:
    if per_minute <= 0:
        return None
    if redis_client is not None:
        return RedisPacer(redis_client, key, per_minute, burst_seconds)
    return LocalPacer(per_minute, burst_seconds)
