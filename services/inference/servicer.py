"""gRPC ScoringService: Score, ScoreBatch and the bidi ScoreStream, over the engine."""

from __future__ import annotations

import logging
import queue
import threading
import time

import grpc
from distillery_services.inference.batcher import DeadlineExceededError
from distillery_services.inference.engine import (
    STAGE_CHEAP,
    STAGE_EXPENSIVE,
    STAGE_SINGLE,
    FilterResult,
    ScoringEngine,
)
from distillery_services.inference.wire import batch_response_bytes

from distillery.articles import Article, InvalidArticleError, validate
from distillery.identifiers import check_filter_refs
from distillery.messages import article_of
from distillery.rpc import handle_errors, item_error
from distillery.v1 import scoring_pb2, scoring_pb2_grpc

logger = logging.getLogger(__name__)

_STAGES = {
    STAGE_SINGLE: scoring_pb2.STAGE_SINGLE,
    STAGE_CHEAP: scoring_pb2.STAGE_CHEAP,
    STAGE_EXPENSIVE: scoring_pb2.STAGE_EXPENSIVE,
}


def fill_result(msg: scoring_pb2.ScoreResult, result: FilterResult) -> scoring_pb2.ScoreResult:
    """Write ``result`` into an empty ScoreResult (in place: a message built apart and then assigned to its
    parent is copied; filling the parent's own sub-messages is what keeps big batches cheap)."""
    msg.article_id = result.article_id
    msg.filter.name = result.filter_name
    msg.filter.version = result.filter_version
    spread = result.spread.tolist() if result.spread is not None else [0.0] * len(result.dimensions)
    add = msg.dimensions.add
    for n, r, c, lo, hi, sd in zip(result.dimensions, result.raw.tolist(), result.calibrated.tolist(),
                                   result.lower.tolist(), result.upper.tolist(), spread, strict=True):
        add(name=n, raw=r, calibrated=c, lower=lo, upper=hi, spread=sd)
    msg.overall = result.overall
    msg.tier = result.tier
    msg.uncertain = result.uncertain
    msg.model_version = result.model_version
    msg.stage = _STAGES[result.stage]
    timings = msg.timings
    timings.queue_seconds = result.queue_seconds
    timings.preprocess_seconds = result.preprocess_seconds
    timings.inference_seconds = result.inference_seconds
    timings.total_seconds = result.total_seconds
    if result.gatekeepers_applied:
        msg.gatekeepers_applied.extend(result.gatekeepers_applied)
    return msg


def to_proto(result: FilterResult) -> scoring_pb2.ScoreResult:
    return fill_result(scoring_pb2.ScoreResult(), result)


def fill_response(msg: scoring_pb2.ScoreResponse, article_id: str, results) -> scoring_pb2.ScoreResponse:
    msg.article_id = article_id
    add = msg.results.add
    for result in results:
        fill_result(add(), result)
    return msg


def _article(message, max_text_bytes: int) -> Article:
    """The engine's plain Article for a request's message, validated (each text field decoded once)."""
    return validate(article_of(message), max_text_bytes)


def _deadline(context) -> float | None:
    remaining = context.time_remaining() if context is not None else None
    # grpcio reports a huge number when the client set no deadline.
    if remaining is None or remaining > 1e6:
        return None
    return time.monotonic() + remaining


class ScoringServicer(scoring_pb2_grpc.ScoringServiceServicer):
    def __init__(self, engine: ScoringEngine, max_text_bytes: int, max_request_articles: int):
        self.engine = engine
        self.max_text_bytes = max_text_bytes
        self.max_request_articles = max_request_articles

    def _score(self, articles, filters, context) -> list:
        """Per article, its FilterResults (one per filter)."""
        check_filter_refs(filters)
        slots = self.engine.resolve([(f.name, f.version) for f in filters])
        try:
            return self.engine.score(articles, slots, _deadline(context))
        except DeadlineExceededError as exc:
            context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, str(exc))

    @handle_errors
    def Score(self, request, context):
        article = _article(request.article, self.max_text_bytes)
        (results,) = self._score([article], request.filters, context)
        return fill_response(scoring_pb2.ScoreResponse(), article.id, results)

    @handle_errors
    def ScoreBatch(self, request, context):
        if not request.articles:
            raise InvalidArticleError("articles is empty: send at least one article")
        if len(request.articles) > self.max_request_articles:
            raise InvalidArticleError(
                f"{len(request.articles)} articles in one ScoreBatch, over the limit of "
                f"{self.max_request_articles}; split the batch or use ScoreStream"
            )
        articles = []
        for i, article in enumerate(request.articles):
            try:
                articles.append(_article(article, self.max_text_bytes))
            except InvalidArticleError as exc:
                raise InvalidArticleError(f"articles[{i}]: {exc}") from None
        per_article = self._score(articles, request.filters, context)
        # written as bytes and parsed once (see wire.py): a tenth of a cheap model's serving time otherwise
        return scoring_pb2.ScoreBatchResponse.FromString(batch_response_bytes([a.id for a in articles], per_article))

    def ScoreStream(self, request_iterator, context):
        """One response per request, in order; a bad item gets an ItemError and the stream goes on.

        A reader thread drains the client's stream; each round scores every request that has arrived
        (up to 64) together, so a busy stream shares forward passes and a one-at-a-time client is never
        kept waiting for a window to fill.
        """
        inbox: queue.Queue = queue.Queue(maxsize=256)
        done = object()

        def read() -> None:
            try:
                for request in request_iterator:
                    inbox.put(request)
            except Exception:
                logger.debug("score stream reader ended", exc_info=True)
            finally:
                inbox.put(done)

        threading.Thread(target=read, name="score-stream-reader", daemon=True).start()
        finished = False
        while not finished:
            first = inbox.get()
            if first is done:
                break
            window = [first]
            while len(window) < 64:
                try:
                    item = inbox.get_nowait()
                except queue.Empty:
                    break
                if item is done:
                    finished = True
                    break
                window.append(item)
            yield from self._stream_window(window, context)

    def _stream_window(self, requests, context):
        # Group valid items with the same filter set so they are scored together.
        outputs: list[scoring_pb2.ScoreStreamResponse | None] = [None] * len(requests)
        groups: dict[tuple, list[int]] = {}
        valid: dict[int, Article] = {}
        for i, request in enumerate(requests):
            try:
                valid[i] = _article(request.article, self.max_text_bytes)
                check_filter_refs(request.filters)
                key = tuple((f.name, f.version) for f in request.filters)
                self.engine.resolve(list(key))
                groups.setdefault(key, []).append(i)
            except Exception as exc:  # noqa: BLE001 - each item's error is its own
                outputs[i] = scoring_pb2.ScoreStreamResponse(error=item_error(exc))
        for key, indices in groups.items():
            try:
                slots = self.engine.resolve(list(key))
                arts = [valid[i] for i in indices]
                per_article = self.engine.score(arts, slots, _deadline(context))
                for i, article, results in zip(indices, arts, per_article, strict=True):
                    outputs[i] = out = scoring_pb2.ScoreStreamResponse()
                    fill_response(out.response, article.id, results)
            except DeadlineExceededError as exc:
                context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, str(exc))
            except Exception as exc:  # noqa: BLE001
                err = item_error(exc)
                for i in indices:
                    outputs[i] = scoring_pb2.ScoreStreamResponse(error=err)
        yield from outputs
