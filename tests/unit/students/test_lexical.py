"""The lexical student's hashed n-gram featuriser: sklearn-equivalent features, stable hashes, robust text
handling, and saved models that predict identically in another process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from distillery.students import load_student, make_student
from distillery.students.manifest import MANIFEST
from distillery.students.ngrams import HashedTfidf

DIMS = ["climate", "evidence", "community"]
ROOT = Path(__file__).resolve().parents[3]


def _mae(pred, y):
    return float(np.abs(pred - y).mean())


def _row_values(X, i):
    return np.sort(X[i].data)


def test_hashed_features_match_sklearn_tfidf():
    """Same n-grams, tf, idf and per-block normalisation as the old TfidfVectorizer pair (up to column order)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    texts = ["Hello World, the café is open!", "a b c  de\tfg  Ünïcödé über", "", "x",
             "Solar power 2024: solar panels and wind_power"] * 3
    X = HashedTfidf(min_df=1).fit_transform(texts)
    word = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, strip_accents="unicode", dtype=np.float32)
    char = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True, strip_accents="unicode",
                           dtype=np.float32)
    W, C = word.fit_transform(texts), char.fit_transform(texts)
    assert X.shape[1] == W.shape[1] + C.shape[1]  # no collisions at 2**20 + 2**21 buckets on this tiny text
    for i in range(len(texts)):
        expected = np.sort(np.concatenate([W[i].data, C[i].data]))
        np.testing.assert_allclose(_row_values(X, i), expected, rtol=1e-5)


def test_features_are_the_same_on_any_number_of_threads():
    """A batch split across featurisation threads gives exactly the matrix one thread gives (rows in order,
    empty documents included), so serving on a bigger machine never changes a score."""
    from distillery.students.ngrams import set_featurise_threads

    texts = [f"Solar farm {i} powers {i % 7} towns; wind {i * 3} MW" if i % 9 else "" for i in range(150)]
    try:
        set_featurise_threads(1)
        h = HashedTfidf(min_df=1)
        one = h.fit_transform(texts)
        set_featurise_threads(3)
        many = h.transform(texts)
        fitted_on_threads = HashedTfidf(min_df=1).fit_transform(texts)
    finally:
        set_featurise_threads(None)
    assert one.shape == many.shape
    np.testing.assert_array_equal(one.indptr, many.indptr)
    np.testing.assert_array_equal(one.indices, many.indices)
    np.testing.assert_array_equal(one.data, many.data)
    assert fitted_on_threads.nnz == one.nnz  # fitting on threads: same columns


def test_hash_buckets_are_stable():
    """Bucket numbers are part of every saved model: they must never depend on the process or the version."""
    h = HashedTfidf(min_df=1, bits_word=12, bits_char=12)
    h.fit_transform(["Solar panels"])
    assert h.n_word_cols == 3  # "solar", "panels", "solar panels"
    assert h.kept.tolist() == [652, 1780, 2779, 4158, 4202, 4232, 4343, 4354, 4378, 4442, 4497, 4840, 4862, 4956,
                               5009, 5052, 5614, 5879, 5937, 6084, 6398, 6414, 6699, 7152, 7267, 7430, 7676, 8046,
                               8184]


def test_rank_table_maps_kept_buckets_to_their_columns():
    """The compact bucket -> column map gives each kept bucket its rank and every other bucket -1."""
    from distillery.students.ngrams import _column, rank_table

    rng = np.random.default_rng(0)
    n_buckets = 1 << 12
    kept = np.sort(rng.choice(n_buckets, size=700, replace=False)).astype(np.int64)
    kept[:3] = [0, 1, 63]  # word edges
    kept = np.unique(np.concatenate([kept, [64, n_buckets - 1]]))
    table = rank_table(kept, n_buckets)
    dense = np.full(n_buckets, -1)
    dense[kept] = np.arange(len(kept))
    assert [_column(table, np.uint64(b)) for b in range(n_buckets)] == dense.tolist()


def test_odd_texts_featurise(data):
    (tr_x, tr_y), _, _ = data
    student = make_student("lexical", DIMS).fit(tr_x, tr_y)
    odd = ["", " \n\t ", "x", "🌍🔥 ☀️", "気候変動と再生可能エネルギー", "e\u0301nergie", "broken \ud800 surrogate",
           "solar " * 200_000, None]
    pred = student.predict(odd)
    assert pred.shape == (len(odd), len(DIMS)) and np.isfinite(pred).all()
    # accents are stripped: the decomposed and the composed spelling are the same n-grams
    np.testing.assert_allclose(student.predict(["énergie"]), student.predict(["e\u0301nergie"]), atol=1e-6)


def test_word_only_mode(data, tmp_path):
    (tr_x, tr_y), (va_x, va_y), (te_x, te_y) = data
    student = make_student("lexical", DIMS, char_ngram_max=0).fit(tr_x, tr_y, va_x, va_y)
    assert student._hashed.n_features == student._hashed.n_word_cols > 0
    assert _mae(student.predict(te_x), te_y) < 0.9 * _mae(np.tile(tr_y.mean(0), (len(te_y), 1)), te_y)


@pytest.mark.parametrize("params", [{"char_wb": False}, {"featurizer": "sklearn"}])
def test_other_settings_fit_and_round_trip(data, tmp_path, params):
    (tr_x, tr_y), (va_x, va_y), (te_x, te_y) = data
    student = make_student("lexical", DIMS, **params).fit(tr_x, tr_y, va_x, va_y)
    pred = student.predict(te_x)
    assert _mae(pred, te_y) < 0.75 * _mae(np.tile(tr_y.mean(0), (len(te_y), 1)), te_y)
    student.save(tmp_path / "s")
    np.testing.assert_allclose(load_student(tmp_path / "s").predict(te_x), pred, rtol=1e-5, atol=1e-5)


def test_models_saved_before_the_hashed_featuriser_still_load(data, tmp_path):
    (tr_x, tr_y), _, (te_x, _) = data
    student = make_student("lexical", DIMS, featurizer="sklearn").fit(tr_x, tr_y)
    student.save(tmp_path / "old")
    manifest = json.loads((tmp_path / "old" / MANIFEST).read_text())
    del manifest["params"]["featurizer"]  # what an old manifest looked like
    (tmp_path / "old" / MANIFEST).write_text(json.dumps(manifest))
    again = load_student(tmp_path / "old")
    assert again.params["featurizer"] == "sklearn"
    np.testing.assert_allclose(again.predict(te_x), student.predict(te_x), rtol=1e-5, atol=1e-5)


def test_saved_model_predicts_identically_in_a_fresh_process(data, tmp_path):
    (tr_x, tr_y), (va_x, va_y), (te_x, _) = data
    student = make_student("lexical", DIMS).fit(tr_x, tr_y, va_x, va_y)
    student.save(tmp_path / "s")
    (tmp_path / "texts.json").write_text(json.dumps(te_x))
    script = ("import json, sys; import numpy as np; from distillery.students import load_student; "
              "s = load_student(sys.argv[1]); texts = json.load(open(sys.argv[2])); "
              "print(json.dumps(s.predict(texts).tolist()))")
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path / "s"), str(tmp_path / "texts.json")],
                         capture_output=True, text=True, env=env, cwd=ROOT, timeout=240, check=True)
    np.testing.assert_array_equal(np.array(json.loads(out.stdout)), student.predict(te_x))


@pytest.mark.parametrize("params, message", [
    ({"featurizer": "magic"}, "featurizer"),
    ({"hash_bits_char": 40}, "hash_bits_char"),
    ({"char_ngram_min": 6, "char_ngram_max": 5}, "char_ngram_min"),
    ({"word_ngram_max": 0}, "word_ngram_max"),
])
def test_invalid_params_are_rejected(params, message):
    with pytest.raises(ValueError, match=message):
        make_student("lexical", DIMS, **params)
