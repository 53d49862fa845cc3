"""Kafka stage: ``articles.raw`` -> ``articles.candidates`` (passed filters) / ``articles.rejected`` (decisions).

For each article: one CandidateArticle on articles.candidates when at least one filter passed it (the
passed filters are in the message and in the ``passed-filters`` header), and one Decision per blocking
filter on articles.rejected (for false-negative audits). An undecodable or invalid message goes to
``articles.raw.dlq`` (see :class:`distillery.bus.Stage`); the stage carries on.
"""

from __future__ import annotations

import time

from distillery_services.prefilter import metrics
from distillery_services.prefilter.config import PrefilterSettings
from distillery_services.prefilter.convert import decision
from distillery_services.prefilter.engine import PrefilterEngine
from google.protobuf.message import DecodeError

from distillery.articles import InvalidArticleError, validate
from distillery.bus import OutMessage, Stage, header, make_headers, new_trace_id
from distillery.bus import headers as h
from distillery.bus.topics import ARTICLES_CANDIDATES, ARTICLES_RAW, ARTICLES_REJECTED, with_prefix
from distillery.v1 import article_pb2, common_pb2, events_pb2


def decode_article(value: bytes | None) -> article_pb2.Article:
    if not value:
        raise InvalidArticleError("empty message value: expected a serialized distillery.v1.Article")
    article = article_pb2.Article()
    try:
        article.ParseFromString(value)
    except DecodeError as exc:
        raise InvalidArticleError(f"value is not a distillery.v1.Article ({exc})") from None
    return article


class PrefilterStage(Stage):
    def __init__(self, settings: PrefilterSettings, engine: PrefilterEngine):
        prefix = settings.kafka_topic_prefix
        self.raw_topic = with_prefix(ARTICLES_RAW, prefix)
        self.candidates_topic = with_prefix(ARTICLES_CANDIDATES, prefix)
        self.rejected_topic = with_prefix(ARTICLES_REJECTED, prefix)
        super().__init__(
            service="prefilter",
            bootstrap=settings.kafka_bootstrap,
            group_id=settings.kafka_group,
            input_topics=[self.raw_topic],
            output_topics=[self.candidates_topic, self.rejected_topic],
            max_records=settings.kafka_batch,
            create_topics=settings.kafka_create_topics,
        )
        self.engine = engine
        self.max_text_bytes = settings.max_text_bytes
        self.detect_language = settings.detect_language

    def process(self, record):
        try:
            article = validate(decode_article(record.value), self.max_text_bytes)
        except InvalidArticleError:
            metrics.INVALID_ARTICLES.labels("kafka").inc()
            raise
        started = time.perf_counter()
        result = self.engine.check(article.title, article.text, article.url, article.source_type,
                                   article.language, detect_language=self.detect_language)
        metrics.ARTICLE_SECONDS.observe(time.perf_counter() - started)
        metrics.record(result.verdicts)
        if result.language and not article.language:
            article.language = result.language
        trace = header(record.headers, h.TRACE_ID) or new_trace_id()
        key = article.id.encode("utf-8")
        passed = [v for v in result.verdicts if v.passed]
        out: list[OutMessage] = []
        if passed:
            candidate = events_pb2.CandidateArticle(
                article=article,
                passed_filters=[common_pb2.FilterRef(name=v.filter, version=v.version) for v in passed],
            )
            out.append(OutMessage(
                self.candidates_topic, key, candidate.SerializeToString(),
                make_headers(trace, {h.PASSED_FILTERS: ",".join(v.ref for v in passed)}),
            ))
        for v in result.verdicts:
            if not v.passed:
                out.append(OutMessage(self.rejected_topic, key, decision(article.id, v).SerializeToString(),
                                      make_headers(trace)))
        return out

    def run_once(self) -> int:
        n = super().run_once()
        if n:
            metrics.BATCH_ARTICLES.labels("kafka").observe(n)
        return n
