"""The transfer student: a related filter's fitted student warm-starts a new filter's student."""

from __future__ import annotations

import numpy as np
import pytest

from distillery.students import load_student, make_student
from distillery.testing.labelled import generate

SOURCE_DIMS = ["climate", "evidence", "community", "profit"]
TARGET_DIMS = ["green_evidence", "local_money"]


def corpus(n: int, seed: int):
    """One stream of articles: the source filter's labels, and a new filter whose dimensions are mixtures of
    the source's (as related filters' are), labelled with noise."""
    records = generate(SOURCE_DIMS, n, seed=seed, noise=0.3)
    texts = [f"{r['title']}\n\n{r['text']}" for r in records]
    source_y = np.array([[r["dimension_scores"][d] for d in SOURCE_DIMS] for r in records])
    rng = np.random.default_rng(seed + 1)
    target_y = np.clip(np.stack([0.5 * source_y[:, 0] + 0.5 * source_y[:, 1],
                                 0.6 * source_y[:, 2] + 0.4 * source_y[:, 3]], axis=1)
                       + rng.normal(0, 0.3, (n, 2)), 0, 10)
    return texts, source_y, target_y


@pytest.fixture(scope="module")
def source():
    texts, source_y, _ = corpus(600, seed=1)
    return make_student("lexical", SOURCE_DIMS).fit(texts, source_y)


@pytest.mark.parametrize(("mode", "meta"), [("prior", "ridge"), ("features", "ridge"), ("features", "distribution")])
def test_transfer_beats_the_same_student_without_it_on_few_labels(source, mode, meta):
    train_x, _, train_y = corpus(40, seed=2)
    test_x, _, test_y = corpus(200, seed=3)
    plain = make_student("lexical", TARGET_DIMS).fit(train_x, train_y)
    transfer = make_student("transfer", TARGET_DIMS, mode=mode, meta=meta, folds=3).set_sources([source], ["src/v1"])
    transfer.fit(train_x, train_y)
    plain_mae = np.abs(np.clip(plain.predict(test_x), 0, 10) - test_y).mean()
    transfer_mae = np.abs(np.clip(transfer.predict(test_x), 0, 10) - test_y).mean()
    assert transfer_mae < 0.85 * plain_mae


@pytest.mark.parametrize("mode", ["prior", "features"])
def test_saved_transfer_student_carries_its_sources(source, tmp_path, mode):
    train_x, _, train_y = corpus(40, seed=4)
    student = make_student("transfer", TARGET_DIMS, mode=mode, folds=3).set_sources([source], ["src/v1"])
    student.fit(train_x, train_y)
    assert ("whole" in student.calibration_maps) == (mode == "features")  # distribution heads: a median
    student.save(tmp_path / "model")
    loaded = load_student(tmp_path / "model")
    assert loaded.kind == "transfer" and loaded.params["sources"] == ["src/v1"]
    probe = train_x[:5]
    np.testing.assert_allclose(loaded.predict(probe), student.predict(probe), rtol=1e-6, atol=1e-6)
    assert loaded.predict([]).shape == (0, 2)


def test_transfer_student_errors_say_what_to_fix(source):
    with pytest.raises(ValueError, match="mode must be one of prior, features"):
        make_student("transfer", TARGET_DIMS, mode="magic")
    with pytest.raises(ValueError, match="meta must be one of distribution, ridge"):
        make_student("transfer", TARGET_DIMS, meta="forest")
    with pytest.raises(ValueError, match="base cannot be 'transfer'"):
        make_student("transfer", TARGET_DIMS, base_kind="transfer")
    with pytest.raises(ValueError, match="unknown transfer student parameter"):
        make_student("transfer", TARGET_DIMS, nonsense=1)
    with pytest.raises(RuntimeError, match="set_sources"):
        make_student("transfer", TARGET_DIMS).fit(["a text"] * 3, np.zeros((3, 2)))
    with pytest.raises(RuntimeError, match="not fitted"):
        make_student("transfer", TARGET_DIMS).set_sources([source]).predict(["a text"])
