"""The served model's training reference is exported as a gauge after load, replaced on hot reload."""

from __future__ import annotations

import numpy as np
import pytest
from distillery_services.inference.engine import BatchLimits, ScoringEngine
from distillery_services.inference.registry_source import RegistrySource
from prometheus_client import REGISTRY

from distillery.calibration import Calibration
from distillery.drift import OVERALL, SCORE_BANDS, reference_distribution
from distillery.filters.spec import FilterSpec
from distillery.registry import ModelRegistry
from distillery.students import compose_text, make_student
from distillery.testing.labelled import generate
from distillery.v1 import article_pb2

DIMS = ["climate", "evidence"]
BANDS = [name for name, _ in SCORE_BANDS]
NAME = "refgauge"


def _spec() -> FilterSpec:
    scale = {b: "x" for b in BANDS}
    return FilterSpec(
        name=NAME, version=1, description="reference gauge test filter",
        dimensions=[{"name": d, "weight": 0.5, "description": d, "scale": scale} for d in DIMS],
        tiers=[{"name": "low", "min_overall": 0}, {"name": "high", "min_overall": 7}],
    )


def _share(dimension: str, band: str) -> float | None:
    return REGISTRY.get_sample_value("distillery_inference_reference_score_ratio",
                                     {"filter": NAME, "dimension": dimension, "band": band})


def _exported() -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for dim in [*DIMS, OVERALL]:
        for band in BANDS:
            value = _share(dim, band)
            if value is not None:
                out.setdefault(dim, {})[band] = value
    return out


@pytest.fixture(scope="module")
def trained():
    records = generate(DIMS, 120, seed=11)
    texts = [compose_text(r["title"], r["text"]) for r in records]
    y = np.array([[r["dimension_scores"][d] for d in DIMS] for r in records])
    student = make_student("lexical", DIMS, char_ngram_max=0).fit(texts[:80], y[:80])
    calibration = Calibration.fit(student.predict(texts[80:100]), y[80:100], DIMS)
    calibrated, _, _ = calibration.apply(student.predict(texts[80:]))
    calibrated = np.clip(calibrated, 0, 10)
    reference = reference_distribution(DIMS, calibrated, calibrated.mean(axis=1))
    return student, calibration, reference


def test_gauge_follows_the_served_version(tmp_path, trained):
    student, calibration, reference = trained
    spec = _spec()
    registry = ModelRegistry(tmp_path / "registry", cache_dir=tmp_path / "cache")
    with_ref = registry.register(spec, student, calibration, {"test_mae": 1.0}, reference=reference)
    without = registry.register(spec, student, calibration, {"test_mae": 1.0})
    skewed = {"bands": BANDS, "split": "val+test", "n": 4,
              "shares": {d: {"0-2": 0.0, "3-4": 0.0, "5-6": 0.25, "7-8": 0.25, "9-10": 0.5} for d in [*DIMS, OVERALL]}}
    other = registry.register(spec, student, calibration, {"test_mae": 1.0}, reference=skewed)

    engine = ScoringEngine([spec], RegistrySource(tmp_path / "registry"), BatchLimits(max_wait_s=0.01))
    try:
        assert engine.refresh() == [] and _exported() == {}  # nothing promoted: nothing exported

        registry.promote(NAME, with_ref.version_id)
        assert [v for _, _, v in engine.refresh()] == [with_ref.version_id]
        assert _exported() == reference["shares"]
        assert set(_exported()) == {*DIMS, OVERALL}

        # Scoring still works and does not touch the reference.
        slots = engine.resolve([])
        (result,), = engine.score([article_pb2.Article(id="x", title="Solar", text="community solar grid")], slots)
        assert result.model_version == with_ref.version_id
        assert _exported() == reference["shares"]

        # Hot reload to another version with a reference: values replaced.
        registry.promote(NAME, other.version_id)
        assert [v for _, _, v in engine.refresh()] == [other.version_id]
        assert _exported() == skewed["shares"]

        # Hot reload to an old version without a reference: the gauge disappears for this filter.
        registry.promote(NAME, without.version_id)
        assert [v for _, _, v in engine.refresh()] == [without.version_id]
        assert _exported() == {}
        assert engine.served() == {NAME: {"primary": without.version_id}}

        # Rolling back restores the reference of the version served again.
        registry.rollback(NAME)
        engine.refresh()
        assert _exported() == skewed["shares"]
    finally:
        engine.close()
