"""Isotonic calibration and split-conformal intervals on synthetic data with known noise."""

from __future__ import annotations

import numpy as np
import pytest

from distillery.calibration import Calibration, conformal_quantile, coverage, uncertain


def _sample(n, rng):
    truth = rng.uniform(0, 10, (n, 2))
    # dimension 0: a biased, compressed predictor; dimension 1: unbiased, noise sd 1
    raw = np.stack([0.5 * truth[:, 0] + 1.0 + rng.normal(0, 0.5, n), truth[:, 1] + rng.normal(0, 1.0, n)], axis=1)
    return raw, truth


def test_isotonic_fixes_bias_and_conformal_covers_on_fresh_data():
    rng = np.random.default_rng(0)
    val_raw, val_y = _sample(2000, rng)
    test_raw, test_y = _sample(4000, rng)
    cal = Calibration.fit(val_raw, val_y, ["a", "b"], coverage=0.9)
    calibrated, lower, upper = cal.apply(test_raw)
    raw_mae = np.abs(np.clip(test_raw, 0, 10) - test_y).mean(axis=0)
    cal_mae = np.abs(calibrated - test_y).mean(axis=0)
    assert cal_mae[0] < 0.6 * raw_mae[0]  # the compressed dimension is fixed
    cov = coverage(test_y, lower, upper)
    assert np.all((cov > 0.87) & (cov < 0.93)), cov
    # with noise sd 1, the 90% half-width of dimension b is near 1.645
    assert 1.3 < cal.dims[1].global_q < 2.0
    assert np.all((lower >= 0) & (upper <= 10) & (lower <= calibrated) & (calibrated <= upper))


def test_json_round_trip_gives_identical_outputs(tmp_path):
    rng = np.random.default_rng(1)
    raw, y = _sample(500, rng)
    cal = Calibration.fit(raw, y, ["a", "b"])
    cal.save(tmp_path / "c.json")
    again = Calibration.load(tmp_path / "c.json")
    for x, z in zip(cal.apply(raw), again.apply(raw)):
        np.testing.assert_array_equal(x, z)
    assert again.dimensions == ["a", "b"] and again.coverage == 0.9


def test_conformal_quantile_finite_sample_rank():
    r = np.arange(1, 10, dtype=float)  # n = 9: rank ceil(10 * 0.9) = 9
    assert conformal_quantile(r, 0.9) == 9.0
    assert conformal_quantile(r[:5], 0.9) == 10.0  # too few points: the whole range


def test_bad_input_and_uncertain_flag():
    with pytest.raises(ValueError, match="must both be"):
        Calibration.fit(np.zeros((5, 2)), np.zeros((5, 3)), ["a", "b"])
    lower = np.array([[1.0, 2.0], [0.0, 0.0]])
    upper = np.array([[2.0, 3.0], [5.0, 1.0]])
    assert uncertain(lower, upper, max_width=4.0).tolist() == [False, True]
    spread = np.array([[0.1, 2.0], [0.0, 0.0]])
    assert uncertain(lower, upper, 4.0, spread, 1.0).tolist() == [True, True]
    ident = Calibration.identity(["a"], half_width=2.0)
    c, lo, _ = ident.apply(np.array([[11.0], [5.0]]))
    assert c.ravel().tolist() == [10.0, 5.0] and lo.ravel().tolist() == [8.0, 3.0]
