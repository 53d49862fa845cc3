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


def _two_blobs(n_per=40, seed=0):
    rng = np.random.default_rng(seed)
    emb = np.vstack([rng.normal(0, 0.1, (n_per, 2)), rng.normal(5, 0.1, (n_per, 2))])
    return emb


def test_diverse_spreads_a_batch_over_clusters_where_uncertainty_alone_does_not():
    emb = _two_blobs()
    unc = np.r_[np.linspace(1.0, 2.0, 40), np.linspace(0.1, 0.5, 40)]  # blob 0 is the more uncertain
    cands = list(range(1000, 1080))
    greedy = active.select(cands, 2, "uncertainty", unc, explore_share=0.0)
    assert all(c < 1040 for c in greedy)
    chosen = active.select(cands, 2, "diverse", unc, embeddings=emb)
    assert sorted(c >= 1040 for c in chosen) == [False, True]  # one per blob
    assert 1039 in chosen and 1079 in chosen  # the most uncertain article of each blob


def test_diverse_prefers_cheap_articles_when_cost_counts():
    emb = np.zeros((3, 2))  # one cluster: the single pick is the best value for money
    unc = np.array([1.0, 0.9, 0.5])
    cost = np.array([3.0, 1.0, 1.0])
    assert active.select([0, 1, 2], 1, "diverse", unc, embeddings=emb, cost=cost, cost_weight=0.0) == [0]
    assert active.select([0, 1, 2], 1, "diverse", unc, embeddings=emb, cost=cost, cost_weight=1.0) == [1]
    with pytest.raises(ValueError, match="embedding"):
        active.select([0, 1, 2], 1, "diverse", unc)
    with pytest.raises(ValueError, match="cost"):
        active.select([0, 1, 2], 1, "diverse", unc, embeddings=emb, cost=np.array([1.0, 0.0, 1.0]))


def test_diverse_returns_k_distinct_candidates_even_with_duplicate_points():
    emb = np.zeros((10, 3))
    emb[5:] = 1.0
    chosen = active.select(range(10), 6, "diverse", np.arange(10.0), embeddings=emb)
    assert len(chosen) == len(set(chosen)) == 6


def test_bootstrap_error_model_ranks_the_articles_the_members_get_wrong():
    rng = np.random.default_rng(3)
    n, d = 400, 2
    targets = rng.uniform(0, 10, (n, d))
    hard = targets[:, 0] > 7  # the members miss high scores by a lot and disagree there
    members = np.stack([targets + np.where(hard[:, None], rng.normal(-3, 2, (n, d)), rng.normal(0, 0.2, (n, d)))
                        for _ in range(4)])
    oob = members.copy()
    oob[rng.random(oob.shape[:2]) < 0.4] = np.nan  # in-bag rows have no out-of-bag prediction
    model = active.bootstrap_error_model(oob, targets)
    assert model is not None
    expected = active.expected_error(members, model)
    assert expected[hard].mean() > 3 * expected[~hard].mean()
    assert active.bootstrap_error_model(oob[:, :5], targets[:5]) is None  # too few held-out rows


def test_oracle_cost_grows_with_article_length_on_top_of_the_prompt():
    cost = active.oracle_cost(["", "x" * 4000], prompt_tokens=8000)
    assert cost.tolist() == [8000.0, 9000.0]


def test_lexical_embedding_puts_similar_articles_close():
    texts = ["solar panels cut emissions in the grid"] * 3 + ["football match ends in a draw tonight"] * 3
    emb = active.lexical_embedding(texts, dims=2)
    assert emb.shape == (6, 2)
    assert np.linalg.norm(emb[0] - emb[1]) < np.linalg.norm(emb[0] - emb[4])


def test_learned_expected_error_finds_the_topic_the_students_get_wrong():
    rng = np.random.default_rng(4)
    n, pool_n, d = 300, 200, 3
    labelled_emb, pool_emb = rng.normal(size=(n, 8)), rng.normal(size=(pool_n, 8))
    hard_topic = labelled_emb[:, 0] > 1.0  # one region of the embedding where the members miss by ~3 points
    targets = rng.uniform(0, 10, (n, d))
    oob = np.stack([targets + np.where(hard_topic[:, None], 3.0, 0.0) + rng.normal(0, 0.3, (n, d))
                    for _ in range(4)])
    oob[rng.random(oob.shape[:2]) < 0.4] = np.nan
    pool_preds = rng.uniform(0, 10, (4, pool_n, d))  # the predictions alone say nothing about the error
    expected = active.learned_expected_error(oob, targets, labelled_emb, pool_preds, pool_emb)
    in_topic = pool_emb[:, 0] > 1.0
    assert expected.shape == (pool_n,)
    assert expected[in_topic].mean() > 3 * expected[~in_topic].mean()
    assert active.learned_expected_error(oob[:, :20], targets[:20], labelled_emb[:20], pool_preds, pool_emb) is None


def test_plan_batch_picks_distinct_pool_articles_with_their_expected_error():
    topics = ["solar power grid storage battery", "football league match goal", "central bank interest rates"]
    texts = [f"{topics[i % 3]} report number {i} with details" for i in range(90)]
    targets = np.array([[8.0, 6.0] if i % 3 == 0 else [1.0, 2.0] for i in range(90)])
    pool = [f"{topics[i % 3]} update {i} and more" for i in range(40)]
    chosen, expected = active.plan_batch(texts, targets, pool, 10, seed=1)
    assert len(chosen) == len(set(chosen)) == 10
    assert all(0 <= i < len(pool) for i in chosen)
    assert expected.shape == (len(pool),) and np.all(expected >= 0)


def test_committee_weights_the_expected_error_where_the_encoder_member_disagrees():
    expected = np.ones(4)
    lexical = np.stack([np.full((4, 2), 5.0), np.full((4, 2), 5.0)])
    encoder = np.array([[5.0, 5.0], [5.0, 5.0], [5.5, 5.5], [9.0, 9.0]])  # far off on the last article
    value = active.committee_expected_error(expected, lexical, encoder)
    assert value.mean() == pytest.approx(expected.mean())  # still reads as an MAE
    assert value[3] > value[2] > value[0] == pytest.approx(value[1])
    assert np.allclose(active.committee_expected_error(expected, lexical, encoder, weight=0.0), expected)


def test_plan_batch_with_an_encoder_picks_what_only_the_encoder_recognises():
    """Pool articles say in new words what high-scoring labelled articles said: the lexical students cannot know
    (their vocabulary is unseen), the encoder member can (same embedding), so they disagree there and the
    committee spends the labels on them."""
    rng = np.random.default_rng(3)
    common = ["city council meets on tuesday", "weather stays mild this week", "local team wins the cup"]
    texts = [f"{common[i % 3]} item {i}" for i in range(60)] + [f"solar farm opens near the river {i}" for i in range(20)]
    targets = np.array([[1.0, 1.0]] * 60 + [[9.0, 9.0]] * 20)
    synonyms = [f"photovoltaic plant starts feeding power {i}" for i in range(15)]
    pool = [f"{common[i % 3]} note {i}" for i in range(45)] + synonyms

    def encode(batch):  # meaning: one axis for "renewable plant" whatever the words, noise elsewhere
        meaning = np.array([[1.0] if ("solar" in t or "photovoltaic" in t) else [0.0] for t in batch])
        return np.hstack([meaning, 0.05 * rng.normal(size=(len(batch), 3))])

    with_committee, value = active.plan_batch(texts, targets, pool, 8, seed=1, encode=encode)
    without, _ = active.plan_batch(texts, targets, pool, 8, seed=1)
    picked_synonyms = sum(i >= 45 for i in with_committee)
    assert picked_synonyms > sum(i >= 45 for i in without)
    assert picked_synonyms >= 6
    assert value[45:].mean() > 2 * value[:45].mean()
