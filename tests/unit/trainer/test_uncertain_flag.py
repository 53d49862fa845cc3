"""Training fits the error model behind `uncertain`, reports the flag's worth, and the service flags the spec's
share of articles with it (the same rule the report measured)."""

from __future__ import annotations

import numpy as np
import pytest
from distillery_services.inference.engine import BatchLimits, ScoringEngine
from distillery_services.inference.registry_source import RegistrySource
from distillery_services.trainer.request import TrainRequest
from distillery_services.trainer.training import run_training

from distillery.filters import FilterCatalog
from distillery.registry import ModelRegistry
from distillery.testing.labelled import generate
from distillery.v1 import article_pb2
from tests.unit.trainer.helpers import DIMS, write_filter, write_labels


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("flag")
    spec = FilterCatalog.load(write_filter(root / "filters")).get("tiny")
    labels = write_labels(root / "labels.jsonl", n=300, seed=11)
    req = TrainRequest(kind="lexical", labels_path=str(labels), registry_root=str(root / "registry"), promote=True)
    return spec, root, run_training(spec, req)


def test_training_reports_the_flagged_share_and_its_error(trained):
    _spec, _, summary = trained
    m = summary["metrics"]
    assert summary["evaluation_mode"] == "cv"  # 300 labels: cross-fitted flags on out-of-fold predictions
    assert 0.04 <= m["uncertain_share"] <= 0.2
    assert m["uncertain_mae_flagged"] > m["uncertain_mae_unflagged"]
    assert m["uncertain_mae_ratio"] == pytest.approx(m["uncertain_mae_flagged"] / m["uncertain_mae_unflagged"])
    assert summary["evaluation"]["uncertain"]["n_flagged"] == pytest.approx(m["uncertain_share"] * m["n_cv"])
    model = summary["calibration"].error_model
    assert model is not None and model.fitted_on == m["n_cv"]


def test_the_service_flags_the_specs_share_with_the_registered_error_model(trained):
    spec, root, _summary = trained
    registry = ModelRegistry(root / "registry", cache_dir=root / "cache")
    calibration = registry.load(registry.promoted("tiny")).calibration
    assert calibration.error_model is not None  # stored in calibration.json with the version
    records = generate(DIMS, 400, seed=12)
    articles = [article_pb2.Article(id=r["id"], title=r["title"], text=r["text"]) for r in records]

    def flagged(spec_used):
        engine = ScoringEngine([spec_used], RegistrySource(root / "registry", cache_dir=root / "cache"),
                               BatchLimits(max_wait_s=0.005))
        try:
            engine.refresh()
            return np.array([per[0].uncertain for per in engine.score(articles, engine.resolve([]))])
        finally:
            engine.close()

    by_share = flagged(spec)
    assert 0.03 <= by_share.mean() <= 0.2  # the spec's default 10%, on articles the model never saw
    more = spec.model_copy(update={"student": spec.student.model_copy(update={"uncertain_share": 0.4})})
    assert flagged(more).mean() > by_share.mean() + 0.15  # the share is a serving setting: no retrain
    strict = spec.model_copy(update={"student": spec.student.model_copy(
        update={"uncertain_max_error": calibration.error_model.threshold(0.0) + 1.0})})
    assert not flagged(strict).any()  # an expected-error threshold above every held-out row's: nothing flagged
