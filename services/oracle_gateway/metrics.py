"""Prometheus metrics of the oracle gateway (no per-article labels)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter("distillery_oracle_requests_total", "Provider attempts and label outcomes",
                   ["provider", "model", "outcome"])
TOKENS = Counter("distillery_oracle_tokens_total", "Tokens billed by providers", ["provider", "model", "kind"])
COST = Counter("distillery_oracle_cost_usd_total", "Money spent on oracle calls (pricing table)",
               ["filter", "provider", "model"])
LATENCY = Histogram("distillery_oracle_request_latency_seconds", "Provider call latency", ["provider"],
                    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 40, 80))
OVERHEAD = Histogram("distillery_oracle_overhead_seconds", "Gateway time per label beyond the provider call "
                     "and rate-limit waits", buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1))
CACHE_HITS = Counter("distillery_oracle_cache_hits_total", "Labels served without a paid call", ["source"])
RETRIES = Counter("distillery_oracle_retries_total", "Retried attempts", ["provider", "reason"])
BUDGET_REMAINING = Gauge("distillery_oracle_budget_remaining_usd", "Budget left per filter", ["filter"])
IN_FLIGHT = Gauge("distillery_oracle_in_flight_requests", "Provider calls in flight", ["provider"])
DEAD_LETTERS = Counter("distillery_oracle_dead_letters_total", "Articles the oracle could not label",
                       ["provider", "reason"])
