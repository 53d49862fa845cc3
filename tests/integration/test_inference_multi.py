"""The inference service over real sockets serving one ``multi`` model's views for two filters and a probe
for a third, all on one encoder and token budget: one forward pass per batch for the three, results equal
to scoring each filter alone, and a hot reload of one filter of the group that fails no request."""

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
from distillery.v1 import common_pb2, scoring_pb2, scoring_pb2_grpc

pytestmark = pytest.mark.integration

FILTERS = Path(__file__).resolve().parents[2] / "filters"
MULTI = ("uplifting", "sustainability")  # one multi model, a view per filter
PROBE = "investment_risk"  # a probe on the same encoder and token budget
BUDGET = {"head_tokens": 48, "tail_tokens": 16}


def _texts_and_scores(spec, n, seed):
    from distillery.students import compose_text
    from distillery.synthetic import generate, scores_of

    records = list(generate(spec, n, seed=seed))
    texts = [compose_text(r["title"], r.get("text") or r.get("content", "")) for r in records]
    return records, texts, np.array([[scores_of(r)[d] for d in spec.dimension_names] for r in records])


def _register_multi(registry, specs, seed, promote=MULTI):
    """Train one multi student on both filters' labels; register and promote a view for each of ``promote``.

    The data is the same for every ``seed`` (its embeddings are cached in this process); the weights differ."""
    from distillery.calibration import Calibration
    from distillery.students import make_student
    from distillery.students.multi import qualified

    columns = [qualified(s.ref, d) for s in specs for d in s.dimension_names]
    texts, blocks = [], []
    for k, spec in enumerate(specs):
        _, t, y = _texts_and_scores(spec, 120, seed=k)
        texts += t
        block = np.full((len(t), len(columns)), np.nan)  # each article labelled for its own filter only
        first = columns.index(qualified(spec.ref, spec.dimension_names[0]))
        block[:, first:first + y.shape[1]] = y
        blocks.append(block)
    student = make_student("multi", columns, epochs=25, hidden=64, seed=seed, **BUDGET)
    student.fit(texts, np.vstack(blocks))
    infos = {}
    for spec in specs:
        _, t, y = _texts_and_scores(spec, 40, seed=100)
        view = student.view(spec.ref)
        info = registry.register(spec, view, Calibration.fit(view.predict(t), y, spec.dimension_names))
        if spec.name in promote:
            registry.promote(spec.name, info.version_id)
        infos[spec.name] = info
    return infos


@pytest.fixture(scope="module")
def catalog():
    return FilterCatalog.load(FILTERS, [*MULTI, PROBE])


@pytest.fixture(scope="module")
def world(tmp_path_factory, catalog):
    from distillery.calibration import Calibration
    from distillery.registry import ModelRegistry
    from distillery.students import make_student

    root = tmp_path_factory.mktemp("inference-multi")
    registry = ModelRegistry(root / "registry")
    infos = _register_multi(registry, [catalog.get(n) for n in MULTI], seed=0)
    spec = catalog.get(PROBE)
    _, texts, y = _texts_and_scores(spec, 150, seed=5)
    probe = make_student("probe", spec.dimension_names, head="ridge", **BUDGET).fit(texts[:110], y[:110])
    info = registry.register(spec, probe, Calibration.fit(probe.predict(texts[110:]), y[110:], spec.dimension_names))
    registry.promote(PROBE, info.version_id)
    infos[PROBE] = info
    records, _, _ = _texts_and_scores(catalog.get(MULTI[0]), 30, seed=7)
    return registry, infos, [from_record(r) for r in records], root


@pytest.fixture(scope="module")
def service(world):
    root = world[3]
    args = ["--filters-dir", str(FILTERS), "--state-dir", str(root), "--max-wait-ms", "20",
            "--reload-poll-seconds", "0.2", "--log-level", "WARNING"]
    for name in (*MULTI, PROBE):
        args += ["--filter", name]
    svc = start_service("inference", args=args, log_dir=root / "logs")
    yield svc
    svc.stop()


@pytest.fixture(scope="module")
def stub(service):
    channel = service.channel()
    yield scoring_pb2_grpc.ScoringServiceStub(channel)
    channel.close()


def _metric(port: int, name: str, labels: str = "") -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    total = 0.0
    for line in text.splitlines():
        m = re.match(rf"{re.escape(name)}(\{{[^}}]*\}})? ([0-9.e+-]+)$", line)
        if m and (not labels or labels in (m.group(1) or "")):
            total += float(m.group(2))
    return total


def _refs(*names):
    return [common_pb2.FilterRef(name=n) for n in names]


def _by_filter(response):
    return {(r.article_id, r.filter.name): r for resp in response.responses for r in resp.results}


def test_filters_sharing_an_encoder_run_one_forward_pass_per_batch(service, stub, world):
    arts = world[2][:20]
    port = service.metrics_port
    passes = _metric(port, "distillery_inference_forward_passes_total")
    batches = {n: _metric(port, "distillery_inference_batch_size_count", f'filter="{n}"') for n in (*MULTI, PROBE)}
    reply = stub.ScoreBatch(scoring_pb2.ScoreBatchRequest(articles=arts, filters=_refs(*MULTI, PROBE)), timeout=60)
    assert [len(r.results) for r in reply.responses] == [3] * len(arts)
    assert _metric(port, "distillery_inference_forward_passes_total") - passes == 1, \
        "20 articles for three filters on one encoder must be one forward pass"
    for name, before in batches.items():  # ... that served every filter's 20 articles
        assert _metric(port, "distillery_inference_batch_size_count", f'filter="{name}"') - before == 1
    assert _metric(port, "distillery_inference_forward_passes_total", 'batcher="encoder:torch:') >= 1


def test_each_filter_scores_as_if_served_alone(stub, world):
    _registry, infos, arts, _ = world
    together = _by_filter(stub.ScoreBatch(scoring_pb2.ScoreBatchRequest(articles=arts, filters=_refs(*MULTI, PROBE)),
                                          timeout=60))
    for name in (*MULTI, PROBE):
        alone = _by_filter(stub.ScoreBatch(scoring_pb2.ScoreBatchRequest(articles=arts, filters=_refs(name)),
                                           timeout=60))
        assert len(alone) == len(arts)
        for key, result in alone.items():
            shared = together[key]
            assert shared.model_version == result.model_version == infos[name].version_id
            got = [(d.raw, d.calibrated, d.lower, d.upper) for d in shared.dimensions]
            want = [(d.raw, d.calibrated, d.lower, d.upper) for d in result.dimensions]
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
            assert shared.overall == pytest.approx(result.overall, abs=1e-5)
    # The two views answer with their own heads and calibration: the filters' scores differ.
    up = [d.calibrated for d in together[(arts[0].id, MULTI[0])].dimensions]
    sus = [d.calibrated for d in together[(arts[0].id, MULTI[1])].dimensions]
    assert up != sus[: len(up)]


def test_hot_reload_of_one_filter_of_the_group_fails_no_request(service, stub, world, catalog):
    registry, infos, arts, _ = world
    errors, versions, stop = [], [], threading.Event()

    def load(filters):
        i = 0
        while not stop.is_set():
            try:
                batch = [arts[(i + k) % len(arts)] for k in range(3)]
                reply = stub.ScoreBatch(scoring_pb2.ScoreBatchRequest(articles=batch, filters=filters), timeout=30)
                versions.extend((r.filter.name, r.model_version) for resp in reply.responses for r in resp.results)
            except grpc.RpcError as exc:
                errors.append(exc)
            i += 1

    threads = [threading.Thread(target=load, args=(f,))
               for f in (_refs(*MULTI, PROBE), _refs(MULTI[1]), _refs(*MULTI), _refs(MULTI[0], PROBE))]
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)
        # A new multi model; only sustainability's view is promoted: the group splits into two multi models.
        new = _register_multi(registry, [catalog.get(n) for n in MULTI], seed=1, promote=(MULTI[1],))[MULTI[1]]
        deadline = time.monotonic() + 60
        while (MULTI[1], new.version_id) not in versions[-30:] and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors[:3]
    assert (MULTI[1], infos[MULTI[1]].version_id) in versions and (MULTI[1], new.version_id) in versions
    assert {v for n, v in versions if n == MULTI[0]} == {infos[MULTI[0]].version_id}
    # Still one encoder pass per batch for all three filters (two multi trunks on it now).
    passes = _metric(service.metrics_port, "distillery_inference_forward_passes_total")
    reply = stub.ScoreBatch(scoring_pb2.ScoreBatchRequest(articles=arts[:10], filters=_refs(*MULTI, PROBE)),
                            timeout=60)
    assert {r.filter.name: r.model_version for r in reply.responses[0].results} == {
        MULTI[0]: infos[MULTI[0]].version_id, MULTI[1]: new.version_id, PROBE: infos[PROBE].version_id}
    assert _metric(service.metrics_port, "distillery_inference_forward_passes_total") - passes == 1
