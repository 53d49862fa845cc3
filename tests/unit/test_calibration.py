"""Isotonic calibration and split-conformal intervals on synthetic data with known noise."""

from __future__ import annotations

import numpy as np
import pytest

from distillery.calibration import (
    Calibration,
    choose_map,
    conformal_quantile,
    coverage,
    isotonic_median,
    uncertain,
)


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


def _skewed(n, rng):
    """Oracle-like data: whole-number scores, most of them low; a continuous, noisy, mean-trained predictor."""
    truth = np.clip(np.round(rng.gamma(1.5, 1.5, n)), 0, 10)
    raw = truth + rng.normal(0, 1.2, n)
    return raw.reshape(-1, 1), truth.reshape(-1, 1)


def test_median_map_beats_the_mean_map_on_mae_for_skewed_whole_number_scores():
    rng = np.random.default_rng(3)
    val_raw, val_y = _skewed(1500, rng)
    test_raw, test_y = _skewed(4000, rng)
    by_method = {m: Calibration.fit(val_raw, val_y, ["a"], method=m) for m in ("mean", "median", "auto")}
    mae = {m: float(np.abs(c.apply(test_raw)[0] - test_y).mean()) for m, c in by_method.items()}
    assert mae["median"] < 0.97 * mae["mean"], mae
    assert by_method["auto"].info["maps"] == ["median"] and mae["auto"] == mae["median"]
    # intervals stay near the target coverage (whole-number residuals would over-cover) and hold the point
    calibrated, lower, upper = by_method["median"].apply(test_raw)
    assert 0.87 < coverage(test_y, lower, upper)[0] < 0.93
    assert np.all((lower <= calibrated) & (calibrated <= upper))


def test_isotonic_median_is_monotone_and_the_l1_solution_on_small_cases():
    x, y = isotonic_median(np.array([0, 1, 1, 2, 3.0]), np.array([5, 0, 1, 2, 2.0]))
    assert (x, y) == ([0.0, 1.0, 2.0, 3.0], [1.0, 1.0, 2.0, 2.0])  # tied x=1 is one block; 5 pooled with it
    rng = np.random.default_rng(4)
    raw, t = rng.normal(0, 1, 300), rng.integers(0, 10, 300).astype(float)
    x, y = isotonic_median(raw, t)
    assert np.all(np.diff(x) >= 0) and np.all(np.diff(y) >= 0)


def test_auto_keeps_a_predictor_that_is_already_right_and_old_documents_load():
    rng = np.random.default_rng(5)
    truth = rng.integers(0, 11, 800).astype(float)
    assert choose_map(truth, truth) == "median"  # a perfect predictor: every map is exact; ties go to median
    noisy = truth + rng.normal(0, 0.1, 800)
    assert choose_map(noisy, truth) in {"median", "identity"}
    with pytest.raises(ValueError, match="calibration method must be one of"):
        Calibration.fit(noisy.reshape(-1, 1), truth.reshape(-1, 1), ["a"], method="platt")
    fitted = Calibration.fit(noisy.reshape(-1, 1), truth.reshape(-1, 1), ["a"], method="median")
    doc = fitted.to_dict()
    for d in doc["dimensions"]:  # a calibration saved before the interval centre map existed
        d.pop("center_x"), d.pop("center_y")
    old_cal, old_lower, old_upper = Calibration.from_dict(doc).apply(noisy.reshape(-1, 1))
    np.testing.assert_array_equal(old_cal, fitted.apply(noisy.reshape(-1, 1))[0])
    assert np.all((old_lower <= old_cal) & (old_cal <= old_upper))


def _interpolated_medians(n, rng):
    """A distribution student's raw output: whole-score medians + a continuous position inside the class,
    right about the median 70% of the time (else one off)."""
    truth = rng.choice([0, 1, 2, 3, 6, 7], n, p=[0.1, 0.25, 0.2, 0.25, 0.1, 0.1]).astype(float)
    median = np.clip(truth + rng.choice([-1.0, 0.0, 1.0], n, p=[0.15, 0.7, 0.15]), 0, 10)
    return (median + rng.uniform(-0.49, 0.49, n)).reshape(-1, 1), truth.reshape(-1, 1)


def test_whole_map_rounds_a_distribution_median_and_centres_intervals_on_the_raw_value():
    rng = np.random.default_rng(7)
    val_raw, val_y = _interpolated_medians(1500, rng)
    test_raw, test_y = _interpolated_medians(4000, rng)
    whole = Calibration.fit(val_raw, val_y, ["a"], method="whole")
    calibrated, lower, upper = whole.apply(test_raw)
    np.testing.assert_array_equal(calibrated, np.rint(test_raw))  # the distribution's own median
    identity = Calibration.fit(val_raw, val_y, ["a"], method="identity").apply(test_raw)[0]
    assert np.abs(calibrated - test_y).mean() < np.abs(identity - test_y).mean() - 0.1
    # centred on the continuous raw value, the 90% intervals are not stuck on whole-number residuals
    assert 0.87 < coverage(test_y, lower, upper)[0] < 0.93
    assert np.all((lower <= calibrated) & (calibrated <= upper))
    again = Calibration.from_json(whole.to_json())
    np.testing.assert_array_equal(again.apply(test_raw)[0], calibrated)


def test_auto_offers_the_whole_map_only_when_the_student_does():
    raw, y = _interpolated_medians(100, np.random.default_rng(1))
    offered = ("median", "mean", "identity", "whole")
    assert choose_map(raw[:, 0], y[:, 0], maps=offered) == "whole"  # 100 points: a learnt step map is noisier
    assert choose_map(raw[:, 0], y[:, 0]) != "whole"
    assert Calibration.fit(raw, y, ["a"], maps=offered).info["maps"] == ["whole"]
    with pytest.raises(ValueError, match="calibration maps must be"):
        Calibration.fit(raw, y, ["a"], maps=("round",))
