"""Training one ``multi`` student for several filters: the joint dataset, ``distillery train --student multi``
end to end (views registered under each filter, sharing one model id) and the user errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
from distillery_services.trainer.datasets import (
    FrozenSplit,
    build_dataset,
    build_joint_dataset,
    records_from_jsonl,
)
from helpers import A_DIMS, B_DIMS, write_two_filters

from distillery.articles import read_jsonl, write_jsonl
from distillery.cli.main import app
from distillery.filters import FilterCatalog
from distillery.registry import ModelRegistry


def test_joint_dataset_splits_the_union_once_and_keeps_frozen_tests(tmp_path):
    filters, a, b = write_two_filters(tmp_path)
    # a near-duplicate of one of a's articles, labelled (under another id) for b only
    a_rec = next(iter(read_jsonl(a)))
    b_recs = list(read_jsonl(b))
    write_jsonl(b, [*b_recs, {**a_rec, "id": "copy-of-" + a_rec["id"],
                              "dimension_scores": {"community": 3.0, "profit": 4.0}}])
    catalog = FilterCatalog.load(filters)
    specs = [catalog.resolve("a/v1"), catalog.resolve("b/v1")]
    # a's first dataset froze its test split before the joint run
    single = build_dataset(specs[0], records_from_jsonl(a), seed=3)
    frozen_a = FrozenSplit.from_dataset(single)

    joint = build_joint_dataset(specs, {"a/v1": records_from_jsonl(a), "b/v1": records_from_jsonl(b)}, seed=0,
                                frozen={"a/v1": frozen_a, "b/v1": None})
    assert joint.columns == [f"a/v1:{d}" for d in A_DIMS] + [f"b/v1:{d}" for d in B_DIMS]
    split_of = {e.id: e.split for e in joint.examples}
    assert len(split_of) == len(joint.examples)  # one row per article
    # the per-filter datasets are the union's rows labelled for that filter, with the union's split
    for ref, ds in joint.datasets.items():
        assert ds.filter_ref == ref and ds.hash and ds.report["joint"]["dataset_hash"] == joint.hash
        assert all(split_of[e.id] == e.split for e in ds.examples)
        assert not any(np.isnan(e.targets).any() for e in ds.examples)
    both = [e for e in joint.examples if not np.isnan(e.targets).any()]
    assert len(both) >= 90  # articles labelled for both filters are one row, targets for all four columns
    # the duplicate pair is one row holding a's labels and the copy's labels for b
    pair = [e for e in joint.examples if e.id in (a_rec["id"], "copy-of-" + a_rec["id"])]
    assert len(pair) == 1 and pair[0].targets == [a_rec["dimension_scores"][d] for d in A_DIMS] + [3.0, 4.0]
    # a's frozen test articles stay test (for every filter, since the rows are shared)
    assert {split_of[i] for i in frozen_a.test_ids} == {"test"}
    assert joint.report["frozen_test"]["frozen_test_present"] == len(frozen_a.test_ids)
    texts, y = joint.arrays("train")
    assert y.shape == (len(texts), 4) and np.isnan(y).any()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One CLI run: distillery train --student multi --filter a/v1 --filter b/v1 --data a --data b."""
    root = tmp_path_factory.mktemp("multi")
    filters, a, b = write_two_filters(root)
    common = ["--state-dir", str(root / "state"), "--filters-dir", str(filters)]
    result = CliRunner().invoke(app, ["train", "--student", "multi", "--filter", "a/v1", "--filter", "b",
                                      "--data", str(a), "--data", str(b), "-p", "epochs=60", "--promote",
                                      "--report", str(root / "rep"), *common])
    return root, common, result


def test_cli_trains_one_multi_model_and_registers_a_view_per_filter(trained):
    root, common, result = trained
    assert result.exit_code == 0, result.output
    assert "registered a/v1" in result.output and "registered b/v1" in result.output
    assert result.output.count("(promoted)") == 2
    reg = ModelRegistry(root / "state" / "registry")
    a, b = reg.promoted("a"), reg.promoted("b")
    assert a.kind == b.kind == "multi" and a.version_id == b.version_id
    # what the inference side reads to recognise one model behind both filters
    assert a.multi["model_id"] == b.multi["model_id"] == a.version_id
    assert a.multi["fingerprint"] == b.multi["fingerprint"]
    assert a.multi["filters"] == ["a/v1", "b/v1"] and len(a.multi["columns"]) == 4
    assert a.dimensions == A_DIMS and b.dimensions == B_DIMS
    for info in (a, b):
        assert info.metrics["test_mae"] < info.metrics["mean_predictor_mae"]
        assert (root / "rep" / f"{info.filter_name}-v1" / "report.md").stat().st_size > 0
    # each view loads back and predicts its columns of the joint model
    texts = [r["title"] + "\n\n" + r["text"] for r in list(read_jsonl(root / "a.jsonl"))[:6]]
    la, lb = reg.load(a), reg.load(b)
    joint = la.student.multi.predict(texts)
    np.testing.assert_allclose(la.predict(texts)[0], joint[:, :2], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(lb.predict(texts)[0], joint[:, 2:], rtol=1e-5, atol=1e-5)
    if hasattr(la.student.multi, "fingerprint"):
        assert la.student.multi.fingerprint() == a.multi["fingerprint"]
    # each filter got an ordinary dataset and a frozen test split: evaluate works on a view as on any model
    for name in ("a", "b"):
        assert (root / "state" / "datasets" / name / "v1" / "frozen_test.json").is_file()
    out = root / "ev"
    result = CliRunner().invoke(app, ["evaluate", "--filter", "b", "--out", str(out), *common])
    assert result.exit_code == 0, result.output
    evaluation = json.loads((out / "report.json").read_text())["evaluation"]
    assert evaluation["mae"] < evaluation["mean_predictor_mae"]


def test_cli_multi_user_errors_exit_2_without_traceback(tmp_path):
    filters, a, b = write_two_filters(tmp_path, n=60)
    common = ["--state-dir", str(tmp_path / "state"), "--filters-dir", str(filters)]
    multi = ["train", "--student", "multi"]
    for args, needle in [
        ([*multi, "--filter", "a/v1", "--data", str(a)], "two or more --filter"),
        ([*multi, "--filter", "a", "--filter", "nope", "--data", str(a), "--data", str(b)], "unknown filter"),
        ([*multi, "--filter", "a", "--filter", "b", "--data", str(a), "--data", str(a)],
         "no article labelled with all dimensions of b/v1"),
        ([*multi, "--filter", "a", "--filter", "b", "--data", f"a={a}"], "b/v1 has no labels in the label store"),
        ([*multi, "--filter", "a", "--filter", "b", "--data", str(a)], "one --data file per --filter"),
        ([*multi, "--filter", "a", "--filter", "a", "--data", str(a), "--data", str(a)], "name each filter once"),
        (["train", "--kind", "lexical", "--filter", "a", "--filter", "b"], "needs --student multi"),
        (["train", "--kind", "multi", "--filter", "a", "--filter", "b", "--data", f"c={a}"], "unknown filter"),
        ([*multi, "--filter", "a", "--filter", "b", "--data", f"a={tmp_path / 'x.jsonl'}"], "does not exist"),
    ]:
        result = CliRunner().invoke(app, [*args, *common])
        assert result.exit_code == 2, (args, result.output)
        assert needle in " ".join(result.output.split()) and "Traceback" not in result.output, (args, result.output)
