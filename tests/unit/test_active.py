from __future__ import annotations

import numpy as np
import pytest

from distillery import active


def test_disagreement_is_zero_when_members_agree_and_grows_with_spread():
    same = np.ones((3, 4, 2))
    assert np.allclose(active.ensemble_disagreement(same), 0)
    spread = np.stack([np.zeros((4, 2)), np.full((4, 2), 2.0)])
    spread[:, 0] *= 3
    d = active.ensemble_disagreement(spread)
    assert d[0] > d[1] > 0


def test_uncertainty_selection_takes_the_most_uncertain_plus_some_exploration():
    cands = list(range(100, 200))
    unc = np.arange(100, dtype=float)
    chosen = active.select(cands, 10, "uncertainty", unc, np.random.default_rng(1), explore_share=0.2)
    assert len(chosen) == len(set(chosen)) == 10
    assert set(range(192, 200)) <= set(chosen)  # the 8 most uncertain
    assert active.select(cands, 10, "uncertainty", unc, explore_share=0.0) == list(range(199, 189, -1))


def test_random_selection_and_errors():
    chosen = active.select(range(50), 60, "random", rng=np.random.default_rng(2))
    assert sorted(chosen) == list(range(50))
    with pytest.raises(ValueError, match="strategy"):
        active.select(range(5), 2, "greedy")
    with pytest.raises(ValueError, match="uncertainty value"):
        active.select(range(5), 2, "uncertainty", np.ones(3))
    with pytest.raises(ValueError):
        active.ensemble_disagreement(np.ones((1, 2, 2)))
