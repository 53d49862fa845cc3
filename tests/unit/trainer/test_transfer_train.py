"""`distillery train --transfer-from`: a new filter's student warm-started from a related filter's promoted one."""

from __future__ import annotations

import numpy as np
import pytest
from distillery_services.inference.engine import BatchLimits, ScoringEngine
from distillery_services.inference.registry_source import RegistrySource
from distillery_services.trainer.request import TrainRequest
from distillery_services.trainer.training import run_training

from distillery.articles import write_jsonl
from distillery.filters import FilterCatalog
from distillery.registry import ModelRegistry
from distillery.testing.labelled import generate
from distillery.v1 import article_pb2
from tests.unit.trainer.helpers import DIMS, write_filter, write_labels


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("transfer")
    write_filter(root / "filters")  # "tiny": the related filter, with plenty of labels
    write_filter(root / "filters", name="newcomer", dims=["climate_evidence", "community"])
    catalog = FilterCatalog.load(root / "filters")
    source_labels = write_labels(root / "tiny.jsonl", n=400, seed=21)
    req = TrainRequest(kind="lexical", labels_path=str(source_labels), registry_root=str(root / "registry"),
                       promote=True, params={"evaluation": "holdout"})
    run_training(catalog.get("tiny"), req)
    records = generate(DIMS, 80, seed=22)  # few labels of the new filter, on the same kind of articles
    for r in records:
        s = r["dimension_scores"]
        r["dimension_scores"] = {"climate_evidence": round((s["climate"] + s["evidence"]) / 2, 1),
                                 "community": s["community"]}
    write_jsonl(root / "newcomer.jsonl", records)
    return root, catalog


def test_a_new_filter_trains_a_transfer_student_that_registers_and_serves(setup):
    root, catalog = setup
    spec = catalog.get("newcomer")
    req = TrainRequest(kind="lexical", labels_path=str(root / "newcomer.jsonl"), registry_root=str(root / "registry"),
                       promote=True, transfer_from=["tiny"])
    summary = run_training(spec, req)
    student = summary["student"]
    assert student.kind == "transfer" and student.params["sources"] == ["tiny/v1"]
    assert student.params["base_kind"] == "lexical" and summary["evaluation_mode"] == "cv"
    assert summary["metrics"]["test_mae"] < summary["metrics"]["mean_predictor_mae"]
    registry = ModelRegistry(root / "registry", cache_dir=root / "cache")
    assert registry.promoted("newcomer").kind == "transfer"
    engine = ScoringEngine([spec], RegistrySource(root / "registry", cache_dir=root / "cache"),
                           BatchLimits(max_wait_s=0.005))
    try:
        engine.refresh()
        articles = [article_pb2.Article(id=r["id"], title=r["title"], text=r["text"])
                    for r in generate(DIMS, 10, seed=23)]
        results = [per[0] for per in engine.score(articles, engine.resolve([]))]
    finally:
        engine.close()
    assert len(results) == 10 and all(np.all((r.calibrated >= 0) & (r.calibrated <= 10)) for r in results)


def test_transfer_needs_a_promoted_related_filter(setup):
    root, catalog = setup
    req = TrainRequest(kind="lexical", labels_path=str(root / "newcomer.jsonl"), registry_root=str(root / "registry"),
                       transfer_from=["uplifting"])
    with pytest.raises(ValueError, match="no promoted model of uplifting to transfer from"):
        run_training(catalog.get("newcomer"), req)
    req.transfer_from = ["newcomer"]
    with pytest.raises(ValueError, match="cannot transfer from itself"):
        run_training(catalog.get("newcomer"), req)
