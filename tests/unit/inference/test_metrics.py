"""Batched histogram observation gives the same exported series as one observe per value."""

from __future__ import annotations

import numpy as np
from distillery_services.inference.metrics import observe_many
from prometheus_client import CollectorRegistry, Histogram


def _samples(registry):
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for metric in registry.collect() for s in metric.samples if not s.name.endswith("_created")}


def test_observe_many_equals_observing_one_by_one():
    values = [0.0, 1.0, 1.5, 9.99, 10.0, 12.0, -3.0, 4.0, 4.0, float("nan")]
    exported = []
    for batched in (False, True):
        registry = CollectorRegistry()
        hist = Histogram("score", "s", ["filter"], buckets=[float(x) for x in range(1, 11)], registry=registry)
        child = hist.labels("f")
        if batched:
            observe_many(child, np.array(values[:4]))
            observe_many(child, values[4:])
            observe_many(child, [])
        else:
            for v in values:
                child.observe(v)
        exported.append(_samples(registry))
    assert exported[0].keys() == exported[1].keys()
    for key, value in exported[0].items():
        other = exported[1][key]
        assert (np.isnan(value) and np.isnan(other)) or value == other, key
