"""Dataset building: validation, consensus, duplicates, grouped stratified splits, content hash."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from distillery_services.trainer.datasets import Dataset, DatasetError, LabelRecord, build_dataset
from helpers import DIMS, write_filter

from distillery.filters import load_filter
from distillery.testing.labelled import generate


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    return load_filter(write_filter(tmp_path_factory.mktemp("f")) / "tiny" / "v1")


def _records(n=300, seed=0, **kw):
    return [LabelRecord(r["id"], r["title"], r["text"], r["url"], r["dimension_scores"], "oracle-a")
            for r in generate(DIMS, n, seed=seed, **kw)]


def test_split_is_80_10_10_grouped_and_reproducible(spec):
    recs = _records(400, duplicate_urls=40)
    ds = build_dataset(spec, recs, seed=3)
    sizes = {s: len(ds.split(s)) for s in ("train", "val", "test")}
    assert sum(sizes.values()) == len(ds.examples)
    assert 0.74 < sizes["train"] / len(ds.examples) < 0.86
    assert 0.06 < sizes["test"] / len(ds.examples) < 0.14
    # same-URL articles never cross splits
    by_url = {}
    for e in ds.examples:
        by_url.setdefault(e.url, set()).add(e.split)
    assert all(len(s) == 1 for s in by_url.values())
    assert any(len([e for e in ds.examples if e.url == u]) > 1 for u in by_url)
    again = build_dataset(spec, list(reversed(recs)), seed=3)
    assert again.hash == ds.hash
    assert build_dataset(spec, recs, seed=4).hash != ds.hash


def test_validation_drops_bad_labels_and_merges_oracles(spec):
    recs = _records(60)
    recs.append(LabelRecord("m1", "t", "some text here", "", {"climate": 5}, "x"))  # missing dims
    recs.append(LabelRecord("m2", "t", "other text here", "", {d: 12 for d in DIMS}, "x"))  # out of range
    recs.append(LabelRecord("m3", "t", "", "", {d: 1 for d in DIMS}, "x"))  # empty text
    second = recs[0]
    recs.append(LabelRecord(second.id, second.title, second.text, second.url,
                            {d: min(10.0, v + 2) for d, v in second.scores.items()}, "oracle-b"))
    copy = recs[1]
    recs.append(LabelRecord("copy-of-1", copy.title, copy.text, "", copy.scores, "oracle-a"))
    ds = build_dataset(spec, recs, seed=0)
    rep = ds.report
    assert rep["dropped"]["missing_dimensions"] == 1 and rep["dropped"]["out_of_range_score"] == 1
    assert rep["dropped"]["empty_text"] == 1 and rep["dropped"]["exact_duplicate"] == 1
    assert rep["dimensions_stats"]["evidence"]["missing"] == 1
    assert rep["multi_oracle_articles"] == 1
    assert rep["label_noise"]["pairs"] == 1 and rep["label_noise"]["mean_abs_diff_all"] > 0
    merged = next(e for e in ds.examples if e.id == second.id)
    assert merged.targets[0] == pytest.approx(min(10.0, (second.scores["climate"] * 2 + 2) / 2), abs=1.01)
    assert set(rep["correlations"]) == set(DIMS)


def test_near_duplicates_are_removed(spec):
    recs = _records(50)
    base = recs[0]
    recs.append(LabelRecord("near", base.title, base.text + " One more sentence at the end.", "",
                            base.scores, "oracle-a"))
    ds = build_dataset(spec, recs, seed=0)
    assert ds.report["dropped"].get("near_duplicate", 0) >= 1
    kept = build_dataset(spec, recs, seed=0, near_duplicate_action="group")
    groups = {e.id: e.group for e in kept.examples}
    assert groups["near"] == groups[base.id]


def test_save_load_round_trip_and_too_few(spec, tmp_path):
    ds = build_dataset(spec, _records(40), seed=0)
    folder = ds.save(tmp_path)
    again = Dataset.load(folder)
    assert again.hash == ds.hash and len(again.examples) == len(ds.examples)
    assert [e.split for e in again.examples] == [e.split for e in ds.examples]
    with pytest.raises(DatasetError, match="only 3 usable"):
        build_dataset(spec, _records(3), seed=0)
