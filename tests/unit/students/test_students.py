"""Each student kind fits, predicts, beats the mean predictor and round-trips through save/load."""

from __future__ import annotations

import numpy as np
import pytest

from distillery.students import StudentLoadError, load_student, make_student

DIMS = ["climate", "evidence", "community"]


@pytest.fixture(scope="module")
def emb_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("emb")


def _mae(pred, y):
    return float(np.abs(pred - y).mean())


def _check_student(student, data, tmp_path):
    (tr_x, tr_y), (va_x, va_y), (te_x, te_y) = data
    student.fit(tr_x, tr_y, va_x, va_y)
    pred = student.predict(te_x)
    assert pred.shape == (len(te_x), len(DIMS))
    mean_mae = _mae(np.tile(tr_y.mean(0), (len(te_y), 1)), te_y)
    assert _mae(pred, te_y) < 0.75 * mean_mae
    student.save(tmp_path / "s")
    again = load_student(tmp_path / "s")
    assert type(again) is type(student)
    assert again.dimensions == DIMS
    np.testing.assert_allclose(again.predict(te_x), pred, rtol=1e-5, atol=1e-5)
    return pred


def test_lexical_fits_beats_mean_and_round_trips(data, tmp_path):
    student = make_student("lexical", DIMS, filter="t/v1")
    _check_student(student, data, tmp_path)
    assert len(student.chosen_alphas) == len(DIMS)
    assert student.predict([]).shape == (0, len(DIMS))


def test_probe_fits_beats_mean_and_round_trips(data, tmp_path, emb_cache):
    student = make_student("probe", DIMS, head_tokens=48, tail_tokens=16, cache_dir=emb_cache)
    _check_student(student, data, tmp_path)
    # the embedding cache persisted: a new encoder instance reads it back
    from distillery.students.encoder import Encoder

    enc = Encoder("all-MiniLM-L6-v2", 48, 16, cache_dir=emb_cache, runtime=student.params["runtime"])
    assert len(enc._cache) == 200 + 40 + 60


def test_probe_ridge_head(data, tmp_path, emb_cache):
    student = make_student("probe", DIMS, head="ridge", head_tokens=48, tail_tokens=16, cache_dir=emb_cache)
    _check_student(student, data, tmp_path)


def test_ensemble_of_lexical_reports_spread(data, tmp_path):
    student = make_student("ensemble", DIMS, member_kind="lexical", k=3,
                           member_params={"char_ngram_max": 0})
    _check_student(student, data, tmp_path)
    mean, spread = student.predict_with_spread(data[2][0][:5])
    assert spread.shape == mean.shape and (spread > 0).any()


def test_head_tail_truncation_keeps_both_ends():
    from distillery.students.encoder import Encoder

    enc = Encoder("all-MiniLM-L6-v2", head_tokens=4, tail_tokens=3)
    enc._load()
    ids = enc._token_ids(["alpha beta gamma delta " + "filler " * 200 + "omega sigma tau"])[0]
    text = enc._tokenizer.decode(ids)
    assert "alpha beta gamma delta" in text and "omega sigma tau" in text and text.count("filler") == 0
    assert len(ids) == 4 + 3 + 2


def test_unknown_params_and_kinds_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="unknown lexical student parameter"):
        make_student("lexical", DIMS, bogus=1)
    with pytest.raises(StudentLoadError, match="unknown student kind"):
        make_student("nope", DIMS)
    with pytest.raises(StudentLoadError, match="manifest.json is missing"):
        load_student(tmp_path)
    with pytest.raises(ValueError, match="targets must have shape"):
        make_student("lexical", DIMS).fit(["a b", "c d"], np.zeros((2, 2)))


def test_string_params_are_coerced():
    student = make_student("lexical", DIMS, alpha="3.5", alphas="1,2", char_ngram_max="0")
    assert student.params["alpha"] == 3.5 and student.params["alphas"] == [1.0, 2.0]
    assert student.params["char_ngram_max"] == 0
