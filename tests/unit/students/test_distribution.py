"""Distribution heads: a predicted score distribution per dimension, served as its interpolated median."""

from __future__ import annotations

import numpy as np

from distillery.students.distribution import DistributionHeads, fit_dimension_head, interpolated_median


def test_the_interpolated_median_spreads_each_score_over_its_class_and_rounds_back_to_it():
    classes = np.array([0.0, 1.0, 3.0])
    proba = np.array([
        [0.5, 0.5, 0.0],  # the 0.5 quantile is the top of class 0 (spans -0.49..0.49)
        [0.2, 0.6, 0.2],  # inside class 1 (spans 0.51..1.49, not halfway to 3): 0.51 + 0.98 * (0.3 / 0.6)
        [0.0, 0.0, 1.0],  # all on 3 (spans 2.51..3.49): the middle
        [0.45, 0.0, 0.55],  # just past the gap 1 -> 3: near 3, never on 2 (no probability there)
    ])
    np.testing.assert_allclose(interpolated_median(proba, classes), [0.49, 1.0, 3.0, 2.51 + 0.98 / 11], atol=1e-12)
    assert interpolated_median(np.ones((2, 1)), np.array([4.0])).tolist() == [4.0, 4.0]


def _two_humps(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Scores near 1 or near 8; the feature says which hump only with 80% reliability."""
    rng = np.random.default_rng(seed)
    high = rng.random(n) < 0.4
    signal = np.where(rng.random(n) < 0.8, high, ~high).astype(float)
    X = np.c_[signal + rng.normal(0, 0.3, n), rng.normal(0, 1, n)]
    y = np.where(high, rng.choice([7, 8, 8, 9], n), rng.choice([0, 1, 1, 2], n)).astype(float)
    return X, y


def test_on_two_humped_scores_the_median_head_beats_a_regression_between_the_humps():
    X, y = _two_humps(3000, 1)
    Xt, yt = _two_humps(2000, 2)
    mean, scale = DistributionHeads.standardiser(X)
    heads = DistributionHeads(mean, scale, [fit_dimension_head((X - mean) / scale, y, C=1.0)])
    median = heads.predict(Xt)[:, 0]
    slope, intercept = np.polyfit(X[:, 0], y, 1)
    regression = slope * Xt[:, 0] + intercept
    assert np.abs(np.rint(median) - yt).mean() < 0.9 * np.abs(regression - yt).mean()
    assert set(np.rint(median)) <= {0.0, 1.0, 2.0, 7.0, 8.0, 9.0}  # never between the humps


def test_heads_round_trip_and_a_constant_dimension_is_its_value():
    X = np.random.default_rng(0).normal(size=(50, 3))
    y = np.c_[np.repeat([2.0, 5.0], 25), np.full(50, 3.0)]
    mean, scale = DistributionHeads.standardiser(X)
    heads = DistributionHeads(mean, scale, [fit_dimension_head((X - mean) / scale, y[:, d], 1.0) for d in range(2)])
    again = DistributionHeads.from_arrays(heads.arrays(), 2)
    np.testing.assert_allclose(again.predict(X), heads.predict(X))
    np.testing.assert_allclose(heads.predict(X)[:, 1], 3.0)
    assert set(np.rint(heads.predict(X)[:, 0])) <= {2.0, 5.0}


def test_each_median_comes_with_its_expected_absolute_error():
    X = np.random.default_rng(1).normal(size=(400, 2))
    y = np.where(X[:, 0] > 0, 7.0, 1.0)[:, None]  # the first feature decides; the heads become sure of it
    heads = DistributionHeads.fit(X, y, 1.0)
    probe = np.array([[3.0, 0.0], [0.0, 0.0], [-3.0, 0.0]])  # sure high, on the fence, sure low
    median, deviation = heads.predict_with_deviation(probe)
    np.testing.assert_allclose(median, heads.predict(probe))
    assert np.rint(median[[0, 2], 0]).tolist() == [7.0, 1.0]
    assert deviation[1, 0] > 2.0  # 50/50 between 1 and 7: about 3
    assert max(deviation[0, 0], deviation[2, 0]) < 0.5
