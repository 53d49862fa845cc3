"""Prometheus metrics of the prefilter (``distillery_prefilter_*``); labels are bounded (filter, reason code)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

# Per-article engine time: a few microseconds to a few milliseconds.
ARTICLE_BUCKETS = (1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 0.1)
BATCH_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500)

DECISIONS = Counter(
    "distillery_prefilter_decisions_total",
    "Prefilter decisions by filter, outcome (passed/blocked) and deciding reason code.",
    ["filter", "outcome", "reason"],
)
ARTICLE_SECONDS = Histogram(
    "distillery_prefilter_article_seconds",
    "Rule-engine time for one article, all requested filters together.",
    buckets=ARTICLE_BUCKETS,
)
BATCH_ARTICLES = Histogram(
    "distillery_prefilter_batch_articles",
    "Articles per Check request or per Kafka poll batch.",
    ["source"],
    buckets=BATCH_BUCKETS,
)
INVALID_ARTICLES = Counter(
    "distillery_prefilter_invalid_articles_total",
    "Articles refused before any rule ran (empty text, too large, undecodable), by where they came from.",
    ["source"],
)


def record(verdicts) -> None:
    """Count decisions. Reason codes are bounded: categories and domains come from the spec, the rest are
    fixed words or ISO 639-1 language codes; the matched term (unbounded) is never a label."""
    for v in verdicts:
        DECISIONS.labels(v.ref, "passed" if v.passed else "blocked", v.reasons[0].code).inc()
