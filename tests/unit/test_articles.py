from __future__ import annotations

import pytest

from distillery import articles, messages
from distillery.v1 import article_pb2


def test_derived_id_is_stable_and_prefers_url():
    a = articles.derive_id("https://example.org/x", "T", "body")
    assert a == articles.derive_id("https://example.org/x", "other", "text")
    assert articles.derive_id("", "T", "body") == articles.derive_id("", "T", "body")
    assert articles.derive_id("", "T", "body") != articles.derive_id("", "T", "body2")


def test_validate_fills_id_and_rejects_bad_articles():
    art = articles.validate(article_pb2.Article(title="Hello", text="World"))
    assert art.id
    with pytest.raises(articles.InvalidArticleError, match="title"):
        articles.validate(article_pb2.Article(title="  ", text="x"))
    with pytest.raises(articles.InvalidArticleError, match="text is empty"):
        articles.validate(article_pb2.Article(title="t", text=""))
    with pytest.raises(articles.InvalidArticleError, match="over the maximum"):
        articles.validate(article_pb2.Article(title="t", text="x" * 101), max_text_bytes=100)


def test_record_round_trip_accepts_legacy_field_names():
    rec = {"title": "T", "content": "body", "url": "u", "published_date": "2025-01-01", "metadata": {"a": 1}}
    art = messages.from_record(rec)
    assert art.text == "body" and art.published_at == "2025-01-01" and art.metadata["a"] == "1"
    back = messages.to_record(art)
    assert back["text"] == "body" and back["id"] == art.id


def test_head_tail_keeps_both_ends():
    text = "A" * 50 + "B" * 50
    cut = articles.head_tail_chars(text, 40)
    assert len(cut) <= 40 and cut.startswith("A") and cut.endswith("B") and "[...]" in cut
    assert articles.head_tail_chars("short", 40) == "short"


def test_read_jsonl_names_the_broken_line(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_text('{"a": 1}\n{broken\n')
    with pytest.raises(ValueError, match=r"x.jsonl:2"):
        list(articles.read_jsonl(p))
