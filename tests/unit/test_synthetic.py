"""The synthetic corpus: deterministic, varied, and its text really carries the latent scores."""

from __future__ import annotations

import json

import numpy as np
import pytest

from distillery import synthetic
from distillery.filters import FilterCatalog


@pytest.fixture(scope="module")
def spec(filters_dir):
    return FilterCatalog.load(filters_dir, ["uplifting"]).get("uplifting")


def test_deterministic_by_seed(spec):
    a = list(synthetic.generate(spec, 30, seed=1))
    b = list(synthetic.generate(spec, 30, seed=1))
    c = list(synthetic.generate(spec, 30, seed=2))
    assert a == b
    assert [r["text"] for r in a] != [r["text"] for r in c]


def test_records_are_marked_synthetic_with_scores_for_every_dimension(spec):
    for record in synthetic.generate(spec, 50, seed=3):
        meta = record["metadata"]
        assert meta[synthetic.SYNTHETIC] == "true" and meta[synthetic.SYNTHETIC_FILTER] == spec.ref
        scores = json.loads(meta[synthetic.SYNTHETIC_SCORES])
        assert set(scores) == set(spec.dimension_names)
        assert all(0 <= s <= 10 and s * 2 == int(s * 2) for s in scores.values())
        assert len(record["text"]) >= 300 and record["title"]


def test_varied_texts_and_an_off_topic_share(spec):
    records = list(synthetic.generate(spec, 400, seed=4, off_topic_share=0.2))
    assert len({r["text"] for r in records}) == len(records)
    off = [r for r in records if r["metadata"]["off_topic"] == "true"]
    assert 0.12 < len(off) / len(records) < 0.28
    assert all(max(synthetic.scores_of(r).values()) <= 2 for r in off)


def test_text_carries_the_scores_a_simple_model_can_learn(spec):
    """A bag-of-words ridge on 600 articles must beat the mean predictor clearly on held-out ones."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import Ridge

    records = list(synthetic.generate(spec, 800, seed=5, off_topic_share=0.1))
    y = np.array([[synthetic.scores_of(r)[d] for d in spec.dimension_names] for r in records])
    texts = [r["title"] + " " + r["text"] for r in records]
    vec = TfidfVectorizer(ngram_range=(1, 2), min_df=2)
    x = vec.fit_transform(texts[:600])
    model = Ridge(alpha=1.0).fit(x, y[:600])
    pred = model.predict(vec.transform(texts[600:]))
    mae = np.abs(pred - y[600:]).mean()
    baseline = np.abs(y[:600].mean(axis=0) - y[600:]).mean()
    assert mae < 0.75 * baseline


def test_bad_arguments(spec):
    with pytest.raises(ValueError):
        list(synthetic.generate(spec, -1))
    with pytest.raises(ValueError):
        list(synthetic.generate(spec, 1, off_topic_share=2))
