import threading
import time
from pathlib import Path

import pytest
from distillery_services.inference.batcher import DeadlineExceededError
from distillery_services.inference.engine import BatchLimits, ScoringEngine
from distillery_services.inference.models import CHEAP, PRIMARY

from distillery.filters import FilterCatalog, UnknownFilterError
from distillery.rpc.errors import PreconditionError, UnavailableError
from distillery.v1 import article_pb2

FILTERS = Path(__file__).resolve().parents[3] / "filters"


@pytest.fixture(scope="module")
def spec():
    return FilterCatalog.load(FILTERS, ["uplifting"]).get("uplifting")


def _article(i, text):
    return article_pb2.Article(id=f"a{i}", title=f"t{i}", text=text)


def _engine(spec, source, **kw):
    engine = ScoringEngine([spec], source, BatchLimits(max_wait_s=0.01, **kw))
    engine.refresh()
    return engine


def test_scores_with_postprocessing(spec, kit):
    DictSource, KeywordModel = kit.DictSource, kit.KeywordModel
    src = DictSource()
    src.promote("uplifting", PRIMARY, KeywordModel(spec.dimension_names, width=1.0))
    engine = _engine(spec, src)
    (res,), = engine.score([_article(1, "good good good news")], engine.resolve([]))
    assert res.stage == "single" and res.model_version == "v1"
    assert res.calibrated.tolist() == [6.0] * len(spec.dimensions)
    assert res.overall == pytest.approx(6.0)
    assert res.tier == "medium"
    assert not res.uncertain
    engine.close()


def test_uncertain_when_interval_wider_than_spec(spec, kit):
    DictSource, KeywordModel = kit.DictSource, kit.KeywordModel
    src = DictSource()
    src.promote("uplifting", PRIMARY, KeywordModel(spec.dimension_names, width=spec.student.uncertain_interval_width + 1))
    engine = _engine(spec, src)
    (res,), = engine.score([_article(1, "good")], engine.resolve([]))
    assert res.uncertain
    engine.close()


def test_cascade_routes_by_cheap_overall(spec, kit):
    DictSource, KeywordModel = kit.DictSource, kit.KeywordModel
    threshold = spec.student.cascade_threshold
    assert threshold is not None
    src = DictSource()
    cheap = KeywordModel(spec.dimension_names, version="cheap1")
    expensive = KeywordModel(spec.dimension_names, version="exp1", kind="probe", offset=0.5)
    src.promote("uplifting", CHEAP, cheap)
    src.promote("uplifting", PRIMARY, expensive)
    engine = _engine(spec, src)
    arts = [_article(0, "nothing here"), _article(1, "good good good good")]  # cheap 0 and 8
    out = engine.score(arts, engine.resolve([("uplifting", 0)]))
    low, high = out[0][0], out[1][0]
    assert low.stage == "cheap" and low.model_version == "cheap1"
    assert high.stage == "expensive" and high.model_version == "exp1"
    assert high.calibrated[0] == pytest.approx(8.5)
    assert expensive.calls == 1 and cheap.calls == 2
    engine.close()


def test_resolve_errors(spec, kit):
    DictSource = kit.DictSource
    src = DictSource()
    engine = _engine(spec, src)
    with pytest.raises(UnavailableError, match="no model is promoted"):
        engine.resolve([])
    with pytest.raises(PreconditionError, match="no model is promoted for filter uplifting/v1"):
        engine.resolve([("uplifting", 0)])
    with pytest.raises(UnknownFilterError, match="unknown filter 'nope'"):
        engine.resolve([("nope", 0)])
    with pytest.raises(UnknownFilterError, match="v7 is not served"):
        engine.resolve([("uplifting", 7)])
    engine.close()


def test_deadline(spec, kit):
    DictSource, KeywordModel = kit.DictSource, kit.KeywordModel
    src = DictSource()
    src.promote("uplifting", PRIMARY, KeywordModel(spec.dimension_names, delay=0.3))
    engine = _engine(spec, src)
    with pytest.raises(DeadlineExceededError):
        engine.score([_article(1, "x")], engine.resolve([]), deadline=time.monotonic() + 0.05)
    engine.close()


def test_hot_swap_keeps_in_flight_requests(spec, kit):
    DictSource, KeywordModel = kit.DictSource, kit.KeywordModel
    src = DictSource()
    src.promote("uplifting", PRIMARY, KeywordModel(spec.dimension_names, version="v1", delay=0.01))
    engine = _engine(spec, src)
    errors, versions, stop = [], set(), threading.Event()

    def load():
        while not stop.is_set():
            try:
                (r,), = engine.score([_article(1, "good")], engine.resolve([]))
                versions.add(r.model_version)
            except Exception as exc:  # noqa: BLE001
                errors.append(exc)

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.2)
    src.promote("uplifting", PRIMARY, KeywordModel(spec.dimension_names, version="v2", delay=0.01))
    assert engine.refresh() == [("uplifting", PRIMARY, "v2")]
    time.sleep(0.2)
    stop.set()
    for t in threads:
        t.join()
    assert not errors
    assert versions == {"v1", "v2"}
    engine.close()


def test_model_with_wrong_dimensions_is_not_installed(spec, kit):
    DictSource, KeywordModel = kit.DictSource, kit.KeywordModel
    src = DictSource()
    src.promote("uplifting", PRIMARY, KeywordModel(["a", "b"]))
    engine = _engine(spec, src)
    assert engine.served() == {"uplifting": {}}
    engine.close()
