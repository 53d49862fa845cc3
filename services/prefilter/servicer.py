"""gRPC PrefilterService: Check (batch) and CheckStream (bidi), over the rule engine."""

from __future__ import annotations

import time

from distillery_services.prefilter import metrics
from distillery_services.prefilter.convert import decisions, refs_of
from distillery_services.prefilter.engine import PrefilterEngine

from distillery.articles import InvalidArticleError, validate
from distillery.identifiers import check_filter_refs
from distillery.rpc import handle_errors, item_error
from distillery.v1 import prefilter_pb2, prefilter_pb2_grpc


class PrefilterServicer(prefilter_pb2_grpc.PrefilterServiceServicer):
    def __init__(self, engine: PrefilterEngine, max_text_bytes: int, max_request_articles: int):
        self.engine = engine
        self.max_text_bytes = max_text_bytes
        self.max_request_articles = max_request_articles

    def _check_one(self, article, indices) -> list[prefilter_pb2.Decision]:
        validate(article, self.max_text_bytes)
        start = time.perf_counter()
        result = self.engine.check(
            article.title, article.text, article.url, article.source_type, article.language, indices
        )
        metrics.ARTICLE_SECONDS.observe(time.perf_counter() - start)
        metrics.record(result.verdicts)
        return decisions(article.id, result.verdicts)

    @handle_errors
    def Check(self, request: prefilter_pb2.CheckRequest, context) -> prefilter_pb2.CheckResponse:
        n = len(request.articles)
        if n > self.max_request_articles:
            raise InvalidArticleError(
                f"{n} articles in one Check call, over the maximum of {self.max_request_articles}; "
                "split the batch or use CheckStream"
            )
        check_filter_refs(request.filters)
        indices = self.engine.select(refs_of(request.filters))
        metrics.BATCH_ARTICLES.labels("grpc").observe(n)
        response = prefilter_pb2.CheckResponse()
        for i, article in enumerate(request.articles):
            try:
                response.decisions.extend(self._check_one(article, indices))
            except InvalidArticleError as exc:
                metrics.INVALID_ARTICLES.labels("grpc").inc()
                raise InvalidArticleError(f"articles[{i}]: {exc}") from None
        return response

    @handle_errors
    def CheckStream(self, request_iterator, context):
        for request in request_iterator:
            article = request.article
            try:
                check_filter_refs(request.filters)
                indices = self.engine.select(refs_of(request.filters))
                found = self._check_one(article, indices)
            except Exception as exc:  # noqa: BLE001 - one bad item never ends the stream
                if isinstance(exc, InvalidArticleError):
                    metrics.INVALID_ARTICLES.labels("grpc").inc()
                yield prefilter_pb2.CheckStreamResponse(article_id=article.id, error=item_error(exc))
                continue
            yield prefilter_pb2.CheckStreamResponse(article_id=article.id, decisions=found)
