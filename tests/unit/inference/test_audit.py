"""The audit matcher: prediction store (LRU + TTL), sliding MAE, interval coverage and match counters."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from distillery_services.inference.audit import AuditMatcher, PredictionStore, SlidingMae
from prometheus_client import REGISTRY

from distillery.labels import DimensionLabel, FilterRef, LabelReason, OracleLabel


def sample(name: str, **labels) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


@dataclass
class Result:  # the fields of engine.FilterResult the store reads
    filter_name: str
    filter_version: int
    dimensions: list
    calibrated: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    model_version: str = "v-test"


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def result(filter_name: str, calibrated, width: float = 1.0) -> Result:
    c = np.asarray(calibrated, dtype=float)
    return Result(filter_name, 1, ["a", "b"], c, c - width, c + width)


def label(article_id: str, filter_name: str, scores: dict, reason=LabelReason.AUDIT):
    return OracleLabel(article_id=article_id, filter=FilterRef(name=filter_name, version=1), reason=reason,
                       dimensions=[DimensionLabel(name=k, score=v) for k, v in scores.items()])


def test_store_is_lru_bounded_and_forgets_after_ttl():
    clock = Clock()
    store = PredictionStore(max_size=2, ttl_seconds=60, clock=clock)
    store.remember("x", result("f", [1, 2]), "audit")
    store.remember("y", result("f", [1, 2]), "audit")
    store.remember("z", result("f", [1, 2]), "audit")
    assert len(store) == 2 and store.evicted == 1
    assert store.pop("x", "f") is None  # the oldest was evicted
    clock.now += 61
    assert store.pop("y", "f") is None and store.pop("z", "f") is None  # expired
    assert store.expired == 2
    store.remember("w", result("f", [3, 4]), "uncertain")
    got = store.pop("w", "f")
    assert got is not None and got.calibrated == (3.0, 4.0) and got.reason == "uncertain"
    assert store.pop("w", "f") is None  # popped once
    with pytest.raises(ValueError):
        PredictionStore(max_size=0, ttl_seconds=1)


def test_redelivered_article_replaces_its_prediction():
    store = PredictionStore(max_size=10, ttl_seconds=60)
    store.remember("x", result("f", [1, 2]), "audit")
    store.remember("x", result("f", [5, 6]), "audit")
    assert len(store) == 1 and store.pop("x", "f").calibrated == (5.0, 6.0)


def test_sliding_mae_keeps_the_last_n_errors():
    mae = SlidingMae(window=3)
    assert mae.mae("f", "a") is None
    for e in (4.0, 1.0, 1.0):
        mae.add("f", "a", e)
    assert mae.mae("f", "a") == pytest.approx(2.0)
    assert mae.add("f", "a", 1.0) == pytest.approx(1.0)  # 4.0 slid out
    assert mae.count("f", "a") == 3 and mae.mae("f", "b") is None
    with pytest.raises(ValueError):
        SlidingMae(0)


def test_matcher_updates_mae_coverage_histogram_and_counters():
    f = "audit_unit_f1"
    matcher = AuditMatcher(PredictionStore(100, 3600), window=2)
    matcher.set_targets({f: 1.25})
    assert sample("distillery_inference_target_mae", filter=f) == 1.25
    store = matcher.store
    store.remember("a1", result(f, [5.0, 2.0], width=1.0), "audit")
    store.remember("a2", result(f, [5.0, 2.0], width=1.0), "audit")
    store.remember("a3", result(f, [5.0, 2.0], width=1.0), "audit")

    out = matcher.observe(label("a1", f, {"a": 6.5, "b": 2.0}))
    assert out.status == "matched" and out.errors == {"a": pytest.approx(1.5), "b": pytest.approx(0.0)}
    assert sample("distillery_inference_audit_mae", filter=f, dimension="a") == pytest.approx(1.5)
    matcher.observe(label("a2", f, {"a": 5.5, "b": 3.0}))
    assert sample("distillery_inference_audit_mae", filter=f, dimension="a") == pytest.approx(1.0)
    assert sample("distillery_inference_audit_mae", filter=f, dimension="b") == pytest.approx(0.5)
    matcher.observe(label("a3", f, {"a": 5.5, "b": 3.0}))  # window 2: the 1.5 slides out
    assert sample("distillery_inference_audit_mae", filter=f, dimension="a") == pytest.approx(0.5)

    # Coverage: a's errors 1.5 (outside +-1), 0.5, 0.5; b's 0, 1.0 (on the bound: covered), 1.0.
    assert sample("distillery_inference_audit_interval_total", filter=f, dimension="a", covered="true") == 2
    assert sample("distillery_inference_audit_interval_total", filter=f, dimension="a", covered="false") == 1
    assert sample("distillery_inference_audit_interval_total", filter=f, dimension="b", covered="true") == 3
    assert sample("distillery_inference_audit_abs_error_count", filter=f, dimension="a", reason="audit") == 3
    assert sample("distillery_inference_audit_abs_error_sum", filter=f, dimension="a",
                  reason="audit") == pytest.approx(2.5)
    assert sample("distillery_inference_audit_matched_total", filter=f, reason="audit") == 3
    assert len(store) == 0 and sample("distillery_inference_audit_pending_predictions") == 0

    # The same label again (redelivery): no prediction left -> unmatched, the MAE does not move.
    assert matcher.observe(label("a3", f, {"a": 10.0, "b": 10.0})).status == "unmatched"
    assert sample("distillery_inference_audit_unmatched_total", filter=f, reason="audit") == 1
    assert sample("distillery_inference_audit_mae", filter=f, dimension="a") == pytest.approx(0.5)


def test_uncertain_labels_feed_only_the_histogram_and_other_reasons_are_ignored():
    f = "audit_unit_f2"
    matcher = AuditMatcher(PredictionStore(100, 3600), window=10)
    matcher.store.remember("u1", result(f, [5.0, 5.0]), "uncertain")
    out = matcher.observe(label("u1", f, {"a": 9.0, "b": 1.0}, reason=LabelReason.UNCERTAIN))
    assert out.status == "matched" and out.reason == "uncertain"
    assert sample("distillery_inference_audit_abs_error_sum", filter=f, dimension="a",
                  reason="uncertain") == pytest.approx(4.0)
    assert sample("distillery_inference_audit_mae", filter=f, dimension="a") is None
    assert sample("distillery_inference_audit_interval_total", filter=f, dimension="a", covered="false") is None
    assert sample("distillery_inference_audit_matched_total", filter=f, reason="uncertain") == 1

    matcher.store.remember("t1", result(f, [5.0, 5.0]), "audit")
    assert matcher.observe(label("t1", f, {"a": 1.0}, reason=LabelReason.TRAINING)).status == "ignored"
    assert len(matcher.store) == 1  # a training label of the same article does not consume the prediction


def test_label_missing_a_dimension_scores_only_the_ones_it_has():
    f = "audit_unit_f3"
    matcher = AuditMatcher(PredictionStore(100, 3600), window=10)
    matcher.store.remember("m1", result(f, [2.0, 8.0]), "audit")
    out = matcher.observe(label("m1", f, {"b": 7.0}))
    assert out.errors == {"b": pytest.approx(1.0)}
    assert sample("distillery_inference_audit_mae", filter=f, dimension="a") is None
