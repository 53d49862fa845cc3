"""Prometheus metrics of the inference service (no per-article labels; filter/dimension/stage are bounded)."""

from __future__ import annotations

import numpy as np
from prometheus_client import Counter, Gauge, Histogram

from distillery.filters.spec import BAND_EDGES

_LATENCY = (0.0002, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_BATCH = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
# One bucket per score point, and every band edge of the spec among them: the drift recording rules read the
# band shares from these ``le`` buckets (deploy/prometheus/rules/recording.yml).
_SCORE = tuple(sorted({float(x) for x in range(1, 11)} | set(BAND_EDGES)))

PHASE_SECONDS = Histogram(
    "distillery_inference_phase_seconds",
    "Time per scoring phase: queue (waiting in the batcher), preprocess (tokenise/features), inference "
    "(model forward, per batch), postprocess, total (per request).",
    ["phase"], buckets=_LATENCY,
)
BATCH_SIZE = Histogram(
    "distillery_inference_batch_size",
    "Articles per forward pass, by filter and cascade stage (a pass shared by several filters counts each "
    "filter's articles in it).",
    ["filter", "stage"], buckets=_BATCH,
)
BATCH_TOKENS = Histogram(
    "distillery_inference_batch_tokens", "Estimated tokens per forward pass.", ["filter", "stage"],
    buckets=(64, 256, 1024, 4096, 16384, 65536, 262144),
)
FORWARD_PASSES = Counter(
    "distillery_inference_forward_passes_total",
    "Model forward passes, by batcher: filter/role for a model of its own, or the shared part (an encoder "
    "with its token budget) whose one pass per batch serves every filter on it (probes, multi views).",
    ["batcher"],
)
QUEUE_DEPTH = Gauge("distillery_inference_queue_depth", "Articles waiting in a batcher.", ["filter", "stage"])
ARTICLES = Counter(
    "distillery_inference_articles_total", "(article, filter) pairs scored, by answering stage.",
    ["filter", "stage"],
)
TOKENS = Counter("distillery_inference_tokens_total", "Estimated tokens run through models.", ["filter", "stage"])
REJECTED = Counter(
    "distillery_inference_rejected_total", "Work refused or dropped: overloaded (queue full), deadline.",
    ["reason"],
)
SCORES = Histogram(
    "distillery_inference_score", "Calibrated score distribution per filter and dimension.",
    ["filter", "dimension"], buckets=_SCORE,
)
OVERALL = Histogram("distillery_inference_overall_score", "Overall score distribution.", ["filter"],
                    buckets=_SCORE)
REFERENCE_SHARE = Gauge(
    "distillery_inference_reference_score_ratio",
    "Share of the served (primary) model's calibrated predictions on its validation+test split per score band "
    "(0-2, 3-4, 5-6, 7-8, 9-10), per filter and dimension (dimension=\"overall\" for the overall score): the "
    "training reference the drift rules compare the live score histograms with. Absent for model versions "
    "registered without one; replaced on hot reload.",
    ["filter", "dimension", "band"],
)
UNCERTAIN = Counter("distillery_inference_uncertain_total", "Results flagged uncertain.", ["filter"])
RELOADS = Counter("distillery_inference_model_reloads_total", "Model versions (re)loaded, by outcome.",
                  ["filter", "outcome"])
LOADED = Gauge("distillery_inference_models_loaded", "Models currently served, by filter and stage.",
               ["filter", "stage"])
STAGE_MESSAGES = Counter(
    "distillery_inference_stage_messages_total", "Kafka stage messages, by topic and outcome.", ["topic", "outcome"]
)
ORACLE_REQUESTS = Counter(
    "distillery_inference_oracle_requests_total", "Articles sent to oracle.requests, by filter and reason.",
    ["filter", "reason"],
)

# Live student-vs-oracle accuracy (services/inference/audit.py): audit/uncertain labels matched to predictions.
_ERROR = (0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 4, 5, 7.5, 10)
AUDIT_ABS_ERROR = Histogram(
    "distillery_inference_audit_abs_error",
    "|student calibrated score - oracle score| per matched oracle label, by filter, dimension and reason "
    "(audit: random sample; uncertain: the articles the student flagged).",
    ["filter", "dimension", "reason"], buckets=_ERROR,
)
AUDIT_MAE = Gauge(
    "distillery_inference_audit_mae",
    "Student-vs-oracle mean absolute error over the last N audit labels (inference audit_window), per replica.",
    ["filter", "dimension"],
)
AUDIT_INTERVAL = Counter(
    "distillery_inference_audit_interval",
    "Audit labels whose oracle score fell inside (covered=true) or outside the conformal interval.",
    ["filter", "dimension", "covered"],
)
TARGET_MAE = Gauge(
    "distillery_inference_target_mae", "The filter spec's student.target_mae (alert threshold of the live MAE).",
    ["filter"],
)
AUDIT_MATCHED = Counter(
    "distillery_inference_audit_matched", "Oracle labels (audit/uncertain) matched to a remembered prediction.",
    ["filter", "reason"],
)
AUDIT_UNMATCHED = Counter(
    "distillery_inference_audit_unmatched",
    "Oracle labels (audit/uncertain) with no remembered prediction on this replica (expired, evicted, "
    "restarted, or another replica's).",
    ["filter", "reason"],
)
AUDIT_PENDING = Gauge(
    "distillery_inference_audit_pending_predictions", "Predictions waiting for their oracle label on this replica.",
)


def observe_many(child, values) -> None:
    """``child.observe(v)`` for every value of ``values`` (a labelled Histogram child), counted per bucket.

    One observe per score took a lock per value and walked the buckets in Python: with nine histograms per
    article it cost as much as the lexical student itself. Here the bucket counts come from numpy and each
    bucket hit takes the lock once. Same result as observing one by one (NaN lands in the sum, in no bucket);
    falls back to that when the client library's internals differ.
    """
    values = np.asarray(values, dtype=np.float64).ravel()
    if not values.size:
        return
    bounds = getattr(child, "_upper_bounds", None)
    buckets = getattr(child, "_buckets", None)
    total = getattr(child, "_sum", None)
    if bounds is None or buckets is None or total is None or len(bounds) != len(buckets):
        for value in values.tolist():
            child.observe(value)
        return
    counts = np.bincount(np.searchsorted(np.asarray(bounds, dtype=np.float64), values[~np.isnan(values)]),
                         minlength=len(bounds))
    total.inc(float(values.sum()))
    for i in np.flatnonzero(counts[:len(buckets)]).tolist():
        buckets[i].inc(int(counts[i]))
