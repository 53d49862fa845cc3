"""The label store: idempotent upsert, reads, import/export, on SQLite and on the real PostgreSQL."""

from __future__ import annotations

import json
import uuid

import pytest

from distillery.store import BilledCall, LabelStore
from distillery.v1 import article_pb2, common_pb2, oracle_pb2

PG_BASE = "postgresql://postgres@127.0.0.1:5432/test"


def _article(i: int, synthetic: bool = False) -> article_pb2.Article:
    a = article_pb2.Article(id=f"a{i:03d}", title=f"Title {i}", text=f"Body of article {i}.", url=f"https://x/{i}",
                            source="src", language="en")
    if synthetic:
        a.metadata["synthetic"] = "true"
    return a


def _label(article_id: str, model: str = "m1", score: float = 5.0, version: int = 1,
           prompt_hash: str = "abcdef123456", cost: float = 0.001) -> oracle_pb2.OracleLabel:
    return oracle_pb2.OracleLabel(
        article_id=article_id, filter=common_pb2.FilterRef(name="uplifting", version=version),
        prompt_hash=prompt_hash, oracle_model=model, provider="openai",
        dimensions=[oracle_pb2.DimensionLabel(name="agency", score=score, evidence="quote"),
                    oracle_pb2.DimensionLabel(name="progress", score=score / 2, evidence="No evidence in article")],
        usage=common_pb2.Usage(input_tokens=100, output_tokens=20, cost_usd=cost), temperature=0.0,
        latency_seconds=0.2, reason=oracle_pb2.LABEL_REASON_AUDIT)


def _pg_url(schema: str) -> str:
    return f"{PG_BASE}?options=-csearch_path%3D{schema}"


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    if request.param == "sqlite":
        s = LabelStore.open(tmp_path / "labels.sqlite")
        yield s
        s.close()
        return
    psycopg = pytest.importorskip("psycopg")
    schema = f"t_labels_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg.connect(PG_BASE, autocommit=True)
    except psycopg.OperationalError as exc:  # pragma: no cover - PostgreSQL runs on CI and here
        pytest.skip(f"PostgreSQL not reachable: {exc}")
    admin.execute(f"CREATE SCHEMA {schema}")
    s = LabelStore.open(_pg_url(schema))
    try:
        yield s
    finally:
        s.close()
        admin.execute(f"DROP SCHEMA {schema} CASCADE")
        admin.close()


def test_put_get_roundtrip(store):
    a = _article(1)
    store.put(a, _label(a.id), raw_response='{"agency": 1}', oracle="gpt")
    got = store.get(a.id, "uplifting", 1, "abcdef123456", "m1")
    assert got is not None
    assert {d.name: d.score for d in got.dimensions} == {"agency": 5.0, "progress": 2.5}
    assert got.usage.cost_usd == pytest.approx(0.001)
    assert got.reason == oracle_pb2.LABEL_REASON_AUDIT
    assert store.raw_response(a.id, "uplifting", 1, "abcdef123456", "m1") == '{"agency": 1}'
    assert store.find(a.id, "uplifting", 1, "abcdef123456", "gpt").oracle_model == "m1"
    assert store.get(a.id, "uplifting", 1, "abcdef123456", "other") is None


def test_upsert_is_idempotent_by_key(store):
    a = _article(1)
    store.put(a, _label(a.id, score=3.0))
    store.put(a, _label(a.id, score=7.0))
    assert store.count("uplifting") == 1
    assert store.get(a.id, "uplifting", 1, "abcdef123456", "m1").dimensions[0].score == 7.0
    # A different model, prompt or version is a different label.
    store.put(a, _label(a.id, model="m2"))
    store.put(a, _label(a.id, prompt_hash="0123456789ab"))
    store.put(a, _label(a.id, version=2))
    assert store.count("uplifting") == 4
    assert store.count("uplifting", filter_version=1, oracle_model="m1") == 2
    assert store.count("uplifting", oracle_model="m2") == 1


def test_iter_labelled_pages_and_filters(store):
    for i in range(25):
        store.put(_article(i, synthetic=i % 5 == 0), _label(f"a{i:03d}", score=i % 10))
    items = list(store.iter_labelled("uplifting", 1, "m1", batch_size=7))
    assert [x.id for x in items] == [f"a{i:03d}" for i in range(25)]
    assert items[3].scores == {"agency": 3.0, "progress": 1.5}
    assert items[0].synthetic and not items[1].synthetic
    assert items[0].to_article().metadata["synthetic"] == "true"
    assert store.count("uplifting", include_synthetic=False) == 20
    assert len(list(store.iter_labelled("uplifting", include_synthetic=False))) == 20
    assert list(store.iter_labelled("nothing")) == []


def _call(article_id, cost, outcome, job_id="j1"):
    return BilledCall(filter_name="uplifting", filter_version=1, oracle="gpt", provider="openai",
                      oracle_model="gpt-4o-mini", outcome=outcome, input_tokens=100, cached_input_tokens=0,
                      output_tokens=10, cost_usd=cost, article_id=article_id, job_id=job_id)


def test_costs_come_from_the_ledger_of_every_billed_call(store):
    store.put(_article(1), _label("a001", cost=0.5), job_id="j1")
    call = _call("a001", 0.5, "labelled")
    store.record_call(call)
    store.record_call(call)  # recorded twice (a retried write): counted once
    store.record_call(_call("a002", 0.125, "invalid"))  # answered, unusable, dead-lettered: still paid
    store.record_call(_call("a002", 0.125, "invalid", job_id="j2"))
    rows = store.costs("uplifting")
    assert len(rows) == 1 and rows[0].labels == 1 and rows[0].calls == 3
    assert rows[0].cost_usd == pytest.approx(0.75) and rows[0].input_tokens == 300
    assert store.spent(job_id="j1") == pytest.approx(0.625)
    assert sorted(c["outcome"] for c in store.calls(job_id="j1")) == ["invalid", "labelled"]
    with pytest.raises(ValueError, match="outcome"):
        store.record_call(_call("a003", 0.1, "maybe"))


def test_a_store_from_before_the_ledger_keeps_its_spend(tmp_path):
    path = tmp_path / "old.sqlite"
    with LabelStore.open(path) as old:
        old.put(_article(1), _label("a001", cost=0.5), job_id="j1")
        old.put(_article(2), _label("a002", cost=0.25), job_id="j2")
        old._transaction([("DELETE FROM oracle_calls", [])])  # as written by a version without the ledger
    with LabelStore.open(path) as store:
        rows = store.costs("uplifting")
        assert len(rows) == 1 and rows[0].labels == 2 and rows[0].cost_usd == pytest.approx(0.75)
        assert store.spent(job_id="j1") == pytest.approx(0.5)
    with LabelStore.open(path) as store:  # migrated once, not again
        assert store.spent() == pytest.approx(0.75)


def test_costs_and_dead_letters(store):
    store.put_dead_letter(_article(3), "uplifting", 1, "gpt", "DATA_LOSS", "missing dimension agency", "{}", 3)
    assert [d["article_id"] for d in store.dead_letters("uplifting")] == ["a003"]
    store.clear_dead_letter("a003", "uplifting", 1, "gpt")
    assert store.dead_letters() == []
    store.put_dead_letter(_article(4), "uplifting", 1, "gpt", "UNAVAILABLE", "HTTP 500", "", 6)
    store.put(_article(4), _label("a004"), oracle="gpt")  # labelled on a later run: no longer dead
    assert store.dead_letters() == []


def test_put_rejects_incomplete_labels(store):
    with pytest.raises(ValueError, match="version"):
        store.put(_article(1), _label("a001", version=0))
    with pytest.raises(ValueError, match="not 'a001'"):
        store.put(_article(1), _label("zzz"))


def test_import_origin_shape_and_export(store, tmp_path):
    records = [
        {"id": "r1", "title": "T1", "text": "Text one", "url": "https://u/1", "source": "s", "language": "en",
         "published_date": "2025-10-19T17:25:28", "dimension_scores": {"agency": 6.0, "progress": 11.0},
         "dimension_evidence": None, "oracle": "claude", "oracle_model_resolved": "claude-3-5-sonnet-20241022",
         "analyzed_at": "2025-10-25T19:58:28Z"},
        {"id": "r2", "title": "T2", "text": "Text two", "dimension_scores": None},  # skipped: no scores
        {"id": "r3", "title": "T3", "text": "Text three", "dimension_scores": {"agency": 2, "progress": 3}},
    ]
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    assert store.import_jsonl(src, "uplifting/v1", oracle_model="gemini-2.0-flash") == 2
    items = {x.id: x for x in store.iter_labelled("uplifting", 1, "gemini-2.0-flash")}
    assert set(items) == {"r1", "r3"}
    assert items["r1"].scores == {"agency": 6.0, "progress": 10.0}  # clamped to the scale
    assert items["r1"].published_at == "2025-10-19T17:25:28"
    out = tmp_path / "out.jsonl"
    assert store.export_jsonl(out, "uplifting/v1") == 2
    exported = [json.loads(line) for line in out.read_text().splitlines()]
    assert exported[0]["dimension_scores"] == {"agency": 6.0, "progress": 10.0}
    # The export re-imports into another store unchanged.
    other = LabelStore.open(tmp_path / "other.sqlite")
    assert other.import_jsonl(out, "uplifting/v1") == 2
    assert other.count("uplifting", oracle_model="gemini-2.0-flash") == 2
    other.close()
    assert store.export_parquet(tmp_path / "out.parquet", "uplifting") == 2


def test_bad_urls_and_refs(tmp_path):
    with pytest.raises(ValueError, match="unsupported"):
        LabelStore.open("mysql://x/y")
    store = LabelStore.open(f"sqlite:///{tmp_path}/s.sqlite")
    with pytest.raises(ValueError, match="name/vN"):
        store.import_jsonl(tmp_path / "x.jsonl", "uplifting")
    store.close()
