"""``multi``: one shared trunk, a head per filter, joint training with missing labels, per-filter views."""

from __future__ import annotations

import numpy as np

from distillery.calibration import Calibration
from distillery.filters.spec import FilterSpec
from distillery.registry import ModelRegistry
from distillery.students import compose_text, load_student, make_student
from distillery.testing.labelled import generate

A_DIMS, B_DIMS = ["climate", "evidence"], ["community", "profit"]
COLUMNS = [f"a/v1:{d}" for d in A_DIMS] + [f"b/v1:{d}" for d in B_DIMS]
SCALE = {b: "x" for b in ("0-2", "3-4", "5-6", "7-8", "9-10")}


def _data(n, seed):
    recs = generate(A_DIMS + B_DIMS, n, seed=seed)
    texts = [compose_text(r["title"], r["text"]) for r in recs]
    y = np.array([[r["dimension_scores"][d] for d in A_DIMS + B_DIMS] for r in recs])
    return texts, y


def test_multi_trains_jointly_with_missing_labels_and_views_round_trip(tmp_path):
    tr_x, tr_y = _data(200, 1)
    va_x, va_y = _data(40, 2)
    te_x, te_y = _data(60, 3)
    tr_y = tr_y.copy()
    tr_y[:100, 2:] = np.nan  # half the articles were labelled for filter a only
    tr_y[100:150, :2] = np.nan  # some for filter b only
    student = make_student("multi", COLUMNS, head_tokens=48, tail_tokens=16, cache_dir=tmp_path / "emb")
    student.fit(tr_x, tr_y, va_x, va_y)
    pred = student.predict(te_x)
    assert pred.shape == (60, 4)
    mean_mae = np.abs(np.nanmean(tr_y, axis=0) - te_y).mean()
    assert np.abs(pred - te_y).mean() < 0.8 * mean_mae
    view = student.view("b/v1")
    assert view.dimensions == B_DIMS
    np.testing.assert_allclose(view.predict(te_x[:5]), pred[:5, 2:], rtol=1e-5, atol=1e-5)
    student.save(tmp_path / "m")
    np.testing.assert_allclose(load_student(tmp_path / "m").predict(te_x[:5]), pred[:5], rtol=1e-5)
    # the registry stores the view under its filter and loads it back as that filter's model
    spec = FilterSpec(name="b", version=1, description="b",
                      dimensions=[{"name": d, "weight": 0.5, "description": d, "scale": SCALE} for d in B_DIMS],
                      tiers=[{"name": "low", "min_overall": 0}])
    reg = ModelRegistry(tmp_path / "reg")
    info = reg.register(spec, view, Calibration.identity(B_DIMS, 2.0), {})
    raw, _, _, _ = reg.load(info).predict(te_x[:5])
    np.testing.assert_allclose(raw, pred[:5, 2:], rtol=1e-5)
