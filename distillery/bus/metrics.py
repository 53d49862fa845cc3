"""Kafka stage metrics, one set per service: ``distillery_<service>_kafka_*``."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import Counter, Gauge, Histogram

_BY_SERVICE: dict[str, StageMetrics] = {}


@dataclass(frozen=True)
class StageMetrics:
    consumed: Counter
    produced: Counter
    dead_letters: Counter
    lag: Gauge
    batch_seconds: Histogram
    produce_failures: Counter
    up: Gauge


def stage_metrics(service: str) -> StageMetrics:
    if service not in _BY_SERVICE:
        p = f"distillery_{service}_kafka"
        _BY_SERVICE[service] = StageMetrics(
            consumed=Counter(f"{p}_consumed_total", f"Messages the {service} stage consumed, by topic.", ["topic"]),
            produced=Counter(f"{p}_produced_total", f"Messages the {service} stage produced, by topic.", ["topic"]),
            dead_letters=Counter(
                f"{p}_dead_letters_total", f"Messages the {service} stage sent to a DLQ, by source topic.", ["topic"]
            ),
            lag=Gauge(
                f"{p}_consumer_lag_messages",
                f"Messages not yet consumed by the {service} stage (high watermark - position).",
                ["topic", "partition"],
            ),
            batch_seconds=Histogram(
                f"{p}_batch_seconds",
                f"Time of one {service} stage batch: process, produce, flush and commit.",
                buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            ),
            produce_failures=Counter(
                f"{p}_produce_failures_total",
                f"Batches of the {service} stage whose output was not acknowledged (retried, not committed).",
            ),
            up=Gauge(
                f"{p}_stage_up",
                f"1 while the {service} stage's consume loop runs, 0 once it stopped (by an error or shutdown); after "
                "an error the service reports NOT_SERVING and exits non-zero.",
                ["group"],
            ),
        )
    return _BY_SERVICE[service]
