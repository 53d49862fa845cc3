"""The `uncertain` flag: an error model fitted on held-out predictions flags a target share of articles, and the
flagged ones are the ones with the large errors."""

from __future__ import annotations

import numpy as np
import pytest

from distillery.calibration import Calibration
from distillery.uncertainty import ErrorModel, flag, flagged_report


def heteroscedastic(n: int, seed: int, dims: int = 3):
    """Raw predictions whose errors are large in the middle of the scale and small at its ends."""
    rng = np.random.default_rng(seed)
    raw = np.clip(rng.uniform(0, 10, (n, 1)) + rng.normal(0, 0.5, (n, dims)), 0, 10)  # dimensions move together
    noise = 0.2 + 1.6 * np.exp(-((raw - 5.0) ** 2) / 4.0)  # ~0.2 at the ends, ~1.8 mid-scale
    targets = np.clip(raw + rng.normal(0, 1, (n, dims)) * noise, 0, 10)
    return raw, targets


def fitted(n: int = 1500, seed: int = 0):
    raw, y = heteroscedastic(n, seed)
    dims = [f"d{j}" for j in range(raw.shape[1])]
    calibration = Calibration.fit(raw, y, dims)
    calibration.fit_error_model(raw, y)
    return calibration


@pytest.mark.parametrize("share", [0.05, 0.1, 0.25])
def test_the_flag_fires_on_the_target_share_of_fresh_articles(share):
    calibration = fitted()
    raw, _y = heteroscedastic(4000, seed=1)
    _calibrated, lower, upper = calibration.apply(raw)
    flags = flag(calibration.expected_error(raw, lower, upper), calibration.error_model, share, None)
    assert abs(flags.mean() - share) < 0.03


def test_flagged_articles_have_at_least_twice_the_error_of_the_rest():
    calibration = fitted()
    raw, y = heteroscedastic(4000, seed=2)
    calibrated, lower, upper = calibration.apply(raw)
    flags = flag(calibration.expected_error(raw, lower, upper), calibration.error_model, 0.1, None)
    report = flagged_report(y, calibrated, flags)
    assert report["mae_ratio"] >= 2.0
    assert report["mae_flagged"] > report["mae_unflagged"]
    # a flag by random draw has no such worth: the ratio comes from the ranking
    random_flags = np.random.default_rng(0).random(len(raw)) < 0.1
    assert flagged_report(y, calibrated, random_flags)["mae_ratio"] < 1.3


def test_an_error_threshold_overrides_the_share_and_none_means_no_error_model_rule():
    model = fitted().error_model
    expected = np.array([0.1, 0.5, 1.0, 2.0])
    assert flag(expected, model, 0.1, 0.8).tolist() == [False, False, True, True]
    assert flag(expected, model, None, None) is None
    # share -> threshold is monotone and the rank of the threshold is the complement of the share
    assert model.threshold(0.05) >= model.threshold(0.1) >= model.threshold(0.5)
    assert model.rank(np.array([model.threshold(0.1)]))[0] == pytest.approx(0.9, abs=0.01)
    with pytest.raises(ValueError, match="share"):
        model.threshold(1.5)


def test_member_spread_is_used_when_the_student_has_members():
    rng = np.random.default_rng(3)
    raw = rng.uniform(0, 10, (1200, 2))
    spread = rng.uniform(0, 2, (1200, 2))  # the members disagree where the errors are large
    y = np.clip(raw + rng.normal(0, 1, raw.shape) * spread, 0, 10)
    calibration = Calibration.fit(raw, y, ["a", "b"])
    model = calibration.fit_error_model(raw, y, spread)
    assert model.uses_spread
    _, lower, upper = calibration.apply(raw)
    calm = calibration.expected_error(raw, lower, upper, np.zeros_like(spread))
    torn = calibration.expected_error(raw, lower, upper, np.full_like(spread, 2.0))
    assert (torn > calm).all()


def test_the_error_model_travels_with_the_calibration_json():
    calibration = fitted(n=400)
    loaded = Calibration.from_json(calibration.to_json())
    raw, _ = heteroscedastic(50, seed=5)
    _, lower, upper = calibration.apply(raw)
    assert np.allclose(loaded.expected_error(raw, lower, upper), calibration.expected_error(raw, lower, upper))
    assert loaded.error_model.threshold(0.1) == pytest.approx(calibration.error_model.threshold(0.1))
    # calibrations written before the error model existed still load, without one
    document = calibration.to_dict()
    del document["error_model"]
    old = Calibration.from_dict(document)
    assert old.error_model is None and old.expected_error(raw, lower, upper) is None
    with pytest.raises(ValueError, match="error model"):
        ErrorModel.from_dict({"schema": 1, "no_such_field": 1})


def test_fitting_needs_matching_shapes():
    raw, y = heteroscedastic(30, seed=6)
    with pytest.raises(ValueError, match="differ"):
        ErrorModel.fit(raw, raw[:, :2], raw, raw, y)
