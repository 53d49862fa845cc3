"""Per-request timeouts from observed latency: bounded, and doubled for a request that already timed out."""

from __future__ import annotations

from distillery_services.oracle_gateway.timeouts import MIN_SAMPLES, LatencyTracker


def test_timeout_follows_the_latency_percentile_within_bounds():
    tracker = LatencyTracker(max_seconds=60.0, min_seconds=0.5, percentile=0.99, factor=3.0)
    assert tracker.timeout() == 60.0  # nothing observed yet: the configured bound
    for _ in range(MIN_SAMPLES - 1):
        tracker.observe(0.2)
    assert tracker.timeout() == 60.0
    tracker.observe(0.2)
    assert abs(tracker.timeout() - 0.6) < 1e-9  # p99 0.2 s x 3
    assert abs(tracker.timeout(timed_out_before=2) - 2.4) < 1e-9  # a request that timed out twice: x4
    assert tracker.timeout(timed_out_before=10) == 60.0  # never above the bound
    for _ in range(600):  # recent answers only (the oldest samples leave)
        tracker.observe(0.01)
    assert tracker.timeout() == 0.5  # never below the floor


def test_fixed_timeout_when_not_adaptive():
    tracker = LatencyTracker(max_seconds=30.0, adaptive=False)
    for _ in range(50):
        tracker.observe(0.1)
    assert tracker.timeout() == 30.0
