"""The shared gRPC plumbing over a real socket: error mapping, per-item stream errors, metrics, shutdown."""

from __future__ import annotations

import urllib.request

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from distillery.articles import InvalidArticleError, validate
from distillery.config import ServiceSettings
from distillery.filters import UnknownFilterError
from distillery.rpc import GrpcServer, ServiceBinding, handle_errors, item_error
from distillery.rpc.errors import OverloadedError
from distillery.v1 import scoring_pb2, scoring_pb2_grpc


class EchoScoring(scoring_pb2_grpc.ScoringServiceServicer):
    """A minimal servicer that exercises the plumbing: every error path, no model."""

    @handle_errors
    def Score(self, request, context):
        if request.article.title == "boom":
            raise RuntimeError("secret internals")
        if request.article.title == "busy":
            raise OverloadedError("queue full (256 requests); retry later")
        if request.filters and request.filters[0].name == "nope":
            raise UnknownFilterError("unknown filter 'nope'")
        article = validate(request.article)
        return scoring_pb2.ScoreResponse(article_id=article.id)

    def ScoreStream(self, request_iterator, context):
        for request in request_iterator:
            try:
                article = validate(request.article)
                yield scoring_pb2.ScoreStreamResponse(response=scoring_pb2.ScoreResponse(article_id=article.id))
            except InvalidArticleError as exc:
                yield scoring_pb2.ScoreStreamResponse(error=item_error(exc))


@pytest.fixture()
def server():
    settings = ServiceSettings.load(port=0, metrics_port=0, shutdown_grace_seconds=1)
    srv = GrpcServer("unittest", settings, [ServiceBinding(scoring_pb2_grpc.add_ScoringServiceServicer_to_server,
                                                           EchoScoring(), "distillery.v1.ScoringService")]).start()
    yield srv
    srv.stop()


def _stub(server):
    return scoring_pb2_grpc.ScoringServiceStub(grpc.insecure_channel(f"127.0.0.1:{server.port}"))


def _req(title="t", text="x", filt=None):
    from distillery.v1 import article_pb2, common_pb2

    return scoring_pb2.ScoreRequest(article=article_pb2.Article(title=title, text=text),
                                    filters=[common_pb2.FilterRef(name=filt)] if filt else [])


@pytest.mark.parametrize(
    ("request_kwargs", "code", "fragment"),
    [
        ({"text": ""}, grpc.StatusCode.INVALID_ARGUMENT, "text is empty"),
        ({"title": ""}, grpc.StatusCode.INVALID_ARGUMENT, "title"),
        ({"filt": "nope"}, grpc.StatusCode.NOT_FOUND, "unknown filter"),
        ({"title": "busy"}, grpc.StatusCode.RESOURCE_EXHAUSTED, "retry later"),
        ({"title": "boom"}, grpc.StatusCode.INTERNAL, "incident"),
    ],
)
def test_errors_map_to_status_codes_with_clear_messages(server, request_kwargs, code, fragment):
    with pytest.raises(grpc.RpcError) as info:
        _stub(server).Score(_req(**request_kwargs), timeout=5)
    assert info.value.code() == code
    assert fragment in info.value.details()
    assert "secret internals" not in info.value.details()


def test_stream_reports_per_item_errors_and_goes_on(server):
    replies = list(_stub(server).ScoreStream(iter([_req(), _req(text=""), _req(title="t2")]), timeout=5))
    assert [bool(r.error.code) for r in replies] == [False, True, False]
    assert replies[1].error.code == "INVALID_ARGUMENT"


def test_health_and_rpc_metrics(server):
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    _stub(server).Score(_req(), timeout=5)
    with pytest.raises(grpc.RpcError):
        _stub(server).Score(_req(text=""), timeout=5)
    body = urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=5).read().decode()
    assert 'distillery_unittest_rpc_requests_total{code="OK",method="Score"}' in body
    assert 'distillery_unittest_rpc_requests_total{code="INVALID_ARGUMENT",method="Score"}' in body
    assert "distillery_unittest_rpc_seconds_bucket" in body


def test_stop_reports_not_serving(server):
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    server.stop(grace=0.5)
    with pytest.raises(grpc.RpcError):
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=2)


def test_a_handler_that_aborts_itself_keeps_its_status():
    class Aborting(scoring_pb2_grpc.ScoringServiceServicer):
        @handle_errors
        def Score(self, request, context):
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "not yours")

    settings = ServiceSettings.load(port=0, metrics_port=0, shutdown_grace_seconds=1)
    srv = GrpcServer("unittest", settings, [ServiceBinding(scoring_pb2_grpc.add_ScoringServiceServicer_to_server,
                                                           Aborting(), "distillery.v1.ScoringService")]).start()
    try:
        with pytest.raises(grpc.RpcError) as info:
            _stub(srv).Score(_req(), timeout=5)
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED and info.value.details() == "not yours"
    finally:
        srv.stop()
