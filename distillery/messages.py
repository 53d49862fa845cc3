"""The generated messages (``distillery.v1``) to the domain types and back: the translation every edge shares.

Servicers, Kafka stages, the CLI and the demos receive and send messages; engines and the label store take
and return the plain types of :mod:`distillery.articles` and :mod:`distillery.labels`. Each pair below
converts field for field, so a round trip gives back what went in.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from distillery.articles import FIELDS, Article, article_record
from distillery.labels import DimensionLabel, FilterRef, LabelReason, LabelRequest, OracleLabel, Usage
from distillery.v1 import article_pb2, common_pb2, oracle_pb2


# -- articles ---------------------------------------------------------------------------------------------
def article_of(message: article_pb2.Article) -> Article:
    return Article.copy_of(message)


def article_message(article: Article) -> article_pb2.Article:
    return article_pb2.Article(**{f: getattr(article, f) for f in FIELDS}, metadata=dict(article.metadata))


def from_record(record: Mapping[str, Any]) -> article_pb2.Article:
    """An Article message from a JSON record (accepts ``content`` for ``text`` and ``published_date``)."""
    return article_message(Article.from_record(record))


def to_record(article: article_pb2.Article) -> dict[str, Any]:
    return article_record(article)


# -- labels -----------------------------------------------------------------------------------------------
def filter_ref_of(message: common_pb2.FilterRef) -> FilterRef:
    return FilterRef(name=message.name, version=int(message.version))


def label_request_of(message: oracle_pb2.LabelRequest) -> LabelRequest:
    return LabelRequest(article=article_of(message.article), filter=filter_ref_of(message.filter),
                        reason=LabelReason.of(message.reason), oracle=message.oracle, job_id=message.job_id)


def label_request_message(request: LabelRequest) -> oracle_pb2.LabelRequest:
    return oracle_pb2.LabelRequest(
        article=article_message(request.article),
        filter=common_pb2.FilterRef(name=request.filter.name, version=request.filter.version),
        reason=int(request.reason), oracle=request.oracle, job_id=request.job_id)


def label_of(message: oracle_pb2.OracleLabel) -> OracleLabel:
    usage = message.usage
    return OracleLabel(
        article_id=message.article_id, filter=filter_ref_of(message.filter), prompt_hash=message.prompt_hash,
        oracle_model=message.oracle_model, provider=message.provider,
        dimensions=[DimensionLabel(name=d.name, score=d.score, evidence=d.evidence) for d in message.dimensions],
        usage=Usage(input_tokens=usage.input_tokens, cached_input_tokens=usage.cached_input_tokens,
                    output_tokens=usage.output_tokens, cost_usd=usage.cost_usd),
        cached=message.cached, temperature=message.temperature, latency_seconds=message.latency_seconds,
        created_at=message.created_at, reason=LabelReason.of(message.reason))


def label_message(label: OracleLabel) -> oracle_pb2.OracleLabel:
    usage = label.usage
    return oracle_pb2.OracleLabel(
        article_id=label.article_id, filter=common_pb2.FilterRef(name=label.filter.name, version=label.filter.version),
        prompt_hash=label.prompt_hash, oracle_model=label.oracle_model, provider=label.provider,
        dimensions=[oracle_pb2.DimensionLabel(name=d.name, score=d.score, evidence=d.evidence)
                    for d in label.dimensions],
        usage=common_pb2.Usage(input_tokens=usage.input_tokens, cached_input_tokens=usage.cached_input_tokens,
                               output_tokens=usage.output_tokens, cost_usd=usage.cost_usd),
        cached=label.cached, temperature=label.temperature, latency_seconds=label.latency_seconds,
        created_at=label.created_at, reason=int(label.reason))
