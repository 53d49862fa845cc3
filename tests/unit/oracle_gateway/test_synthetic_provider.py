"""The synthetic oracle: latent scores + seeded noise for synthetic articles, keyword heuristic otherwise."""

from __future__ import annotations

import json

from distillery_services.oracle_gateway.parsing import parse_response
from distillery_services.oracle_gateway.providers import ProviderRequest, SyntheticProvider
from distillery_services.oracle_gateway.providers.synthetic import SYNTHETIC_MODEL, keywords

from distillery import synthetic
from distillery.articles import Article
from distillery.filters.prompt import render_prompt


def _request(spec, article):
    return ProviderRequest(prompt=render_prompt(spec, article.title, article.text), spec=spec, article=article)


def test_synthetic_articles_get_latent_scores_with_deterministic_noise(catalog):
    spec = catalog.get("uplifting")
    records = list(synthetic.generate(spec, 20, seed=3))
    provider = SyntheticProvider(noise_sigma=0.5)
    diffs = []
    for record in records:
        article = Article.from_record(record)
        response = provider.complete(_request(spec, article))
        assert response.model == SYNTHETIC_MODEL and response.input_tokens == 0
        parsed = parse_response(spec, response.text)
        again = parse_response(spec, provider.complete(_request(spec, article)).text)
        assert parsed.scores == again.scores  # seeded by the article id
        latent = json.loads(record["metadata"]["synthetic_scores"])
        for dim, score in parsed.scores.items():
            assert 0 <= score <= 10 and score * 2 == int(score * 2)
            diffs.append(abs(score - latent[dim]))
            assert parsed.evidence[dim] == "No evidence in article" or parsed.evidence[dim][:20] in article.text
    assert 0 < sum(diffs) / len(diffs) < 1.0
    exact = SyntheticProvider(noise_sigma=0)
    article = Article.from_record(records[0])
    latent = json.loads(records[0]["metadata"]["synthetic_scores"])
    assert parse_response(spec, exact.complete(_request(spec, article)).text).scores == latent


def test_keyword_heuristic_for_real_articles(catalog):
    spec = catalog.get("uplifting")
    dim = spec.dimensions[0]
    words = sorted(keywords(dim))[:4]
    provider = SyntheticProvider(noise_sigma=0.5)
    rich = Article(id="r1", title="News", text="First sentence. " + f"This is about {' '.join(words)}.")
    empty = Article(id="r2", title="Match report", text="The team won the match on Sunday.")
    s_rich = parse_response(spec, provider.complete(_request(spec, rich)).text)
    s_empty = parse_response(spec, provider.complete(_request(spec, empty)).text)
    assert s_rich.scores[dim.name] >= 2 * len(words) - 0.01 or s_rich.scores[dim.name] == 10
    assert words[0] in s_rich.evidence[dim.name]
    assert s_empty.scores[dim.name] <= s_rich.scores[dim.name]
