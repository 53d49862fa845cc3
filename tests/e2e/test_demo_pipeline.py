"""The demo's whole path at small size: four real service processes, synthetic corpus, real training."""

from __future__ import annotations

import pytest

from distillery.demo import run_demo

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_demo_pipeline_student_beats_the_mean_predictor(tmp_path, filters_dir):
    steps: set[str] = set()
    result = run_demo(
        "uplifting",
        count=260,
        student_kind="probe",
        seed=3,
        filters_dir=filters_dir,
        state_dir=tmp_path / "demo",
        progress=lambda step, done, total: steps.add(step.split(" (")[0]),
    )
    assert result.articles == 260
    assert 0 < result.passed < result.articles  # the prefilter blocked the off-topic share, passed the rest
    assert result.labels > 100 and result.cost_usd == 0.0  # synthetic oracle: free
    assert result.scored > 20 and result.model_version
    assert set(result.dimension_mae) == set(result.mean_predictor_mae)
    assert result.student_mae < 0.85 * result.baseline_mae, (result.dimension_mae, result.mean_predictor_mae)
    assert {"prefilter", "label", "train", "score held-out", "audit labels"} <= steps
    assert (tmp_path / "demo" / "labels.sqlite").exists() or any((tmp_path / "demo").glob("**/*.sqlite"))
