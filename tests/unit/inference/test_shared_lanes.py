"""Filters whose models share their expensive part (one encoder, one multi model) share one forward pass;
ensemble members' disagreement marks a result uncertain."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from distillery_services.inference.engine import BatchLimits, ScoringEngine
from distillery_services.inference.models import PRIMARY
from distillery_services.inference.servicer import to_proto

from distillery.filters import FilterCatalog
from distillery.v1 import article_pb2

FILTERS = Path(__file__).resolve().parents[3] / "filters"


@pytest.fixture(scope="module")
def specs():
    catalog = FilterCatalog.load(FILTERS, ["uplifting", "sustainability"])
    return catalog.get("uplifting"), catalog.get("sustainability")


def _articles(n):
    return [article_pb2.Article(id=f"a{i}", title=f"t{i}", text="good " * (i % 5) + "news") for i in range(n)]


def _engine(specs, source):
    engine = ScoringEngine(list(specs), source, BatchLimits(max_wait_s=0.01))
    engine.refresh()
    return engine


def _scores(results):
    return [(r.article_id, r.filter_name, r.model_version, r.calibrated.tolist(), r.overall) for r in results]


def test_filters_on_one_shared_model_run_one_forward_pass_per_batch(specs, kit):
    up, sus = specs
    encoder = kit.CountingEncoder()
    src = kit.DictSource()
    src.promote("uplifting", PRIMARY, kit.SharedKeywordModel(up.dimension_names, encoder, version="m1"))
    src.promote("sustainability", PRIMARY,
                kit.SharedKeywordModel(sus.dimension_names, encoder, version="m1", offset=1.0))
    engine = _engine(specs, src)
    articles = _articles(12)
    both = engine.score(articles, engine.resolve([]))
    assert encoder.passes == [12], "both filters' heads must come from one pass over the 12 articles"
    assert [[r.filter_name for r in per] for per in both] == [["uplifting", "sustainability"]] * 12

    # Each filter's results are exactly what scoring that filter alone gives (its own offset, not the other's).
    for k, spec in enumerate(specs):
        alone_src = kit.DictSource()
        alone_src.promote(spec.name, PRIMARY, kit.SharedKeywordModel(
            spec.dimension_names, kit.CountingEncoder(), version="m1", offset=float(k)))
        alone = _engine([spec], alone_src)
        expected = [per[0] for per in alone.score(articles, alone.resolve([]))]
        assert _scores(expected) == _scores([per[k] for per in both])
        alone.close()

    # Asking for one filter of the group runs the pass for that filter only.
    engine.score(articles[:3], engine.resolve([("sustainability", 0)]))
    assert encoder.passes == [12, 3]
    engine.close()


def test_a_failing_head_fails_only_its_own_filter(specs, kit):
    up, sus = specs
    encoder = kit.CountingEncoder()
    broken = kit.SharedKeywordModel(sus.dimension_names, encoder)

    def finish(shared, rows):
        raise RuntimeError("head exploded")

    broken.finish = finish
    src = kit.DictSource()
    src.promote("uplifting", PRIMARY, kit.SharedKeywordModel(up.dimension_names, encoder))
    src.promote("sustainability", PRIMARY, broken)
    engine = _engine(specs, src)
    with pytest.raises(RuntimeError, match="head exploded"):
        engine.score(_articles(2), engine.resolve([]))
    # One item per article carries both filters through one batch: uplifting's rows still arrive.
    slots = engine.resolve([])
    pending = engine._submit([(slot, PRIMARY, range(2)) for slot in slots], ["good", "good good"], None)
    rows = engine._wait(pending[("uplifting", PRIMARY)], ("uplifting", PRIMARY), None)
    assert [r.calibrated[0] for r in rows] == [2.0, 4.0]
    with pytest.raises(RuntimeError, match="head exploded"):
        engine._wait(pending[("sustainability", PRIMARY)], ("sustainability", PRIMARY), None)
    assert encoder.passes == [2, 2]
    engine.close()


def test_models_sharing_nothing_keep_a_batcher_each(specs, kit):
    up, sus = specs
    a, b = kit.KeywordModel(up.dimension_names), kit.KeywordModel(sus.dimension_names)
    src = kit.DictSource()
    src.promote("uplifting", PRIMARY, a)
    src.promote("sustainability", PRIMARY, b)
    engine = _engine(specs, src)
    engine.score(_articles(4), engine.resolve([]))
    assert a.batches == [4] and b.batches == [4]
    engine.close()


def test_hot_reload_of_one_filter_of_a_shared_group_fails_no_request(specs, kit):
    up, sus = specs
    first, second = kit.CountingEncoder(delay=0.002), kit.CountingEncoder(delay=0.002)
    src = kit.DictSource()
    src.promote("uplifting", PRIMARY, kit.SharedKeywordModel(up.dimension_names, first, version="m1"))
    src.promote("sustainability", PRIMARY, kit.SharedKeywordModel(sus.dimension_names, first, version="m1"))
    engine = _engine(specs, src)
    errors, seen, stop = [], set(), threading.Event()

    def load(filters):
        articles = _articles(3)
        while not stop.is_set():
            try:
                for per in engine.score(articles, engine.resolve(filters)):
                    seen.update((r.filter_name, r.model_version) for r in per)
            except Exception as exc:  # noqa: BLE001 - every failure is the test's business
                errors.append(exc)

    threads = [threading.Thread(target=load, args=(f,))
               for f in ([], [("sustainability", 0)], [("uplifting", 0)], [])]
    for t in threads:
        t.start()
    try:
        time.sleep(0.2)
        # sustainability leaves the group for a model on another encoder (the group splits) ...
        src.promote("sustainability", PRIMARY, kit.SharedKeywordModel(sus.dimension_names, second, version="m2"))
        assert engine.refresh() == [("sustainability", PRIMARY, "m2")]
        time.sleep(0.2)
        # ... and comes back with a new version on the first encoder (they regroup; the second lane retires).
        src.promote("sustainability", PRIMARY, kit.SharedKeywordModel(sus.dimension_names, first, version="m3"))
        assert engine.refresh() == [("sustainability", PRIMARY, "m3")]
        time.sleep(0.2)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors[:3]
    assert {("sustainability", v) for v in ("m1", "m2", "m3")} <= seen
    assert ("uplifting", "m1") in seen
    assert len(engine._lanes) == 1, "the split-off lane must be retired once nothing is served in it"
    before = len(first.passes), len(second.passes)
    engine.score(_articles(5), engine.resolve([]))
    assert (len(first.passes) - before[0], len(second.passes) - before[1]) == (1, 0)
    engine.close()


def test_request_racing_a_lane_retirement_is_resubmitted(specs, kit):
    spec = specs[1]
    first, second = kit.CountingEncoder(), kit.CountingEncoder()
    src = kit.DictSource()
    src.promote(spec.name, PRIMARY, kit.SharedKeywordModel(spec.dimension_names, first, version="m1"))
    engine = _engine([spec], src)
    (old_lane,) = engine._lanes.values()
    submit = old_lane.batcher.submit

    def reload_then_submit(*args, **kwargs):
        # The request read the m1 model and its lane; a reload moves the filter and retires that lane now.
        src.promote(spec.name, PRIMARY, kit.SharedKeywordModel(spec.dimension_names, second, version="m2"))
        assert engine.refresh() == [(spec.name, PRIMARY, "m2")]
        return submit(*args, **kwargs)

    old_lane.batcher.submit = reload_then_submit
    (result,), = engine.score(_articles(1), engine.resolve([]))
    assert result.model_version == "m2"
    assert (first.passes, second.passes) == ([], [1])
    engine.close()


def _with_spread_limit(spec, limit):
    return spec.model_copy(update={"student": spec.student.model_copy(update={"uncertain_member_spread": limit})})


@pytest.mark.parametrize(("limit", "spread", "uncertain"), [(1.0, 1.5, True), (1.0, 0.5, False), (None, 9.0, False)])
def test_ensemble_member_spread_marks_uncertain(specs, kit, limit, spread, uncertain):
    spec = _with_spread_limit(specs[0], limit)
    src = kit.DictSource()
    src.promote(spec.name, PRIMARY, kit.KeywordModel(spec.dimension_names, kind="ensemble", width=0.5, spread=spread))
    engine = _engine([spec], src)
    (result,), = engine.score(_articles(1), engine.resolve([]))
    assert result.uncertain is uncertain
    assert result.spread.tolist() == [spread] * len(spec.dimensions)
    assert [d.spread for d in to_proto(result).dimensions] == [spread] * len(spec.dimensions)
    engine.close()


def test_single_model_reports_zero_spread(specs, kit):
    spec = _with_spread_limit(specs[0], 0.1)
    src = kit.DictSource()
    src.promote(spec.name, PRIMARY, kit.KeywordModel(spec.dimension_names, width=0.5))
    engine = _engine([spec], src)
    (result,), = engine.score(_articles(1), engine.resolve([]))
    assert result.spread is None and not result.uncertain
    assert all(d.spread == 0.0 for d in to_proto(result).dimensions)
    engine.close()


def test_registry_ensemble_serves_its_members_spread(specs, tmp_path):
    from distillery_services.inference.registry_source import RegistrySource

    from distillery.calibration import Calibration
    from distillery.registry import ModelRegistry
    from distillery.students import compose_text, make_student
    from distillery.synthetic import generate, scores_of

    spec = _with_spread_limit(specs[0], 0.05)
    records = list(generate(spec, 120, seed=3))
    texts = [compose_text(r["title"], r.get("text") or r.get("content", "")) for r in records]
    y = np.array([[scores_of(r)[d] for d in spec.dimension_names] for r in records])
    student = make_student("ensemble", spec.dimension_names, filter=spec.name, k=3)
    student.fit(texts[:100], y[:100])
    registry = ModelRegistry(tmp_path / "registry")
    info = registry.register(spec, student, Calibration.identity(spec.dimension_names, 1.0))
    registry.promote(spec.name, info.version_id)
    engine = ScoringEngine([spec], RegistrySource(tmp_path / "registry"), BatchLimits(max_wait_s=0.005))
    engine.refresh()
    articles = [article_pb2.Article(id=f"r{i}", title=r["title"], text=r.get("text") or r.get("content", ""))
                for i, r in enumerate(records[100:])]
    results = [per[0] for per in engine.score(articles, engine.resolve([]))]
    _, expected = student.predict_with_spread(texts[100:])
    np.testing.assert_allclose(np.stack([r.spread for r in results]), expected, rtol=1e-9)
    assert [r.uncertain for r in results] == [bool(np.any(s > 0.05)) for s in expected]
    assert any(r.uncertain for r in results)
    engine.close()


class _FakeEncoder:
    """An encoder backend stand-in: deterministic 8-d 'embeddings', counting its passes."""

    head_tokens, tail_tokens, encoder = 48, 16, "fake"
    last_preprocess_seconds = last_inference_seconds = 0.0

    def __init__(self):
        self.passes = []

    def embed(self, texts):
        self.passes.append(len(texts))
        return np.stack([np.random.default_rng(len(t)).normal(size=8) for t in texts]).astype(np.float32)

    def cost(self, text):
        return 10


def test_views_of_one_multi_model_share_one_encoder_and_one_trunk_pass(specs):
    """Two filters' registry versions of one multi student (separately loaded copies, equal weights)."""
    import types

    from distillery_services.inference.models import student_text
    from distillery_services.inference.registry_source import RegistryModel

    from distillery.calibration import Calibration
    from distillery.students import make_student
    from distillery.students.multi import qualified

    columns = [qualified(s.ref, d) for s in specs for d in s.dimension_names]
    original = make_student("multi", columns, hidden=16)
    original._net = original._build(8).eval()
    trunk_passes = []

    def loaded_view(spec, version):
        copy = make_student("multi", columns, hidden=16)  # what loading the version from the registry gives
        copy._net = copy._build(8).eval()
        copy._net.load_state_dict(original._net.state_dict())
        predict = copy.predict_embeddings
        copy.predict_embeddings = lambda X: trunk_passes.append(len(X)) or predict(X)
        info = types.SimpleNamespace(version_id=version, kind="multi", dimensions=spec.dimension_names)
        return types.SimpleNamespace(info=info, student=copy.view(spec.ref), reference=None,
                                     calibration=Calibration.identity(spec.dimension_names, 1.0))

    class Source:
        def __init__(self, encoder):
            self.encoder = encoder

        def promoted(self, spec):
            from distillery_services.inference.models import ModelRef

            return {PRIMARY: ModelRef(spec.name, PRIMARY, f"{spec.name}-m1", "multi")}

        def load(self, spec, ref):
            return RegistryModel(loaded_view(spec, ref.version), self.encoder)

    encoder = _FakeEncoder()
    engine = _engine(specs, Source(encoder))
    articles = _articles(6)
    both = engine.score(articles, engine.resolve([]))
    assert encoder.passes == [6] and trunk_passes == [6]
    emb = _FakeEncoder().embed([student_text(a.title, a.text) for a in articles])
    full = original.predict_embeddings(emb)
    for k, spec in enumerate(specs):
        got = np.stack([per[k].raw for per in both])
        np.testing.assert_allclose(got, full[:, original.columns(spec.ref)], rtol=1e-6)
    engine.close()


def test_a_served_stack_embeds_its_probe_member_through_the_encoder_backend(specs, tmp_path):
    from distillery_services.inference.registry_source import BackendEncoder, RegistrySource

    from distillery.calibration import Calibration
    from distillery.registry import ModelRegistry
    from distillery.students import compose_text, make_student
    from distillery.synthetic import generate, scores_of

    spec = specs[0]
    records = list(generate(spec, 90, seed=5))
    texts = [compose_text(r["title"], r.get("text") or r.get("content", "")) for r in records]
    y = np.array([[scores_of(r)[d] for d in spec.dimension_names] for r in records])
    members = [{"kind": "lexical", "params": {"char_ngram_max": 0}},
               {"kind": "probe", "params": {"head": "ridge", "head_tokens": 48, "tail_tokens": 16,
                                                 # fp32 on both sides: "auto" trains on bf16 OpenVINO where the
                                                 # CPU has it, a 0.004-0.013 drift from the fp32 backend served here
                                                 "runtime": "torch"}}]
    student = make_student("stack", spec.dimension_names, filter=spec.name, members=members, folds=2,
                           cache_dir=tmp_path / "emb").fit(texts[:70], y[:70])
    registry = ModelRegistry(tmp_path / "registry")
    info = registry.register(spec, student, Calibration.identity(spec.dimension_names, 1.0))
    registry.promote(spec.name, info.version_id)
    source = RegistrySource(tmp_path / "registry", dtype="float32")
    served = source.load(spec, source.promoted(spec)["primary"])
    probe = served.loaded.student.members[1]
    assert isinstance(probe._encoder, BackendEncoder)  # no training-time encoder with an unbounded cache
    prediction = served.predict(texts[70:])
    np.testing.assert_allclose(prediction.raw, student.predict(texts[70:]), atol=1e-3)
    assert prediction.spread is not None and prediction.spread.shape == (20, len(spec.dimension_names))
