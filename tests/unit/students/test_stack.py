"""The ``stack`` student: out-of-fold members combined by a cross-dimension meta-model (distribution heads by
default, ridge or boosted trees on request)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from distillery.students import load_student, make_student

DIMS = ["climate", "evidence", "community"]
WORDS = {"kind": "lexical", "params": {"char_ngram_max": 0}}


@pytest.fixture(scope="module")
def data(labelled):
    return labelled(240, 11), labelled(40, 12), labelled(80, 13)


def _mae(pred, y):
    return float(np.abs(pred - y).mean())


PROBE = {"kind": "probe", "params": {"head": "ridge", "head_tokens": 48, "tail_tokens": 16}}


@pytest.fixture(scope="module")
def emb_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("emb")


@pytest.fixture(scope="module")
def fitted(data, emb_cache):
    (tr_x, tr_y), (va_x, va_y), _ = data
    student = make_student("stack", DIMS, filter="t/v1", members=[WORDS, PROBE], folds=3, cache_dir=emb_cache)
    return student.fit(tr_x, tr_y, va_x, va_y)


def test_stack_beats_the_mean_and_is_no_worse_than_its_best_member(fitted, data):
    (_, tr_y), _, (te_x, te_y) = data
    stacked = fitted.predict(te_x)
    members = fitted.predict_members(te_x)
    assert stacked.shape == (len(te_x), len(DIMS)) and members.shape == (2, len(te_x), len(DIMS))
    mean_mae = _mae(np.tile(tr_y.mean(0), (len(te_y), 1)), te_y)
    best_member = min(_mae(m, te_y) for m in members)
    assert _mae(stacked, te_y) < 0.75 * mean_mae
    assert _mae(stacked, te_y) <= 1.05 * best_member
    assert fitted.params["meta"] == "distribution" and "whole" in fitted.calibration_maps


def test_ridge_meta_model_is_still_offered(data, emb_cache):
    (tr_x, tr_y), (va_x, va_y), (te_x, te_y) = data
    student = make_student("stack", DIMS, members=[WORDS, PROBE], folds=3, meta="ridge", cache_dir=emb_cache)
    student.fit(tr_x, tr_y, va_x, va_y)
    assert len(student.chosen_alphas) == len(DIMS) and "whole" not in student.calibration_maps
    assert _mae(student.predict(te_x), te_y) < 0.75 * _mae(np.tile(tr_y.mean(0), (len(te_y), 1)), te_y)


def test_stack_round_trips_and_reports_member_spread(fitted, data, tmp_path):
    te_x = data[2][0]
    fitted.save(tmp_path / "stack")
    again = load_student(tmp_path / "stack")
    assert again.kind == "stack" and [m.kind for m in again.members] == ["lexical", "probe"]
    np.testing.assert_allclose(again.predict(te_x), fitted.predict(te_x), rtol=1e-5, atol=1e-5)
    mean, spread = again.predict_with_spread(te_x[:5])
    assert mean.shape == spread.shape == (5, len(DIMS)) and (spread > 0).any() and (spread >= 0).all()
    # distribution heads: the spread is their expected absolute error, not the members' disagreement
    members_std = again.predict_members(te_x[:5]).std(axis=0)
    assert not np.allclose(spread, members_std)
    assert again.predict([]).shape == (0, len(DIMS))


def test_boosted_meta_model_with_embeddings_fits_and_round_trips(data, emb_cache, tmp_path):
    (tr_x, tr_y), (va_x, va_y), (te_x, te_y) = data
    student = make_student("stack", DIMS, members=[WORDS, PROBE], folds=3, meta="boosted", meta_embeddings=True,
                           boosted_iterations=60, cache_dir=emb_cache).fit(tr_x, tr_y, va_x, va_y)
    pred = student.predict(te_x)
    mean_mae = _mae(np.tile(tr_y.mean(0), (len(te_y), 1)), te_y)
    assert _mae(pred, te_y) < 0.75 * mean_mae
    student.save(tmp_path / "boosted")
    np.testing.assert_allclose(load_student(tmp_path / "boosted").predict(te_x), pred, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="needs a probe member"):
        make_student("stack", DIMS, members=[WORDS], meta_embeddings=True)
    with pytest.raises(ValueError, match="meta must be one of"):
        make_student("stack", DIMS, meta="forest")


def test_the_meta_model_learns_from_out_of_fold_predictions(data):
    """One member memorises its training set, the other is over-regularised. Fitted on in-sample predictions
    the meta-model would copy the memoriser (perfect in sample); out of fold it learns how far to trust and
    rescale each, and beats both members clearly."""
    (tr_x, tr_y), _, (te_x, te_y) = data
    memoriser = {"kind": "lexical", "params": {"char_ngram_max": 0, "alpha": 1e-4}}
    shrunk = {"kind": "lexical", "params": {"char_ngram_max": 0, "alpha": 2.0}}
    student = make_student("stack", DIMS, members=[memoriser, shrunk], folds=4).fit(tr_x, tr_y)
    assert _mae(student.members[0].predict(tr_x), tr_y) < 0.01  # what an in-sample meta-model would see
    members = student.predict_members(te_x)
    assert _mae(student.predict(te_x), te_y) < 0.9 * min(_mae(m, te_y) for m in members)


def test_members_given_as_json_and_bad_members_are_explained():
    student = make_student("stack", DIMS, members=json.dumps([WORDS, "probe"]))
    assert [m["kind"] for m in student.member_specs] == ["lexical", "probe"]
    for members, message in [([], "non-empty list"), ([{"kind": "stack"}], "members may be"),
                             ([{"kind": "nope"}], "members may be"), ([{"params": {}}], "with a 'kind'"),
                             ("[not json", "not valid JSON")]:
        with pytest.raises(ValueError, match=message):
            make_student("stack", DIMS, members=members)
    with pytest.raises(ValueError, match="folds >= 2"):
        make_student("stack", DIMS, folds=1)
    with pytest.raises(RuntimeError, match="not fitted"):
        make_student("stack", DIMS).predict(["text"])


def test_the_trainer_fills_in_the_filters_encoder_for_probe_members(catalog):
    from distillery_services.trainer.factory import student_for

    spec = catalog.latest()[0]
    student = student_for(spec, "stack", {"members": json.dumps(["lexical", {"kind": "probe",
                                                                             "params": {"tail_tokens": 7}}])})
    probe = student.member_specs[1]["params"]
    assert probe["encoder"] == spec.student.encoder and probe["tail_tokens"] == 7
    assert probe["head_tokens"] == spec.student.truncation.head_tokens
    with pytest.raises(ValueError, match="members may be"):
        student_for(spec, "stack", {"members": '[{"kind": "multi"}]'})
