"""The edges' translation between the generated messages and the domain types loses nothing."""

from __future__ import annotations

from distillery import messages
from distillery.articles import Article
from distillery.labels import DimensionLabel, FilterRef, LabelReason, LabelRequest, OracleLabel, Usage
from distillery.v1 import oracle_pb2


def test_label_reasons_are_the_contract_enum():
    assert {r.wire_name: int(r) for r in LabelReason} == dict(oracle_pb2.LabelReason.items())
    assert LabelReason.of(99) is LabelReason.UNSPECIFIED  # a newer contract's reason is not an error
    assert LabelReason.from_wire_name("AUDIT") is LabelReason.UNSPECIFIED


def test_label_request_round_trip():
    article = Article(id="a1", title="T", text="body", url="https://x/1", source="s", source_type="news",
                      language="en", published_at="2026-01-01", metadata={"k": "v"})
    request = LabelRequest(article=article, filter=FilterRef("uplifting", 2), reason=LabelReason.AUDIT,
                           oracle="fake", job_id="job-1")
    message = messages.label_request_message(request)
    assert message.reason == oracle_pb2.LABEL_REASON_AUDIT and message.article.metadata["k"] == "v"
    assert messages.label_request_of(oracle_pb2.LabelRequest.FromString(message.SerializeToString())) == request


def test_label_round_trip():
    label = OracleLabel(article_id="a1", filter=FilterRef("uplifting", 1), prompt_hash="p", oracle_model="m",
                        provider="openai", dimensions=[DimensionLabel("agency", 7.5, "quote"), DimensionLabel("x", 0.0)],
                        usage=Usage(10, 2, 5, 0.25), cached=True, temperature=0.2, latency_seconds=1.5,
                        created_at="2026-01-01T00:00:00Z", reason=LabelReason.UNCERTAIN)
    message = messages.label_message(label)
    assert message.usage.cost_usd == 0.25 and message.dimensions[0].evidence == "quote"
    assert messages.label_of(oracle_pb2.OracleLabel.FromString(message.SerializeToString())) == label


def test_article_record_round_trip_and_message():
    record = {"title": "T", "content": "body", "published_date": "2025-01-01", "metadata": {"a": 1, "b": "x"}}
    article = Article.from_record(record)
    assert article.text == "body" and article.metadata == {"a": "1", "b": "x"} and article.id
    message = messages.from_record(record)
    assert messages.article_of(message) == article
    assert messages.to_record(message) == article.to_record()
