"""Active learning: which unlabelled articles are worth an oracle call.

Signals, all from the students' own outputs: disagreement between ensemble members (the spread of their
predictions), the width of conformal intervals, and an *expected error* learned from the labelled articles'
out-of-bag errors (:func:`learned_expected_error`: the errors of an article's nearest labelled neighbours in
an embedding space, averaged with a gradient-boosted regression of the error on the predicted scores, the
members' spread and the embedding; :class:`distillery.uncertainty.ErrorModel` of the members' mean score and
spread where too few articles are labelled for that). Strategies (:data:`STRATEGIES`):

- ``random``: a uniform draw (the baseline);
- ``uncertainty``: the most uncertain, plus a random ``explore_share``;
- ``diverse``: weighted k-means in an embedding space with one cluster per label to buy, each article weighted
  by its value per unit of oracle cost (expected error / relative cost ** ``cost_weight``), then the most
  valuable article of every cluster. Pure uncertainty keeps asking about one kind of outlier and skews the
  labelled sample; the clusters spread a batch over the pool's regions, the weights pull the centres towards
  where the student errs. With a *committee* (:func:`committee_expected_error`) the expected error is also
  weighted by how far a member of another family, a ridge on sentence-encoder embeddings, disagrees with the
  lexical ensemble: where a meaning-based and a vocabulary-based student differ, one of them is wrong.

The same functions choose articles in the label-efficiency benchmark (benchmarks/active_learning.py) and decide
the ``uncertain`` routing to ``oracle.requests`` in serving.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np

STRATEGIES = ("random", "uncertainty", "diverse")
EMBEDDING_DIMS = 64  # components of the lexical embedding the ``diverse`` strategy clusters in
KMEANS_ITERATIONS = 50  # a batch's clusters need not converge fully; this bounds selection time on big pools
# k-means weight = (value / mean value) ** FOCUS: 4 saved the most labels of 1, 2, 4 and 8 on the real labels
# (benchmarks/results/active_learning_notes.md)
FOCUS = 4.0
# expected error x (cross-family disagreement / its mean) ** COMMITTEE_WEIGHT: on the real labels 1 saved 31% of the
# labels, 0.5 29.5%, 1.5 and 2 31%, no committee 25% (benchmarks/results/active_learning_notes.md)
COMMITTEE_WEIGHT = 1.0
ERROR_NEIGHBOURS = 15  # labelled neighbours whose out-of-bag errors predict a pool article's error
MIN_ERROR_ROWS = 50  # out-of-bag rows needed before the learned error model replaces the binned ErrorModel


def ensemble_disagreement(member_predictions: np.ndarray) -> np.ndarray:
    """Mean over dimensions of the members' standard deviation: shape (k, n, d) -> (n,)."""
    preds = np.asarray(member_predictions, dtype=np.float64)
    if preds.ndim != 3 or preds.shape[0] < 2:
        raise ValueError("member_predictions must have shape (k >= 2, n, n_dims)")
    return preds.std(axis=0, ddof=1).mean(axis=1)


def interval_width(lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """Widest conformal interval over dimensions: (n, d) -> (n,)."""
    return (np.asarray(upper) - np.asarray(lower)).max(axis=1)


def oracle_cost(texts: Sequence[str], prompt_tokens: int = 8000, chars_per_token: float = 4.0) -> np.ndarray:
    """Estimated input tokens of one oracle call per article: the filter prompt plus the article (n,).

    The filter prompts are ~8K tokens (docs: DOMAIN.md), so a long article costs up to ~1.5x a short one; pass
    a filter's own prompt size where it is known."""
    return prompt_tokens + np.array([len(t or "") for t in texts], dtype=np.float64) / chars_per_token


def bootstrap_error_model(oob_predictions: np.ndarray, targets: np.ndarray):
    """An :class:`~distillery.uncertainty.ErrorModel` from a bootstrap ensemble's out-of-bag predictions.

    ``oob_predictions`` (k, n, d) holds each member's predictions of the labelled articles, NaN where the
    article was in that member's bootstrap sample. Rows seen out-of-bag by at least two members are the
    held-out set (features: mean raw score and the members' spread). None when fewer than 10 such rows."""
    from distillery.uncertainty import ErrorModel

    seen, raw, spread = _out_of_bag(oob_predictions, min_members=2)
    if seen.sum() < 10:
        return None
    return ErrorModel.fit(raw, raw, raw, raw, np.asarray(targets, dtype=np.float64)[seen], spread)


def _out_of_bag(oob_predictions: np.ndarray, min_members: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The labelled rows seen out-of-bag by at least ``min_members`` members (a mask), and those rows' mean
    prediction and members' spread, both (n_seen, d)."""
    oob = np.asarray(oob_predictions, dtype=np.float64)
    seen = (~np.isnan(oob[..., 0])).sum(axis=0) >= min_members
    rows = oob[:, seen]
    return seen, np.nanmean(rows, axis=0), np.nanstd(rows, axis=0)


def learned_expected_error(oob_predictions: np.ndarray, targets: np.ndarray, labelled_embeddings: np.ndarray,
                           pool_predictions: np.ndarray, pool_embeddings: np.ndarray,
                           seed: int = 0) -> np.ndarray | None:
    """Expected mean absolute error of each pool article's mean prediction (n_pool,), learned from the labelled
    articles' out-of-bag errors; None when fewer than :data:`MIN_ERROR_ROWS` labelled articles have one.

    Two predictors, each scaled to mean 1 and averaged: the mean out-of-bag error of the article's
    :data:`ERROR_NEIGHBOURS` nearest labelled articles in the embedding (students err by topic), and a
    gradient-boosted regression of the error on the mean predicted scores, the members' spread per dimension
    and the embedding. On the real sustainability labels their most-suspect 5% of the pool held 1.9-2.0 mean
    absolute error against 1.5-1.7 for the binned :class:`~distillery.uncertainty.ErrorModel`
    (benchmarks/results/active_learning_notes.md)."""
    seen, mean, spread = _out_of_bag(oob_predictions, min_members=1)
    if seen.sum() < MIN_ERROR_ROWS:
        return None
    error = np.abs(mean - np.asarray(targets, dtype=np.float64)[seen]).mean(axis=1)
    known = np.asarray(labelled_embeddings, dtype=np.float64)[seen]
    pool_embeddings = np.asarray(pool_embeddings, dtype=np.float64)
    pool = np.asarray(pool_predictions, dtype=np.float64)
    by_neighbours = _neighbour_error(error, known, pool_embeddings)
    by_booster = _boosted_error(error, np.hstack([mean, spread, known]),
                                np.hstack([pool.mean(axis=0), pool.std(axis=0), pool_embeddings]), seed)
    # rescaled to the labelled articles' mean error, so the value reads as an MAE (active-select prints it)
    return error.mean() * (by_neighbours / max(by_neighbours.mean(), 1e-12) + by_booster / by_booster.mean()) / 2


def _neighbour_error(error: np.ndarray, known: np.ndarray, pool_embeddings: np.ndarray) -> np.ndarray:
    """Mean error of each pool row's nearest labelled rows in the embedding."""
    from sklearn.neighbors import NearestNeighbors

    k = min(ERROR_NEIGHBOURS, len(known))
    _, nearest = NearestNeighbors(n_neighbors=k).fit(known).kneighbors(pool_embeddings)
    return error[nearest].mean(axis=1)


def _boosted_error(error: np.ndarray, labelled_features: np.ndarray, pool_features: np.ndarray,
                   seed: int) -> np.ndarray:
    """A gradient-boosted regression of the error on the labelled rows' features, applied to the pool's."""
    from sklearn.ensemble import HistGradientBoostingRegressor

    booster = HistGradientBoostingRegressor(max_iter=200, learning_rate=0.05, max_leaf_nodes=15,
                                            min_samples_leaf=20, random_state=seed)
    return np.maximum(booster.fit(labelled_features, error).predict(pool_features), 1e-3)


def encoder_member_predictions(labelled_embeddings: np.ndarray, targets: np.ndarray,
                               pool_embeddings: np.ndarray) -> np.ndarray:
    """The committee's member of another family: a ridge on sentence-encoder embeddings of the labelled articles
    (strength chosen by leave-one-out among the probe student's ridge candidates), its predictions of the pool
    (n_pool, d)."""
    from sklearn.linear_model import RidgeCV

    from distillery.students.probe import DEFAULTS as PROBE_DEFAULTS

    ridge = RidgeCV(alphas=PROBE_DEFAULTS["alphas"]).fit(np.asarray(labelled_embeddings, dtype=np.float64),
                                             np.asarray(targets, dtype=np.float64))
    return ridge.predict(np.asarray(pool_embeddings, dtype=np.float64))


def committee_expected_error(expected: np.ndarray, member_predictions: np.ndarray, encoder_predictions: np.ndarray,
                             weight: float = COMMITTEE_WEIGHT) -> np.ndarray:
    """``expected`` (n,) weighted by the disagreement between the lexical members' mean prediction (k, n, d) and
    the encoder member's (n, d), (disagreement / its mean) ** ``weight``; rescaled to ``expected``'s mean, so the
    value still reads as an MAE. The two families err on different articles (vocabulary vs meaning), so where
    they disagree at least one is wrong; a bootstrap ensemble of one family mostly agrees with itself there."""
    expected = np.asarray(expected, dtype=np.float64)
    lexical = np.asarray(member_predictions, dtype=np.float64).mean(axis=0)
    disagreement = np.abs(np.asarray(encoder_predictions, dtype=np.float64) - lexical).mean(axis=1)
    value = expected * (np.maximum(disagreement, 1e-6) / max(float(disagreement.mean()), 1e-6)) ** float(weight)
    return value * expected.mean() / max(float(value.mean()), 1e-12)


def diverse_expected_error(oob_predictions: np.ndarray, targets: np.ndarray, labelled_embeddings: np.ndarray,
                           pool_predictions: np.ndarray, pool_embeddings: np.ndarray, seed: int = 0,
                           encoder_predictions: np.ndarray | None = None) -> np.ndarray:
    """What ``diverse`` ranks the pool by (n_pool,): the learned expected error (the binned ErrorModel's while too
    few labelled articles have an out-of-bag error), weighted by the committee's disagreement when the encoder
    member's pool predictions are given."""
    expected = learned_expected_error(oob_predictions, targets, labelled_embeddings, pool_predictions,
                                      pool_embeddings, seed)
    if expected is None:
        expected = expected_error(pool_predictions, bootstrap_error_model(oob_predictions, targets))
    if encoder_predictions is not None:
        expected = committee_expected_error(expected, pool_predictions, encoder_predictions)
    return expected


def expected_error(member_predictions: np.ndarray, model) -> np.ndarray:
    """Expected mean absolute error of the members' mean prediction (n,), by ``model`` (an ErrorModel fitted
    by :func:`bootstrap_error_model`); the members' disagreement where there is no model yet."""
    preds = np.asarray(member_predictions, dtype=np.float64)
    if model is None:
        return ensemble_disagreement(preds)
    raw = preds.mean(axis=0)
    return model.expected_error(raw, raw, raw, preds.std(axis=0))


def lexical_embedding(texts: Sequence[str], dims: int = EMBEDDING_DIMS, seed: int = 0) -> np.ndarray:
    """A dense embedding of articles for clustering: word 1-2-gram TF-IDF reduced by truncated SVD (n, dims)."""
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer

    from distillery.articles import head_tail_chars

    docs = [head_tail_chars(t or "", 3000) for t in texts]
    tfidf = TfidfVectorizer(ngram_range=(1, 2), min_df=min(3, len(docs)), sublinear_tf=True, dtype=np.float32)
    X = tfidf.fit_transform(docs)
    dims = max(1, min(dims, X.shape[1] - 1, len(docs) - 1))
    return TruncatedSVD(dims, random_state=seed).fit_transform(X)


def diverse_pick(value: np.ndarray, embeddings: np.ndarray, k: int, seed: int = 0, focus: float = FOCUS) -> list[int]:
    """Positions of ``k`` rows: weighted k-means (weights ``value ** focus``) with ``k`` clusters, the most valuable
    row of each; clusters that come out empty are filled with the most valuable rows not yet chosen."""
    from sklearn.cluster import KMeans
    from sklearn.exceptions import ConvergenceWarning

    value = np.asarray(value, dtype=np.float64)
    weights = (np.maximum(value, 1e-12) / max(float(value.mean()), 1e-12)) ** float(focus)
    km = KMeans(k, n_init=1, random_state=seed, max_iter=KMEANS_ITERATIONS)
    with warnings.catch_warnings():  # duplicate articles give fewer distinct clusters: filled below
        warnings.simplefilter("ignore", ConvergenceWarning)
        labels = km.fit(np.asarray(embeddings, dtype=np.float64), sample_weight=weights).labels_
    chosen = []
    for cluster in range(k):
        members = np.flatnonzero(labels == cluster)
        if len(members):
            chosen.append(int(members[np.argmax(value[members])]))
    chosen = list(dict.fromkeys(chosen))
    if len(chosen) < k:
        rest = [int(i) for i in np.argsort(-value, kind="stable") if int(i) not in set(chosen)]
        chosen += rest[: k - len(chosen)]
    return chosen


def select(
    candidates: Sequence[int],
    k: int,
    strategy: str,
    uncertainty: np.ndarray | None = None,
    rng: np.random.Generator | None = None,
    explore_share: float = 0.2,
    embeddings: np.ndarray | None = None,
    cost: np.ndarray | None = None,
    cost_weight: float = 1.0,
    focus: float = FOCUS,
) -> list[int]:
    """Pick ``k`` of ``candidates``.

    ``uncertainty`` (aligned with ``candidates``: an expected error or the members' disagreement) ranks them for
    ``uncertainty`` and ``diverse``. ``uncertainty`` still draws a share ``explore_share`` at random, because
    pure uncertainty sampling keeps asking about the same kind of outlier. ``diverse`` also needs
    ``embeddings`` (one row per candidate) and divides by the relative oracle ``cost`` ** ``cost_weight``
    when ``cost`` is given; ``focus`` sharpens its k-means weights towards the most valuable articles.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    rng = rng or np.random.default_rng(0)
    candidates = list(candidates)
    k = min(k, len(candidates))
    if strategy == "random":
        return [candidates[i] for i in rng.choice(len(candidates), size=k, replace=False)]
    if uncertainty is None or len(uncertainty) != len(candidates):
        raise ValueError(f"the {strategy} strategy needs one uncertainty value per candidate")
    if strategy == "diverse":
        return [candidates[i] for i in _diverse(candidates, k, uncertainty, rng, embeddings, cost, cost_weight,
                                                                  focus)]
    n_explore = round(k * explore_share)
    order = np.argsort(-np.asarray(uncertainty), kind="stable")
    chosen = list(order[: k - n_explore])
    rest = np.setdiff1d(np.arange(len(candidates)), chosen)
    if n_explore and len(rest):
        chosen += list(rng.choice(rest, size=min(n_explore, len(rest)), replace=False))
    return [candidates[i] for i in chosen]


def _diverse(candidates, k, uncertainty, rng, embeddings, cost, cost_weight, focus) -> list[int]:
    if embeddings is None or len(embeddings) != len(candidates):
        raise ValueError("the diverse strategy needs one embedding row per candidate")
    value = np.asarray(uncertainty, dtype=np.float64)
    if cost is not None:
        cost = np.asarray(cost, dtype=np.float64)
        if len(cost) != len(candidates) or np.any(cost <= 0):
            raise ValueError("cost needs one positive value per candidate")
        value = value / (cost / cost.mean()) ** float(cost_weight)
    if k == 0:
        return []
    return diverse_pick(value, embeddings, k, seed=int(rng.integers(2**31)), focus=focus)


def bootstrap_predictions(texts: Sequence[str], targets: np.ndarray, pool_texts: Sequence[str], members: int = 4,
                          seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Fit ``members`` bootstrap ``lexical`` students (word n-grams: seconds on thousands of labels) on the
    labelled articles; return their pool predictions (k, n_pool, d) and out-of-bag predictions (k, n, d)."""
    from distillery.students import make_student

    texts, pool_texts = list(texts), list(pool_texts)
    y = np.asarray(targets, dtype=np.float64)
    rng = np.random.default_rng(seed)
    dims = [f"d{j}" for j in range(y.shape[1])]
    pool_preds, oob_preds = [], []
    for _ in range(members):
        pick = rng.integers(0, len(texts), size=len(texts))
        student = make_student("lexical", dims, char_ngram_max=0, max_chars=3000)
        student.fit([texts[i] for i in pick], y[pick])
        pool_preds.append(student.predict(pool_texts))
        oob = np.full(y.shape, np.nan)
        out = np.setdiff1d(np.arange(len(texts)), pick)
        if len(out):
            oob[out] = student.predict([texts[i] for i in out])
        oob_preds.append(oob)
    return np.stack(pool_preds), np.stack(oob_preds)


def plan_batch(texts: Sequence[str], targets: np.ndarray, pool_texts: Sequence[str], k: int,
               strategy: str = "diverse", members: int = 4, seed: int = 0, prompt_tokens: int = 8000,
               cost_weight: float = 1.0,
               encode: Callable[[list[str]], np.ndarray] | None = None) -> tuple[list[int], np.ndarray]:
    """The next ``k`` pool articles to send to the oracle, given the labelled ``texts``/``targets``: positions in
    ``pool_texts`` and every pool article's expected error (the value the strategies rank by).

    ``encode`` (texts -> sentence-encoder embeddings, for example a probe student's ``embed``) adds the
    committee's encoder member to ``diverse``'s expected error (:func:`committee_expected_error`)."""
    if len(texts) < 2:
        raise ValueError("active selection needs at least 2 labelled articles")
    pool_preds, oob = bootstrap_predictions(texts, targets, pool_texts, members, seed)
    # one embedding of labelled and pool articles: the learned error model looks up labelled neighbours in it
    everything = lexical_embedding([*texts, *pool_texts], seed=seed)
    labelled_emb, embeddings = everything[: len(texts)], everything[len(texts):]
    encoder_preds = None
    if encode is not None and strategy == "diverse":
        encoded = np.asarray(encode([*texts, *pool_texts]))
        encoder_preds = encoder_member_predictions(encoded[: len(texts)], targets, encoded[len(texts):])
    expected = diverse_expected_error(oob, targets, labelled_emb, pool_preds, embeddings, seed, encoder_preds)
    rng = np.random.default_rng(seed)
    cost = oracle_cost(pool_texts, prompt_tokens)
    chosen = select(range(len(pool_texts)), k, strategy, expected, rng, embeddings=embeddings, cost=cost,
                    cost_weight=cost_weight)
    return chosen, expected
