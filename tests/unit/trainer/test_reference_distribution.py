"""The training reference distribution: band shares computed at registration, stored, read back."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from distillery_services.trainer.datasets import Dataset
from distillery_services.trainer.request import TrainRequest
from distillery_services.trainer.training import run_training
from helpers import DIMS, write_filter, write_labels

from distillery.drift import OVERALL, SCORE_BANDS, band_shares, reference_distribution
from distillery.filters import FilterCatalog, overall_scores
from distillery.registry import REFERENCE, ModelRegistry, RegistryError

BANDS = [name for name, _ in SCORE_BANDS]


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    return FilterCatalog.load(write_filter(tmp_path_factory.mktemp("filters"))).get("tiny")


def test_band_shares_use_the_live_histogram_boundaries():
    # Prometheus le buckets are inclusive: 2.0 is in 0-2, 2.01 in 3-4; out-of-range scores are clamped.
    shares = band_shares([-1.0, 0.0, 2.0, 2.01, 4.0, 6.0, 6.5, 8.0, 8.01, 10.0, 12.0, float("nan")])
    assert list(shares) == BANDS
    assert shares == pytest.approx({"0-2": 3 / 11, "3-4": 2 / 11, "5-6": 1 / 11, "7-8": 2 / 11, "9-10": 3 / 11})
    assert sum(shares.values()) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="no finite scores"):
        band_shares([float("nan")])


def test_reference_distribution_checks_its_shape():
    ref = reference_distribution(["a", "b"], np.array([[1.0, 9.0], [3.0, 9.5]]), np.array([5.0, 6.0]))
    assert ref["bands"] == BANDS and ref["n"] == 2 and ref["split"] == "val+test"
    assert ref["shares"]["a"] == {"0-2": 0.5, "3-4": 0.5, "5-6": 0.0, "7-8": 0.0, "9-10": 0.0}
    assert ref["shares"]["b"]["9-10"] == 1.0 and ref["shares"][OVERALL]["5-6"] == 1.0
    with pytest.raises(ValueError, match="expected 3 columns"):
        reference_distribution(["a", "b", "c"], np.zeros((2, 2)), np.zeros(2))


def test_training_stores_the_reference_of_its_val_and_test_predictions(tmp_path, spec):
    labels = write_labels(tmp_path / "labels.jsonl", n=160, seed=4)
    state = tmp_path / "state"
    # Held-out splits (with cross-validation, the default for 160 labels, the reference is the out-of-fold
    # predictions of every label instead).
    req = TrainRequest(kind="lexical", labels_path=str(labels), registry_root=str(state / "registry"),
                       datasets_dir=str(state / "datasets"), promote=True, params={"evaluation": "holdout"})
    summary = run_training(spec, req)
    registry = ModelRegistry(state / "registry", cache_dir=tmp_path / "cache")
    info = registry.promoted("tiny")
    assert info.version_id == summary["model_version"]
    folder = state / "registry" / "tiny" / "v1" / info.version_id
    stored = json.loads((folder / REFERENCE).read_text())
    assert stored == summary["reference_distribution"] == registry.reference(info)

    # Recompute from the registered model on the dataset's validation+test articles: same shares.
    dataset = Dataset.load(state / "datasets" / "tiny" / "v1" / summary["dataset_hash"])
    loaded = registry.load(info)
    assert loaded.reference == stored
    texts = [e.input_text for e in dataset.split("val") + dataset.split("test")]
    _, calibrated, _, _ = loaded.predict(texts)
    calibrated = np.clip(calibrated, 0, 10)
    overall, _ = overall_scores(spec, calibrated)
    assert stored["n"] == len(texts)
    for i, dim in enumerate(DIMS):
        assert stored["shares"][dim] == pytest.approx(band_shares(calibrated[:, i]))
    assert stored["shares"][OVERALL] == pytest.approx(band_shares(overall))
    assert set(stored["shares"]) == {*DIMS, OVERALL}
    for shares in stored["shares"].values():
        assert list(shares) == BANDS and sum(shares.values()) == pytest.approx(1.0)


def test_versions_without_a_reference_keep_working(tmp_path, spec):
    labels = write_labels(tmp_path / "labels.jsonl", n=120, seed=6)
    root = tmp_path / "registry"
    summary = run_training(spec, TrainRequest(kind="lexical", labels_path=str(labels), registry_root=str(root)))
    registry = ModelRegistry(root, cache_dir=tmp_path / "cache")
    # An old version: registered before references existed (no file in its folder).
    old = registry.register(spec, summary["student"], summary["calibration"], {"test_mae": 1.0})
    assert registry.reference(old) is None
    loaded = registry.load(old)
    assert loaded.reference is None
    assert loaded.predict(["a title\n\nsome text"])[1].shape == (1, len(DIMS))


def test_a_malformed_reference_is_refused_at_registration_and_ignored_at_load(tmp_path, spec):
    labels = write_labels(tmp_path / "labels.jsonl", n=120, seed=8)
    root = tmp_path / "registry"
    summary = run_training(spec, TrainRequest(kind="lexical", labels_path=str(labels), registry_root=str(root)))
    registry = ModelRegistry(root, cache_dir=tmp_path / "cache")
    bad = {"bands": BANDS, "shares": {DIMS[0]: {b: 0.2 for b in BANDS}}}
    with pytest.raises(ValueError, match="lacks"):
        registry.register(spec, summary["student"], summary["calibration"], reference=bad)
    info = registry.get("tiny", summary["model_version"])
    path = root / "tiny" / "v1" / info.version_id / REFERENCE
    path.chmod(0o644)
    path.write_text("{not json")
    with pytest.raises(RegistryError, match="unusable"):
        registry.reference(info)
    assert registry.load(info).reference is None  # the model still serves, without a drift reference
