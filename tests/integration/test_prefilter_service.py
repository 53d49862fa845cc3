"""The prefilter service as a real process: health, Check, CheckStream, bad input, metrics."""

from __future__ import annotations

import urllib.request

import grpc
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from distillery.runtime.supervisor import start_service
from distillery.v1 import article_pb2, common_pb2, prefilter_pb2, prefilter_pb2_grpc

pytestmark = pytest.mark.integration

SCALE = {band: f"band {band}" for band in ("0-2", "3-4", "5-6", "7-8", "9-10")}
BODY = " A long enough body about community energy projects in the region." * 3


def write_filter(root, name, version, prefilter):
    pkg = root / name / f"v{version}"
    pkg.mkdir(parents=True)
    spec = {
        "name": name,
        "version": version,
        "description": "integration test filter",
        "dimensions": [{"name": "impact", "weight": 1.0, "description": "impact", "scale": SCALE}],
        "tiers": [{"name": "low", "min_overall": 0}],
        "prefilter": prefilter,
    }
    (pkg / "filter.yaml").write_text(yaml.safe_dump(spec))
    (pkg / "prompt.md").write_text("Score it.\n{{dimensions}}\n{{output_schema}}\n{{article}}\n")


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    root = tmp_path_factory.mktemp("filters")
    write_filter(root, "energy", 1, {"min_length": 100, "exclusions": [
        {"name": "crime", "keywords": ["murder"], "exceptions": ["justice reform"]}]})
    write_filter(root, "energy", 2, {"min_length": 100, "require_any": ["energy"]})
    write_filter(root, "news", 1, {"min_length": 50, "blocked_domains": ["spam.example"]})
    svc = start_service("prefilter", args=["--filters-dir", str(root)], log_dir=tmp_path_factory.mktemp("logs"))
    try:
        yield svc
    finally:
        svc.stop()


@pytest.fixture(scope="module")
def stub(service):
    with service.channel() as channel:
        yield prefilter_pb2_grpc.PrefilterServiceStub(channel)


def art(title="Solar co-op opens", text=BODY, **kw):
    return article_pb2.Article(title=title, text=text, **kw)


def test_health_reports_serving(service):
    with service.channel() as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for name in ("", "distillery.v1.PrefilterService"):
            reply = health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_check_batch_all_filters(stub):
    reply = stub.Check(prefilter_pb2.CheckRequest(articles=[
        art(id="a1"),
        art(id="a2", text="A murder in town." + BODY),
        art(id="a3", url="https://www.spam.example/x"),
    ]), timeout=10)
    got = {(d.article_id, d.filter.name, d.filter.version): d for d in reply.decisions}
    assert len(got) == 9  # 3 articles x 3 loaded filter versions
    assert got[("a1", "energy", 1)].passed
    blocked = got[("a2", "energy", 1)]
    assert not blocked.passed
    assert (blocked.reasons[0].code, blocked.reasons[0].matched) == ("excluded:crime", "murder")
    assert got[("a2", "energy", 2)].passed  # v2 has no crime rule
    assert got[("a3", "news", 1)].reasons[0].code == "domain:spam.example"
    assert [d.article_id for d in reply.decisions][:3] == ["a1"] * 3  # request order


def test_check_selected_filter_and_newest_version(stub):
    reply = stub.Check(prefilter_pb2.CheckRequest(
        articles=[art(text="Nothing about power here." + BODY.replace("energy", "solar"))],
        filters=[common_pb2.FilterRef(name="energy")],
    ), timeout=10)
    (decision,) = reply.decisions
    assert decision.filter.version == 2 and decision.reasons[0].code == "off_topic"
    assert decision.article_id  # derived when not given


def test_check_bad_input_statuses(stub):
    with pytest.raises(grpc.RpcError) as info:
        stub.Check(prefilter_pb2.CheckRequest(articles=[art(), art(text="   ")]), timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "articles[1]" in info.value.details() and "empty" in info.value.details()

    with pytest.raises(grpc.RpcError) as info:
        stub.Check(prefilter_pb2.CheckRequest(articles=[art()], filters=[common_pb2.FilterRef(name="nope")]),
                   timeout=10)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND and "nope" in info.value.details()

    with pytest.raises(grpc.RpcError) as info:
        stub.Check(prefilter_pb2.CheckRequest(articles=[art(text="x" * 10_000_000)]), timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "bytes" in info.value.details()


def test_invalid_utf8_is_refused_and_the_server_goes_on(service, stub):
    # A CheckRequest whose first article's title holds invalid UTF-8, sent as raw bytes.
    article = b"\x12\x02\xff\xfe\x1a\x05hello"
    request = b"\x0a" + bytes([len(article)]) + article
    with service.channel() as channel:
        raw_check = channel.unary_unary("/distillery.v1.PrefilterService/Check")
        with pytest.raises(grpc.RpcError) as info:
            raw_check(request, timeout=10)
    # grpcio answers before the servicer runs (see STACK-NOTES); the call fails cleanly either way.
    assert info.value.code() in (grpc.StatusCode.INTERNAL, grpc.StatusCode.INVALID_ARGUMENT)
    assert stub.Check(prefilter_pb2.CheckRequest(articles=[art()]), timeout=10).decisions


def test_check_stream_goes_on_after_bad_items(stub):
    requests = [
        prefilter_pb2.CheckStreamRequest(article=art(id="s1")),
        prefilter_pb2.CheckStreamRequest(article=art(id="s2", text="")),
        prefilter_pb2.CheckStreamRequest(article=art(id="s3"), filters=[common_pb2.FilterRef(name="nope")]),
        prefilter_pb2.CheckStreamRequest(article=art(id="s4", text="y" * 10_000_000)),
        prefilter_pb2.CheckStreamRequest(article=art(id="s5", text="murder" + BODY),
                                         filters=[common_pb2.FilterRef(name="energy", version=1)]),
    ]
    replies = list(stub.CheckStream(iter(requests), timeout=60))
    assert [r.article_id for r in replies] == ["s1", "s2", "s3", "s4", "s5"]
    assert len(replies[0].decisions) == 3 and not replies[0].HasField("error")
    assert replies[1].error.code == "INVALID_ARGUMENT"
    assert replies[2].error.code == "NOT_FOUND"
    assert replies[3].error.code == "INVALID_ARGUMENT"
    assert [d.passed for d in replies[4].decisions] == [False]


def test_metrics_are_exported(service, stub):
    stub.Check(prefilter_pb2.CheckRequest(articles=[art()]), timeout=10)
    body = urllib.request.urlopen(f"http://127.0.0.1:{service.metrics_port}/metrics", timeout=5).read().decode()
    assert 'distillery_prefilter_decisions_total{filter="energy/v1",outcome="passed",reason="passed"}' in body
    assert "distillery_prefilter_article_seconds_bucket" in body
    assert 'distillery_prefilter_batch_articles_count{source="grpc"}' in body
    assert 'distillery_prefilter_invalid_articles_total{source="grpc"}' in body


def test_invalid_rule_refuses_to_start(tmp_path):
    from distillery.runtime.supervisor import ServiceStartError

    write_filter(tmp_path, "broken", 1, {"exclusions": [{"name": "bad", "patterns": ["(oops"]}]})
    with pytest.raises(ServiceStartError) as info:
        start_service("prefilter", args=["--filters-dir", str(tmp_path)], log_dir=tmp_path / "logs", timeout=60)
    message = str(info.value)
    assert "exited with code 2" in message and "filter.yaml" in message and "exclusions[0] (bad).patterns" in message
