"""The inference service as a real process over real sockets, serving a real registry model."""

from __future__ import annotations

import re
import threading
import time
import urllib.request
from pathlib import Path

import grpc
import numpy as np
import pytest

from distillery.filters import FilterCatalog
from distillery.messages import from_record
from distillery.runtime.supervisor import start_service
from distillery.v1 import article_pb2, common_pb2, scoring_pb2, scoring_pb2_grpc

pytestmark = pytest.mark.integration

FILTERS = Path(__file__).resolve().parents[2] / "filters"


def _train_lexical(spec, registry, seed=0, promote=True, n=200):
    from distillery.calibration import Calibration
    from distillery.students import compose_text, make_student
    from distillery.synthetic import generate, scores_of

    records = list(generate(spec, n, seed=seed))
    texts = [compose_text(r["title"], r.get("text") or r.get("content", "")) for r in records]
    y = np.array([[scores_of(r)[d] for d in spec.dimension_names] for r in records])
    student = make_student("lexical", spec.dimension_names, filter=spec.name)
    student.fit(texts[:150], y[:150])
    cal = Calibration.fit(student.predict(texts[150:]), y[150:], spec.dimension_names)
    info = registry.register(spec, student, cal)
    if promote:
        registry.promote(spec.name, info.version_id)
    return info, records


@pytest.fixture(scope="module")
def spec():
    return FilterCatalog.load(FILTERS, ["uplifting"]).get("uplifting")


@pytest.fixture(scope="module")
def world(tmp_path_factory, spec):
    from distillery.registry import ModelRegistry

    root = tmp_path_factory.mktemp("inference")
    registry = ModelRegistry(root / "registry")
    info, records = _train_lexical(spec, registry)
    return registry, info, records, root


@pytest.fixture(scope="module")
def service(world):
    _registry, _info, _records, root = world
    svc = start_service("inference", args=[
        "--filters-dir", str(FILTERS), "--filter", "uplifting", "--state-dir", str(root),
        "--max-wait-ms", "20", "--reload-poll-seconds", "0.2", "--max-queue", "512",
        "--log-level", "WARNING",
    ], log_dir=root / "logs")
    yield svc
    svc.stop()


@pytest.fixture(scope="module")
def stub(service):
    channel = service.channel()
    yield scoring_pb2_grpc.ScoringServiceStub(channel)
    channel.close()


def _articles(records, n):
    return [from_record(r) for r in records[:n]]


def _metric(port: int, name: str, labels: str = "") -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and (not labels or labels in line):
            m = re.match(rf"{re.escape(name)}(\{{[^}}]*\}})? ([0-9.e+-]+)", line)
            if m:
                total += float(m.group(2))
    return total


def test_score_returns_full_result(stub, world, spec):
    _registry, info, records, _ = world
    reply = stub.Score(scoring_pb2.ScoreRequest(article=_articles(records, 1)[0]), timeout=10)
    (result,) = reply.results
    assert result.filter.name == "uplifting" and result.filter.version == spec.version
    assert [d.name for d in result.dimensions] == spec.dimension_names
    for d in result.dimensions:
        assert 0 <= d.lower <= d.calibrated <= d.upper <= 10
    assert 0 <= result.overall <= 10 and result.tier in {t.name for t in spec.tiers}
    assert result.model_version == info.version_id
    assert result.stage == scoring_pb2.STAGE_SINGLE
    assert result.timings.total_seconds > 0


def test_score_batch_and_stream_agree(stub, world):
    records = world[2]
    arts = _articles(records, 20)
    batch = stub.ScoreBatch(scoring_pb2.ScoreBatchRequest(articles=arts), timeout=20)
    assert [r.article_id for r in batch.responses] == [a.id for a in arts]
    stream = list(stub.ScoreStream(iter([scoring_pb2.ScoreRequest(article=a) for a in arts]), timeout=20))
    assert len(stream) == 20
    for b, s in zip(batch.responses, stream, strict=True):
        assert not s.HasField("error")
        assert s.response.results[0].overall == pytest.approx(b.results[0].overall)


def test_stream_item_errors_do_not_end_the_stream(stub, world):
    records = world[2]
    good = _articles(records, 2)
    requests = [
        scoring_pb2.ScoreRequest(article=good[0]),
        scoring_pb2.ScoreRequest(article=article_pb2.Article(title="no text", text="")),
        scoring_pb2.ScoreRequest(article=good[1], filters=[common_pb2.FilterRef(name="nope")]),
        scoring_pb2.ScoreRequest(article=good[1]),
    ]
    out = list(stub.ScoreStream(iter(requests), timeout=20))
    assert [o.HasField("error") for o in out] == [False, True, True, False]
    assert out[1].error.code == "INVALID_ARGUMENT" and "text is empty" in out[1].error.message
    assert out[2].error.code == "NOT_FOUND"


@pytest.mark.parametrize("article,filters,code,text", [
    (article_pb2.Article(title="t", text=""), [], grpc.StatusCode.INVALID_ARGUMENT, "text is empty"),
    (article_pb2.Article(title="t", text="x" * 1_000_001), [], grpc.StatusCode.INVALID_ARGUMENT, "over the maximum"),
    (article_pb2.Article(title="t", text="ok"), [common_pb2.FilterRef(name="nope")], grpc.StatusCode.NOT_FOUND,
     "unknown filter"),
    (article_pb2.Article(title="t", text="ok"), [common_pb2.FilterRef(name="uplifting", version=9)],
     grpc.StatusCode.NOT_FOUND, "not served"),
])
def test_bad_input_gets_a_clear_status(stub, article, filters, code, text):
    with pytest.raises(grpc.RpcError) as err:
        stub.Score(scoring_pb2.ScoreRequest(article=article, filters=filters), timeout=10)
    assert err.value.code() == code and text in err.value.details()
    assert stub.Score(scoring_pb2.ScoreRequest(article=article_pb2.Article(title="t", text="fine")), timeout=10)


def test_malformed_bytes_get_a_status_and_server_keeps_serving(service, stub):
    channel = service.channel()
    raw = channel.unary_unary("/distillery.v1.ScoringService/Score", request_serializer=lambda b: b,
                              response_deserializer=lambda b: b)
    with pytest.raises(grpc.RpcError) as err:
        raw(b"\xff\xff\xff\xff", timeout=5)
    assert err.value.code() in (grpc.StatusCode.INTERNAL, grpc.StatusCode.INVALID_ARGUMENT)
    channel.close()
    assert stub.Score(scoring_pb2.ScoreRequest(article=article_pb2.Article(title="t", text="fine")), timeout=10)


def test_malformed_stream_message_fails_that_stream_only(service, stub, world):
    channel = service.channel()
    raw = channel.stream_stream("/distillery.v1.ScoringService/ScoreStream", request_serializer=lambda b: b,
                                response_deserializer=lambda b: b)
    good = scoring_pb2.ScoreRequest(article=_articles(world[2], 1)[0]).SerializeToString()
    with pytest.raises(grpc.RpcError) as err:
        list(raw(iter([good, b"\xff\xff\xff\xff"]), timeout=10))
    assert err.value.code() in (grpc.StatusCode.INTERNAL, grpc.StatusCode.INVALID_ARGUMENT,
                                grpc.StatusCode.CANCELLED)
    channel.close()
    assert stub.Score(scoring_pb2.ScoreRequest(article=article_pb2.Article(title="t", text="fine")), timeout=10)


def test_concurrent_requests_are_batched(service, stub, world):
    records = world[2]
    arts = _articles(records, 40)
    before_n = _metric(service.metrics_port, "distillery_inference_batch_size_count")
    before_sum = _metric(service.metrics_port, "distillery_inference_batch_size_sum")
    errors = []

    def call(a):
        try:
            stub.Score(scoring_pb2.ScoreRequest(article=a), timeout=10)
        except grpc.RpcError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=call, args=(a,)) for a in arts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    batches = _metric(service.metrics_port, "distillery_inference_batch_size_count") - before_n
    articles = _metric(service.metrics_port, "distillery_inference_batch_size_sum") - before_sum
    assert articles == 40
    assert batches < 40, f"{batches} forward passes for 40 concurrent requests: nothing was merged"


def test_deadline_is_honoured(stub, world):
    records = world[2]
    arts = _articles(records, 200) * 10
    with pytest.raises(grpc.RpcError) as err:
        stub.ScoreBatch(scoring_pb2.ScoreBatchRequest(articles=arts), timeout=0.005)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert stub.Score(scoring_pb2.ScoreRequest(article=arts[0]), timeout=10)


def test_backpressure_answers_resource_exhausted(service, stub, world):
    records = world[2]
    arts = _articles(records, 200) * 3  # 600 > --max-queue 512
    with pytest.raises(grpc.RpcError) as err:
        stub.ScoreBatch(scoring_pb2.ScoreBatchRequest(articles=arts), timeout=20)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "limit 512" in err.value.details()
    assert _metric(service.metrics_port, "distillery_inference_rejected_total", 'reason="overloaded"') >= 600
    assert stub.Score(scoring_pb2.ScoreRequest(article=arts[0]), timeout=10)


def test_hot_reload_under_load_has_zero_failures(stub, world, spec):
    registry, info, records, _ = world
    arts = _articles(records, 30)
    errors, versions, stop = [], [], threading.Event()

    def load():
        i = 0
        while not stop.is_set():
            try:
                r = stub.Score(scoring_pb2.ScoreRequest(article=arts[i % len(arts)]), timeout=10)
                versions.append(r.results[0].model_version)
            except grpc.RpcError as exc:
                errors.append(exc)
            i += 1

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)
        new, _ = _train_lexical(spec, registry, seed=1, promote=True)
        deadline = time.monotonic() + 20
        while new.version_id not in versions[-20:] and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors[:3]
    assert new.version_id in versions
    assert versions[-1] == new.version_id
    assert versions.count(info.version_id) > 0
