"""Rate limiting that holds under a provider's strictest windows, in-process or shared by replicas via Redis.

A provider that allows "600 requests per minute" usually counts shorter windows too (10 per second, in
fixed or sliding windows), and counts tokens as well as requests. Even spacing is not enough: jitter
puts 11 requests into one fixed second and the provider answers 429. So the limiter keeps a *log* of
what was sent in every window it knows (:class:`Window`: a unit, a limit, a length) and admits a
request only when, for each window, what was sent within the last ``seconds + margin`` plus this
request stays within the limit. A sliding window checked this way also bounds every fixed window of
the same length, whatever its alignment; the margin absorbs the jitter between our send and the
provider's clock (the provider counts a request when it arrives, a few milliseconds later). That costs a
share of the limit: at most ``limit`` per ``seconds + margin``.

A provider known to count *fixed* windows aligned to the clock (``floor(unix time / seconds)``, as most
counters keyed by time do) can be used to the full limit: a window of kind ``fixed`` admits ``limit``
per window, but only between ``margin`` after its start and ``margin`` before its end, so a request
that arrives up to ``margin`` late (or a provider clock up to ``margin`` off) is still counted in the
window it was admitted in. Requests mostly leave right at a window's start, so in practice they tolerate
far more jitter than the margin.

Admission is *try-acquire at the moment of sending*, never a booked future slot: a thread that wakes up
late from a sleep would otherwise send later than its booked slot while the next slot was computed from
the booking. :meth:`RateLimiter.try_acquire` either records the send now or returns how long to wait.

Holds come from the provider itself: ``x-ratelimit-remaining-requests: 0`` with a reset time, or a 429
whose headers say the quota is spent, pause only the unit that is exhausted (requests or tokens), until
the reset. A 429 that says nothing about the quota (an overloaded provider) slows only the request that
got it (its own Retry-After), not every worker.

With Redis every replica admits through one Lua script (atomic, Redis's clock), so N replicas together
stay within the limit.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

UNITS = ("requests", "tokens")


@dataclass(frozen=True)
class Window:
    """At most ``limit`` units (requests or tokens) in any ``seconds``-long window (``sliding``), or in each
    clock-aligned window of ``seconds`` (``fixed``)."""

    unit: str
    limit: float
    seconds: float
    kind: str = "sliding"

    def __post_init__(self):
        if self.unit not in UNITS:
            raise ValueError(f"window unit must be one of {UNITS}, not {self.unit!r}")
        if self.limit <= 0 or self.seconds <= 0:
            raise ValueError("a rate window needs a limit > 0 and seconds > 0")
        if self.kind not in ("sliding", "fixed"):
            raise ValueError(f"window kind must be sliding or fixed, not {self.kind!r}")

    @property
    def name(self) -> str:
        return f"{self.unit}:{self.limit:g}/{self.seconds:g}s:{self.kind}"


def default_windows(requests_per_minute: float, tokens_per_minute: float,
                    quantum_seconds: float = 1.0, kind: str = "sliding") -> list[Window]:
    """The windows a provider that advertises per-minute limits actually enforces.

    Requests: the minute, and the minute's share of every ``quantum_seconds`` (600/min is enforced as
    10 per second by OpenAI-style providers); below one request per quantum, one request per
    ``60 / rpm`` seconds. Tokens: the minute (a single prompt can exceed a second's share).
    """
    windows: list[Window] = []
    if requests_per_minute > 0:
        windows.append(Window("requests", requests_per_minute, 60.0, kind))
        if quantum_seconds > 0 and quantum_seconds < 60:
            per_quantum = requests_per_minute * quantum_seconds / 60.0
            if per_quantum >= 1:
                windows.append(Window("requests", float(int(per_quantum)), quantum_seconds, kind))
            else:
                windows.append(Window("requests", 1.0, 60.0 / requests_per_minute, kind))
    if tokens_per_minute > 0:
        windows.append(Window("tokens", tokens_per_minute, 60.0, kind))
    return windows


class RateLimiter:
    """Admit a request (one request + ``tokens`` tokens) now, or say how many seconds to wait.

    With no window it only applies the holds a provider asked for.
    """

    def __init__(self, windows: list[Window], margin_seconds: float = 0.03):
        if margin_seconds < 0:
            raise ValueError("margin_seconds must be >= 0")
        for w in windows:
            if w.kind == "fixed" and w.seconds <= 2 * margin_seconds:
                raise ValueError(f"a fixed window of {w.seconds:g} s leaves no room inside a margin of "
                                 f"{margin_seconds:g} s at each end: lower the margin")
        self.windows = list(windows)
        self.margin = margin_seconds

    def costs(self, tokens: float) -> list[float]:
        return [1.0 if w.unit == "requests" else float(tokens) for w in self.windows]

    def try_acquire(self, tokens: float = 0.0) -> float:
        """Record the send now and return 0, or return the seconds until it could be admitted (nothing recorded)."""
        raise NotImplementedError

    def hold(self, unit: str, seconds: float) -> None:
        """Admit nothing of ``unit`` for ``seconds`` (the provider said that quota is spent until its reset)."""
        raise NotImplementedError

    def acquire(self, tokens: float = 0.0, sleep: Callable[[float], None] = time.sleep,
                stop: Callable[[], bool] | None = None) -> float:
        """Wait until admitted; returns the seconds waited. ``stop`` ends the wait early (returns -1)."""
        waited = 0.0
        while True:
            wait = self.try_acquire(tokens)
            if wait <= 0:
                return waited
            if stop is not None and stop():
                return -1.0
            # A tiny extra so that the entry that frees the window has surely left it when we retry.
            sleep(wait + 0.0005)
            waited += wait


def _fixed_wait(now: float, seconds: float, margin: float, used: float, limit: float, cost: float) -> float:
    """Seconds until ``cost`` may be sent in a clock-aligned fixed window that holds ``used`` now: only
    between ``margin`` after a window's start and ``margin`` before its end, within the limit."""
    start = math.floor(now / seconds) * seconds
    if now < start + margin:
        return start + margin - now
    if now >= start + seconds - margin or (used > 0 and used + cost > limit + 1e-9):
        return start + seconds + margin - now
    return 0.0


def _admission_wait(entries, now: float, span: float, limit: float, cost: float) -> float:
    """Seconds until ``cost`` fits in a window of ``limit`` over ``span`` seconds, given (time, cost) entries
    sorted by time, all within (now - span, now]. A cost above the limit is admitted alone (window empty)."""
    total = sum(c for _, c in entries)
    if total == 0 or total + cost <= limit + 1e-9:
        return 0.0
    need = total + cost - limit if cost <= limit else total
    freed = 0.0
    for when, c in entries:
        freed += c
        if freed >= need - 1e-9:
            return when + span - now
    return span  # unreachable: freeing everything always suffices


class LocalRateLimiter(RateLimiter):
    """The limiter of one process (threads share it); ``clock`` is injectable for deterministic tests."""

    def __init__(self, windows: list[Window], margin_seconds: float = 0.03,
                 clock: Callable[[], float] = time.time):
        super().__init__(windows, margin_seconds)
        self._clock = clock  # wall clock: fixed windows are aligned to it, as a provider's are
        self._logs: list[deque[tuple[float, float]]] = [deque() for _ in self.windows]
        self._fixed: dict[int, tuple[int, float]] = {}  # window index -> (window number, used)
        self._holds: dict[str, float] = {}
        self._lock = threading.Lock()

    def try_acquire(self, tokens: float = 0.0) -> float:
        with self._lock:
            now = self._clock()
            # Every request spends both requests and tokens: a hold on either unit holds it.
            wait = max([0.0] + [until - now for until in self._holds.values()])
            costs = self.costs(tokens)
            for i, (window, log, cost) in enumerate(zip(self.windows, self._logs, costs)):
                if window.kind == "fixed":
                    if cost > 0:
                        wait = max(wait, _fixed_wait(now, window.seconds, self.margin, self._used(i, now),
                                                     window.limit, cost))
                    continue
                span = window.seconds + self.margin
                while log and log[0][0] <= now - span:
                    log.popleft()
                if cost > 0:
                    wait = max(wait, _admission_wait(log, now, span, window.limit, cost))
            if wait > 0:
                return wait
            for i, (window, log, cost) in enumerate(zip(self.windows, self._logs, costs)):
                if cost <= 0:
                    continue
                if window.kind == "fixed":
                    self._fixed[i] = (math.floor(now / window.seconds), self._used(i, now) + cost)
                else:
                    log.append((now, cost))
            return 0.0

    def _used(self, i: int, now: float) -> float:
        number, used = self._fixed.get(i, (None, 0.0))
        return used if number == math.floor(now / self.windows[i].seconds) else 0.0

    def hold(self, unit: str, seconds: float) -> None:
        with self._lock:
            until = self._clock() + max(seconds, 0.0)
            self._holds[unit] = max(self._holds.get(unit, 0.0), until)


# KEYS: one key per window (a sorted set for a sliding window: member "<cost>|<id>", score = send time; a
# prefix for a fixed window: "<prefix>:<window number>" holds what it used), then one hold key per unit.
# ARGV: n windows, then per window: kind (1 fixed, 0 sliding), seconds, limit, cost; then the margin and a
# unique id.
_TRY_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local n = tonumber(ARGV[1])
local margin = tonumber(ARGV[2 + n * 4])
local wait = 0
for i = 1, #KEYS - n do
  local h = tonumber(redis.call('GET', KEYS[n + i]) or '0')
  if h - now > wait then wait = h - now end
end
local function arg(i, j) return tonumber(ARGV[1 + (i - 1) * 4 + j]) end
local used = {}
for i = 1, n do
  local fixed, seconds, limit, cost = arg(i, 1), arg(i, 2), arg(i, 3), arg(i, 4)
  if fixed == 1 then
    local number = math.floor(now / seconds)
    local start = number * seconds
    used[i] = tonumber(redis.call('GET', KEYS[i] .. ':' .. number) or '0')
    if cost > 0 then
      local w = 0
      if now < start + margin then
        w = start + margin - now
      elseif now >= start + seconds - margin or (used[i] > 0 and used[i] + cost > limit + 1e-9) then
        w = start + seconds + margin - now
      end
      if w > wait then wait = w end
    end
  else
    local span = seconds + margin
    redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now - span)
    if cost > 0 then
      local entries = redis.call('ZRANGE', KEYS[i], 0, -1, 'WITHSCORES')
      local total = 0
      for j = 1, #entries, 2 do
        total = total + tonumber(string.match(entries[j], '^([^|]+)'))
      end
      if total > 0 and total + cost > limit + 1e-9 then
        local need = total
        if cost <= limit then need = total + cost - limit end
        local freed = 0
        for j = 1, #entries, 2 do
          freed = freed + tonumber(string.match(entries[j], '^([^|]+)'))
          if freed >= need - 1e-9 then
            local w = tonumber(entries[j + 1]) + span - now
            if w > wait then wait = w end
            break
          end
        end
      end
    end
  end
end
if wait > 0 then return string.format('%.6f', wait) end
local id = ARGV[3 + n * 4]
for i = 1, n do
  local fixed, seconds, cost = arg(i, 1), arg(i, 2), arg(i, 4)
  if cost > 0 then
    if fixed == 1 then
      local key = KEYS[i] .. ':' .. math.floor(now / seconds)
      redis.call('SET', key, string.format('%.6f', used[i] + cost), 'PX', math.ceil(seconds * 1000) + 1000)
    else
      redis.call('ZADD', KEYS[i], now, string.format('%.6f', cost) .. '|' .. id)
      redis.call('PEXPIRE', KEYS[i], math.ceil((seconds + margin) * 1000) + 1000)
    end
  end
end
return '0'
"""

_HOLD = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local until_ = now + tonumber(ARGV[1])
local h = tonumber(redis.call('GET', KEYS[1]) or '0')
if until_ > h then
  redis.call('SET', KEYS[1], string.format('%.6f', until_), 'PX', math.ceil(tonumber(ARGV[1]) * 1000) + 1000)
end
return 1
"""


class RedisRateLimiter(RateLimiter):
    """One limiter shared by every process that uses the same Redis keys (``prefix``)."""

    def __init__(self, client, prefix: str, windows: list[Window], margin_seconds: float = 0.03):
        super().__init__(windows, margin_seconds)
        self._client = client
        self.prefix = prefix
        self._keys = [f"{prefix}win:{w.unit}:{w.limit:g}:{w.seconds:g}:{w.kind}" for w in self.windows]
        self._hold_keys = [f"{prefix}hold:{u}" for u in UNITS]
        self._try = client.register_script(_TRY_ACQUIRE)
        self._hold = client.register_script(_HOLD)

    def try_acquire(self, tokens: float = 0.0) -> float:
        args: list[str] = [str(len(self.windows))]
        for window, cost in zip(self.windows, self.costs(tokens)):
            args += ["1" if window.kind == "fixed" else "0", f"{window.seconds:.6f}", f"{window.limit:.6f}",
                     f"{cost:.6f}"]
        args += [f"{self.margin:.6f}", uuid.uuid4().hex[:12]]
        return float(self._try(keys=self._keys + self._hold_keys, args=args))

    def hold(self, unit: str, seconds: float) -> None:
        if unit in UNITS:
            self._hold(keys=[f"{self.prefix}hold:{unit}"], args=[f"{max(seconds, 0.0):.6f}"])


def make_limiter(windows: list[Window], margin_seconds: float, redis_client=None,
                 prefix: str = "") -> RateLimiter:
    """A limiter (shared through Redis when a client is given); with no window it still honours holds."""
    if redis_client is not None:
        return RedisRateLimiter(redis_client, prefix, windows, margin_seconds)
    return LocalRateLimiter(windows, margin_seconds)


# -- what providers say about their limits ----------------------------------------------------------
@dataclass
class RateInfo:
    """Rate-limit state a provider reported with an answer (None: not reported)."""

    remaining_requests: float | None = None
    reset_requests: float | None = None
    remaining_tokens: float | None = None
    reset_tokens: float | None = None
    retry_after: float | None = None

    def holds(self) -> dict[str, float]:
        """unit -> seconds to hold, for each unit the provider says is spent until its reset."""
        out: dict[str, float] = {}
        for unit, remaining, reset in (("requests", self.remaining_requests, self.reset_requests),
                                       ("tokens", self.remaining_tokens, self.reset_tokens)):
            if remaining is not None and remaining <= 0:
                wait = reset if reset is not None else self.retry_after
                if wait is not None and wait > 0:
                    out[unit] = wait
        return out


def parse_duration(value: str | None) -> float | None:
    """Seconds from a rate-limit reset value: ``1s``, ``6m0s``, ``20ms``, ``1h2m3.5s``, a bare number of
    seconds, or an RFC 3339 time (Anthropic's ``...-reset``)."""
    import re
    from datetime import datetime, timezone

    if value is None or not str(value).strip():
        return None
    text = str(value).strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", text)
    if parts and "".join(n + u for n, u in parts) == text:
        scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
        return sum(float(n) * scale[u] for n, u in parts)
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, when.timestamp() - time.time())


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value is not None and str(value).strip() != "" else None
    except ValueError:
        return None


def rate_info(headers, retry_after: float | None = None) -> RateInfo | None:
    """Read OpenAI-style (``x-ratelimit-*``) and Anthropic-style (``anthropic-ratelimit-*``) headers."""
    get = headers.get
    info = RateInfo(
        remaining_requests=_number(get("x-ratelimit-remaining-requests")
                                   or get("anthropic-ratelimit-requests-remaining")),
        reset_requests=parse_duration(get("x-ratelimit-reset-requests") or get("anthropic-ratelimit-requests-reset")),
        remaining_tokens=_number(get("x-ratelimit-remaining-tokens") or get("anthropic-ratelimit-tokens-remaining")),
        reset_tokens=parse_duration(get("x-ratelimit-reset-tokens") or get("anthropic-ratelimit-tokens-reset")),
        retry_after=retry_after,
    )
    if ms := _number(get("retry-after-ms")):
        info.retry_after = ms / 1000.0
    if all(v is None for v in vars(info).values()):
        return None
    return info
