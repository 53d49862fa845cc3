"""Active learning: which unlabelled articles are worth an oracle call.

Two signals, both from the students' own outputs: disagreement between ensemble members (the spread
of their predictions) and the width of conformal intervals. The same functions choose articles in the
label-efficiency benchmark and decide the ``uncertain`` routing to ``oracle.requests`` in serving.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

STRATEGIES = ("random", "uncertainty")


def ensemble_disagreement(member_predictions: np.ndarray) -> np.ndarray:
    """Mean over dimensions of the members' standard deviation: shape (k, n, d) -> (n,)."""
    preds = np.asarray(member_predictions, dtype=np.float64)
    if preds.ndim != 3 or preds.shape[0] < 2:
        raise ValueError("member_predictions must have shape (k >= 2, n, n_dims)")
    return preds.std(axis=0, ddof=1).mean(axis=1)


def interval_width(lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """Widest conformal interval over dimensions: (n, d) -> (n,)."""
    return (np.asarray(upper) - np.asarray(lower)).max(axis=1)


def select(
    candidates: Sequence[int],
    k: int,
    strategy: str,
    uncertainty: np.ndarray | None = None,
    rng: np.random.Generator | None = None,
    explore_share: float = 0.2,
) -> list[int]:
    """Pick ``k`` of ``candidates``.

    ``uncertainty`` (aligned with ``candidates``) ranks them for the ``uncertainty`` strategy; a share
    ``explore_share`` is still drawn at random, because pure uncertainty sampling keeps asking about the
    same kind of outlier and under-samples the bulk of the distribution.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    rng = rng or np.random.default_rng(0)
    candidates = list(candidates)
    k = min(k, len(candidates))
    if strategy == "random":
        return [candidates[i] for i in rng.choice(len(candidates), size=k, replace=False)]
    if uncertainty is None or len(uncertainty) != len(candidates):
        raise ValueError("the uncertainty strategy needs one uncertainty value per candidate")
    n_explore = round(k * explore_share)
    order = np.argsort(-np.asarray(uncertainty), kind="stable")
    chosen = list(order[: k - n_explore])
    rest = np.setdiff1d(np.arange(len(candidates)), chosen)
    if n_explore and len(rest):
        chosen += list(rng.choice(rest, size=min(n_explore, len(rest)), replace=False))
    return [candidates[i] for i in chosen]
