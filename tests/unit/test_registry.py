"""Registry: immutable versions, promote/rollback, load -> predict with calibration, fsspec URIs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from distillery.calibration import Calibration
from distillery.filters.spec import FilterSpec
from distillery.registry import ModelRegistry, RegistryError
from distillery.students import compose_text, make_student
from distillery.testing.labelled import generate

DIMS = ["climate", "evidence"]
SCALE = {b: "x" for b in ("0-2", "3-4", "5-6", "7-8", "9-10")}


def make_spec(name="demo", version=1, dims=DIMS):
    return FilterSpec(
        name=name, version=version, description="test filter",
        dimensions=[{"name": d, "weight": 1 / len(dims), "description": d, "scale": SCALE} for d in dims],
        tiers=[{"name": "low", "min_overall": 0}, {"name": "high", "min_overall": 7}],
    )


@pytest.fixture(scope="module")
def trained():
    records = generate(DIMS, 120, seed=5)
    texts = [compose_text(r["title"], r["text"]) for r in records]
    y = np.array([[r["dimension_scores"][d] for d in DIMS] for r in records])
    student = make_student("lexical", DIMS, char_ngram_max=0).fit(texts[:80], y[:80])
    cal = Calibration.fit(student.predict(texts[80:]), y[80:], DIMS)
    return student, cal, texts


@pytest.mark.parametrize("root_kind", ["local", "memory"])
def test_register_promote_rollback_load(trained, tmp_path, root_kind):
    student, cal, texts = trained
    root = tmp_path / "reg" if root_kind == "local" else f"memory://reg-{tmp_path.name}"
    reg = ModelRegistry(root, cache_dir=tmp_path / "cache")
    spec = make_spec()
    assert reg.promoted("demo") is None and reg.list() == []
    a = reg.register(spec, student, cal, {"test_mae": 0.5, "bad": "x"}, dataset_hash="abc")
    b = reg.register(spec, student, cal, {"test_mae": 0.4}, dataset_hash="abc")
    assert a.version_id != b.version_id
    assert [i.version_id for i in reg.list("demo")] == [b.version_id, a.version_id]
    assert a.metrics == {"test_mae": 0.5} and a.dataset_hash == "abc" and a.kind == "lexical"
    assert a.code_version

    reg.promote("demo", a.version_id)
    assert reg.promoted("demo").version_id == a.version_id
    reg.promote("demo", b.version_id)
    assert reg.promoted("demo").version_id == b.version_id
    assert [i.promoted for i in reg.list("demo")] == [True, False]
    back = reg.rollback("demo")
    assert back.version_id == a.version_id == reg.promoted("demo").version_id
    with pytest.raises(RegistryError, match="nothing to roll back"):
        reg.rollback("demo")
    with pytest.raises(RegistryError, match="no model version"):
        reg.promote("demo", "20000101T000000-000000")
    with pytest.raises(ValueError, match="version: 'nope' is not a valid model version"):
        reg.promote("demo", "nope")

    loaded = reg.load(reg.promoted("demo"))
    raw, calibrated, lower, upper = loaded.predict(texts[:7])
    assert raw.shape == calibrated.shape == lower.shape == upper.shape == (7, 2)
    np.testing.assert_allclose(raw, student.predict(texts[:7]), rtol=1e-5)
    assert np.all((lower <= calibrated) & (calibrated <= upper))


def test_versions_are_immutable_and_pointer_is_json(trained, tmp_path):
    student, cal, _ = trained
    reg = ModelRegistry(tmp_path)
    info = reg.register(make_spec(), student, cal, {})
    version_dir = tmp_path / "demo" / "v1" / info.version_id
    assert {p.name for p in version_dir.iterdir()} == {"manifest.json", "metrics.json", "calibration.json",
                                                       "student"}
    with pytest.raises(FileExistsError):
        reg.storage.publish_dir(version_dir, str(version_dir))
    reg.promote("demo", info.version_id)
    pointer = json.loads((tmp_path / "demo" / "promoted.json").read_text())
    assert pointer["version_id"] == info.version_id and pointer["filter_version"] == 1
    assert not [p for p in (tmp_path / "demo").iterdir() if p.name.startswith(".")]


def test_register_rejects_mismatched_dimensions(trained, tmp_path):
    student, cal, _ = trained
    with pytest.raises(ValueError, match="differ from"):
        ModelRegistry(tmp_path).register(make_spec(dims=["a", "b"]), student, cal, {})


def test_held_out_samples_are_stored_capped_and_read_back(trained, tmp_path):
    from distillery.registry import MAX_SAMPLE_CHARS, MAX_SAMPLES

    student, cal, texts = trained
    reg = ModelRegistry(tmp_path / "reg")
    spec = make_spec()
    samples = [*texts, "x" * (MAX_SAMPLE_CHARS + 10)]
    with_samples = reg.register(spec, student, cal, samples=[samples[-1], *samples[:MAX_SAMPLES + 5]])
    loaded = reg.load(with_samples)
    assert len(loaded.samples) == MAX_SAMPLES and len(loaded.samples[0]) == MAX_SAMPLE_CHARS
    assert loaded.samples[1:] == texts[:MAX_SAMPLES - 1]
    assert reg.load(reg.register(spec, student, cal)).samples == []  # versions without samples: none
