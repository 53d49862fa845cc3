"""Consensus/agreement maths, and the request bodies each provider receives (JSON mode, thinking off)."""

from __future__ import annotations

import pytest
from distillery_services.oracle_gateway.consensus import CONSENSUS_MODEL, agreement
from distillery_services.oracle_gateway.providers import (
    AnthropicProvider,
    GeminiProvider,
    OpenAIProvider,
    ProviderRequest,
)

from distillery.articles import Article
from distillery.labels import DimensionLabel, FilterRef, OracleLabel
from distillery.store import LabelStore
from distillery.testing.fake_provider import FakeLLMServer


def _put(store, article_id, model, scores):
    article = Article(id=article_id, title="t", text="x")
    store.put(article, OracleLabel(
        article_id=article_id, filter=FilterRef(name="f", version=1), prompt_hash="p",
        oracle_model=model, dimensions=[DimensionLabel(name=k, score=v) for k, v in scores.items()]))


def test_agreement_and_median_consensus(tmp_path):
    store = LabelStore.open(tmp_path / "s.sqlite")
    a = {"x1": (2, 4), "x2": (6, 8), "x3": (9, 1), "x4": (5, 5)}
    for i, (d1, d2) in a.items():
        _put(store, i, "A", {"d1": d1, "d2": d2})
        _put(store, i, "B", {"d1": d1 + 1, "d2": d2})
        _put(store, i, "C", {"d1": d1 + 3, "d2": d2 - 2})
    report = agreement(store, "f", 1, write_consensus=True)
    assert report.models == ["A", "B", "C"] and report.articles_with_two_or_more == 4
    ab = next(p for p in report.pairs if (p.a, p.b) == ("A", "B"))
    assert ab.mae_per_dim == {"d1": 1.0, "d2": 0.0} and ab.pearson_per_dim["d1"] == pytest.approx(1.0)
    assert ab.mean_shift_b_minus_a == pytest.approx(0.5)
    b_vs = next(p for p in report.vs_consensus if p.a == "B")
    assert b_vs.mae_mean == 0.0  # B is the median on every dimension
    consensus = {x.id: x.scores for x in store.iter_labelled("f", 1, CONSENSUS_MODEL)}
    assert consensus["x1"] == {"d1": 3.0, "d2": 4.0}
    assert "| A | B | 4 |" in report.markdown()
    store.close()


def test_request_bodies_per_provider(catalog):
    spec = catalog.get("uplifting")
    req = ProviderRequest(prompt="PROMPT", spec=spec, article=Article(id="a"), temperature=0.0,
                          max_output_tokens=500, json_schema={"type": "object"})
    with FakeLLMServer() as fake:
        openai = OpenAIProvider("o", "gpt", fake.url + "/v1", "k", 5.0)
        body = openai.body(req)
        assert body["response_format"] == {"type": "json_object"} and "reasoning_effort" not in body
        schema = OpenAIProvider("o", "gpt", fake.url, "k", 5.0, json_mode="json_schema").body(req)
        assert schema["response_format"]["json_schema"]["schema"] == {"type": "object"}
        anthropic = AnthropicProvider("a", "claude", fake.url, "k", 5.0).body(req)
        assert "thinking" not in anthropic and anthropic["temperature"] == 0.0 and anthropic["max_tokens"] == 500
        thinking = AnthropicProvider("a", "claude", fake.url, "k", 5.0, thinking_budget=2000).body(req)
        assert thinking["thinking"] == {"type": "enabled", "budget_tokens": 2000} and "temperature" not in thinking
        gemini = GeminiProvider("g", "gemini-2.5-flash", fake.url, "k", 5.0).body(req)
        assert gemini["generationConfig"]["thinkingConfig"] == {"thinkingBudget": 0}
        assert gemini["generationConfig"]["responseMimeType"] == "application/json"
        for p in (openai,):
            p.close()
