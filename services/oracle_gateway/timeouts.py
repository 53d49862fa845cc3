"""Per-request timeouts from observed latency: a hung request costs a few seconds, not the whole timeout.

A provider sometimes accepts a request and never answers. With a fixed 60 s timeout each such request
holds a worker for a minute. The tracker keeps the latencies of recent answers and times a request out
at a high percentile times a factor, within [``timeout_min_seconds``, ``timeout_seconds``]. Until enough
answers were seen it uses ``timeout_seconds``. Timeouts are not fed back as samples (they would push
the percentile up after every hang); instead a request that timed out gets twice its timeout on each
retry, so a request that is slow rather than hung still gets through.
"""

from __future__ import annotations

import threading
from collections import deque

MIN_SAMPLES = 20
KEPT_SAMPLES = 512


class LatencyTracker:
    def __init__(self, max_seconds: float, min_seconds: float = 2.0, percentile: float = 0.99,
                 factor: float = 3.0, adaptive: bool = True):
        self.max_seconds = max_seconds
        self.min_seconds = min(min_seconds, max_seconds)
        self.percentile = percentile
        self.factor = factor
        self.adaptive = adaptive
        self._samples: deque[float] = deque(maxlen=KEPT_SAMPLES)
        self._lock = threading.Lock()

    @classmethod
    def for_oracle(cls, cfg) -> LatencyTracker:
        return cls(cfg.timeout_seconds, cfg.timeout_min_seconds, cfg.timeout_percentile, cfg.timeout_factor,
                   cfg.adaptive_timeout)

    def observe(self, seconds: float) -> None:
        with self._lock:
            self._samples.append(seconds)

    def quantile(self, q: float) -> float | None:
        """The ``q`` quantile of recent latencies (None until MIN_SAMPLES answers were seen)."""
        with self._lock:
            if len(self._samples) < MIN_SAMPLES:
                return None
            ordered = sorted(self._samples)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def timeout(self, timed_out_before: int = 0) -> float:
        """Seconds to wait for an answer; doubled for each earlier timeout of the same request."""
        base = self.max_seconds
        if self.adaptive:
            q = self.quantile(self.percentile)
            if q is not None:
                base = min(self.max_seconds, max(self.min_seconds, q * self.factor))
        return min(self.max_seconds, base * (2 ** timed_out_before))
