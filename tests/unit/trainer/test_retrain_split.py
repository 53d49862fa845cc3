"""Audit labels never train; the frozen test split survives new dataset versions; model comparison."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from distillery_services.trainer.datasets import (
    FrozenSplit,
    LabelRecord,
    build_dataset,
    frozen_test_ids,
    records_from_store,
)
from distillery_services.trainer.request import TrainRequest
from distillery_services.trainer.training import run_training
from helpers import DIMS, write_filter

from distillery.filters import FilterCatalog
from distillery.messages import from_record
from distillery.registry import ModelRegistry
from distillery.store.labels import AUDIT_REASONS, LabelStore
from distillery.testing.labelled import generate
from distillery.v1 import common_pb2, oracle_pb2


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    root = write_filter(tmp_path_factory.mktemp("filters"))
    return FilterCatalog.load(root).get("tiny")


def _records(n: int, seed: int = 3) -> list[LabelRecord]:
    return [LabelRecord(r["id"], r["title"], r["text"], r["url"], r["dimension_scores"], "synthetic")
            for r in generate(DIMS, n, seed=seed)]


def put_labels(store: LabelStore, records: list[dict], reason: int, ref=("tiny", 1)) -> None:
    for r in records:
        label = oracle_pb2.OracleLabel(
            article_id=r["id"], filter=common_pb2.FilterRef(name=ref[0], version=ref[1]), prompt_hash="p1",
            oracle_model="synthetic", provider="synthetic", reason=reason,
            dimensions=[oracle_pb2.DimensionLabel(name=d, score=s) for d, s in r["dimension_scores"].items()])
        store.put(from_record(r), label)


# -- audit labels ----------------------------------------------------------------------------------------
def test_audit_labels_are_excluded_from_counts_reads_and_training(tmp_path, spec):
    url = str(tmp_path / "labels.sqlite")
    records = generate(DIMS, 150, seed=5)
    train, audit = records[:120], records[120:]
    with LabelStore.open(url) as store:
        put_labels(store, train[:60], oracle_pb2.LABEL_REASON_TRAINING)
        put_labels(store, train[60:], oracle_pb2.LABEL_REASON_UNCERTAIN)
        put_labels(store, audit, oracle_pb2.LABEL_REASON_AUDIT)
        assert store.count("tiny", 1) == 150
        assert store.count("tiny", 1, exclude_reasons=AUDIT_REASONS) == 120
        assert store.count("tiny", 1, reasons=AUDIT_REASONS) == 30
        assert store.count("tiny", 1, reasons=["LABEL_REASON_TRAINING", "LABEL_REASON_UNCERTAIN"]) == 120
        ids = {r.id for r in store.iter_labelled("tiny", 1, exclude_reasons=AUDIT_REASONS, batch_size=7)}
        assert ids == {r["id"] for r in train}
        with pytest.raises(ValueError, match="unknown label reason"):
            store.count("tiny", 1, exclude_reasons=["AUDIT"])
        with pytest.raises(TypeError):
            store.count("tiny", 1, reasons="LABEL_REASON_AUDIT")

    assert {r.id for r in records_from_store(url, "tiny", 1)} == {r["id"] for r in train}
    assert len(records_from_store(url, "tiny", 1, include_audit=True)) == 150

    state = tmp_path / "state"
    req = TrainRequest(kind="lexical", label_store_url=url, registry_root=str(state / "registry"),
                       datasets_dir=str(state / "datasets"))
    summary = run_training(spec, req)
    assert summary["metrics"]["n_train"] + summary["metrics"]["n_val"] + summary["metrics"]["n_test"] <= 120
    rows = [json.loads(line) for line in
            (state / "datasets" / "tiny" / "v1" / summary["dataset_hash"] / "examples.jsonl").open()]
    audit_ids = {r["id"] for r in audit}
    assert rows and not audit_ids & {r["id"] for r in rows}

    # an offline experiment may include them explicitly
    req.params = {"include_audit_labels": "true"}
    summary = run_training(spec, req)
    rows = [json.loads(line) for line in
            (state / "datasets" / "tiny" / "v1" / summary["dataset_hash"] / "examples.jsonl").open()]
    assert audit_ids & {r["id"] for r in rows}


# -- the frozen split ----------------------------------------------------------------------------------
def test_frozen_test_split_is_kept_and_only_new_articles_are_split(spec):
    first = build_dataset(spec, _records(200))
    frozen = FrozenSplit.from_dataset(first)
    assert sorted(frozen.test_ids) == sorted(e.id for e in first.split("test")) and frozen.test_ids

    # the same labels again: exactly the first dataset (idempotent)
    again = build_dataset(spec, _records(200), frozen=frozen)
    assert again.hash == first.hash

    more = _records(400)
    second = build_dataset(spec, more, frozen=frozen)
    split_of = {e.id: e.split for e in second.examples}
    old_split = {e.id: e.split for e in first.examples}
    assert all(split_of[i] == s for i, s in old_split.items() if i in split_of)  # old articles keep their split
    assert set(frozen.test_ids) <= {e.id for e in second.split("test")}
    new = [e for e in second.examples if e.id not in old_split]
    counts = {s: sum(1 for e in new if e.split == s) for s in ("train", "val", "test")}
    assert len(new) == 200
    assert 140 <= counts["train"] <= 180 and 10 <= counts["val"] <= 30 and 10 <= counts["test"] <= 30
    assert second.report["frozen_test"]["frozen_test_present"] == len(frozen.test_ids)
    assert set(frozen_test_ids(second, frozen)) == set(frozen.test_ids)

    # deterministic whatever the input order
    shuffled = list(more)
    random.Random(1).shuffle(shuffled)
    assert build_dataset(spec, shuffled, frozen=frozen).hash == second.hash


def test_new_articles_sharing_a_url_or_content_with_frozen_test_join_test(spec):
    base = _records(200)
    first = build_dataset(spec, base)
    frozen = FrozenSplit.from_dataset(first)
    target = next(e for e in first.split("test"))
    gone = max(frozen.test_ids)
    # a new article at a frozen test URL (its twin has been relabelled away) and a near copy of another
    same_url = LabelRecord("new-same-url", "A different title", "Completely different words about a river "
                           "and wetland restoration with many species.", "https://EXAMPLE.org/" +
                           next(e for e in first.examples if e.id == gone).url.split("example.org/")[1] + "/",
                           {d: 5.0 for d in DIMS})
    copy = LabelRecord("aaa-near-copy", target.title, target.text + " extra", target.url + "?utm=x",
                       dict(zip(DIMS, target.targets)))
    records = [r for r in base if r.id != gone] + [same_url, copy] + _records(260)[200:]
    ds = build_dataset(spec, records, frozen=frozen, near_duplicate_action="group")
    split_of = {e.id: e.split for e in ds.examples}
    assert split_of["new-same-url"] == "test"
    assert split_of["aaa-near-copy"] == "test" and split_of[target.id] == "test"
    assert gone not in split_of and ds.report["frozen_test"]["frozen_test_present"] == len(frozen.test_ids) - 1
    assert ds.report["frozen_test"]["joined_test"] >= 2

    # with near duplicates dropped, the frozen article is the one kept (its id sorts after the copy's)
    dropped = build_dataset(spec, records, frozen=frozen, near_duplicate_action="drop")
    ids = {e.id for e in dropped.examples}
    assert target.id in ids and "aaa-near-copy" not in ids


def test_run_training_freezes_the_first_test_split_once(tmp_path, spec):
    labels = tmp_path / "labels.jsonl"
    from distillery.articles import write_jsonl

    write_jsonl(labels, generate(DIMS, 200, seed=9))
    state = tmp_path / "state"
    req = TrainRequest(kind="lexical", labels_path=str(labels), registry_root=str(state / "registry"),
                       datasets_dir=str(state / "datasets"))
    first = run_training(spec, req)
    path = FrozenSplit.path(state / "datasets", "tiny/v1")
    doc = json.loads(path.read_text())
    assert doc["dataset_hash"] == first["dataset_hash"] and doc["test_ids"]
    write_jsonl(labels, generate(DIMS, 300, seed=9))
    second = run_training(spec, req)
    assert json.loads(path.read_text()) == doc  # never rewritten
    from distillery_services.trainer.datasets import Dataset

    ds = Dataset.load(state / "datasets" / "tiny" / "v1" / second["dataset_hash"])
    assert set(doc["test_ids"]) <= {e.id for e in ds.split("test")}
    assert ds.report["frozen_test"]["frozen_from"] == first["dataset_hash"]


def test_promote_if_better_compares_on_the_frozen_split(tmp_path, spec):
    labels = tmp_path / "labels.jsonl"
    from distillery.articles import write_jsonl

    write_jsonl(labels, generate(DIMS, 240, seed=11))
    state = tmp_path / "state"
    common = {"kind": "lexical", "labels_path": str(labels), "registry_root": str(state / "registry"),
              "datasets_dir": str(state / "datasets")}
    first = run_training(spec, TrainRequest(promote_if_better=True, **common))
    assert first["metrics"]["promoted"] == 1.0  # nothing was promoted: the first model is
    reg = ModelRegistry(state / "registry")
    assert reg.promoted("tiny").version_id == first["model_version"]

    # the same training again predicts the same: not strictly better, so the promoted model is kept
    same = run_training(spec, TrainRequest(promote_if_better=True, **common))
    m = same["metrics"]
    assert {"candidate_test_mae", "promoted_test_mae", "promoted", "comparison_n"} <= set(m)
    assert m["candidate_test_mae"] == pytest.approx(m["promoted_test_mae"])
    assert m["promoted"] == 0.0 and reg.promoted("tiny").version_id == first["model_version"]
    assert same["message"].startswith("kept")
    frozen = FrozenSplit.load(state / "datasets", "tiny/v1")
    assert m["comparison_n"] == len(frozen.test_ids)

    # a much weaker candidate (a 3-word vocabulary) is kept out too
    weak = run_training(spec, TrainRequest(promote_if_better=True, **common,
                                           params={"max_features_word": "3", "char_ngram_max": "0"}))
    assert weak["metrics"]["candidate_test_mae"] > weak["metrics"]["promoted_test_mae"]
    assert weak["metrics"]["promoted"] == 0.0

    # with a large tolerance the candidate is promoted even when it is slightly worse
    tolerant = run_training(spec, TrainRequest(promote_if_better=True, promote_tolerance=100.0, **common))
    assert tolerant["metrics"]["promoted"] == 1.0
    assert reg.promoted("tiny").version_id == tolerant["model_version"]
