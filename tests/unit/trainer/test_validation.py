"""Training data control: cross-validated calibration/evaluation with the final model on all labels (the default
below 1,000 labels), held-out splits, or the user's own --val/--test files; the summary and report say which."""

from __future__ import annotations

import json

import pytest
from distillery_services.trainer import validation
from distillery_services.trainer.datasets import Example
from distillery_services.trainer.request import TrainRequest
from distillery_services.trainer.training import run_training
from typer.testing import CliRunner

from distillery.articles import read_jsonl
from distillery.cli.main import app
from distillery.filters import FilterCatalog

from .helpers import write_filter, write_labels

runner = CliRunner()


@pytest.fixture
def spec(tmp_path):
    return FilterCatalog.load(write_filter(tmp_path / "filters")).get("tiny")


def _request(tmp_path, labels, **kwargs) -> TrainRequest:
    return TrainRequest(kind="lexical", labels_path=str(labels), registry_root=str(tmp_path / "registry"),
                        datasets_dir=str(tmp_path / "datasets"), **kwargs)


def test_auto_mode():
    assert validation.choose_mode("auto", 440, "probe", False, False) == "cv"
    assert validation.choose_mode("auto", 5000, "probe", False, False) == "holdout"
    assert validation.choose_mode("auto", 440, "lexical", False, False) == "cv"
    for kind in ("finetune", "stack", "ensemble", "multi"):  # k extra fits of several members: too slow
        assert validation.choose_mode("auto", 440, kind, False, False) == "holdout"
    assert validation.choose_mode("cv", 440, "stack", False, False) == "cv"
    assert validation.choose_mode("auto", 440, "probe", False, True) == "holdout"  # retrains compare on test
    assert validation.choose_mode("auto", 440, "probe", True, False) == "files"
    assert validation.choose_mode("holdout", 440, "probe", False, False) == "holdout"
    with pytest.raises(ValueError, match="cannot be combined"):
        validation.choose_mode("cv", 440, "probe", True, False)
    with pytest.raises(ValueError, match="evaluation must be one of"):
        validation.choose_mode("kfold", 440, "probe", False, False)


def test_folds_keep_near_duplicate_groups_together():
    examples = [Example(str(i), "t", "x", "", [1.0], group=i // 3) for i in range(30)]
    folds = validation.fold_of(examples, 5, seed=0)
    for g in range(10):
        assert len(set(folds[g * 3:(g + 1) * 3])) == 1
    assert set(folds) == {0, 1, 2, 3, 4}


def test_small_sets_train_the_final_model_on_every_label(tmp_path, spec):
    labels = write_labels(tmp_path / "labels.jsonl", n=200)
    summary = run_training(spec, _request(tmp_path, labels))
    m = summary["metrics"]
    assert summary["evaluation_mode"] == "cv" and m["cv_folds"] == 5
    n = len(summary["test"]["y"])
    assert m["n_train"] == n == m["n_cv"] and m["n_test"] == m["n_val"] == 0 and n >= 190  # nothing held back
    assert summary["reference_distribution"]["n"] == n
    assert "cross-validated" in summary["evaluation_description"] and f"all {n}" in summary["evaluation_description"]
    assert 0 < m["test_mae"] < m["mean_predictor_mae"]  # out-of-fold, yet better than predicting the mean


def test_holdout_when_asked(tmp_path, spec):
    labels = write_labels(tmp_path / "labels.jsonl", n=200)
    summary = run_training(spec, _request(tmp_path, labels, params={"evaluation": "holdout"}))
    m = summary["metrics"]
    assert summary["evaluation_mode"] == "holdout" and m["n_val"] > 0 and m["n_train"] < 180
    assert "held-out split" in summary["evaluation_description"]


def test_own_validation_and_test_files(tmp_path, spec):
    labels = write_labels(tmp_path / "labels.jsonl", n=200, seed=1)
    val = write_labels(tmp_path / "val.jsonl", n=30, seed=2)
    test = write_labels(tmp_path / "test.jsonl", n=40, seed=3)
    # One test article is also in the labels: it must not train the model.
    leaked = next(read_jsonl(test))
    with open(labels, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(leaked) + "\n")
    summary = run_training(spec, _request(tmp_path, labels, val_path=str(val), test_path=str(test)))
    m = summary["metrics"]
    assert summary["evaluation_mode"] == "files"
    assert (m["n_val"], m["n_test"]) == (30, 40) and m["n_train"] <= 200
    assert "test from" in summary["evaluation_description"] and str(test) in summary["evaluation_description"]


def test_cli_says_which_and_takes_files(tmp_path):
    filters = write_filter(tmp_path / "filters")
    labels = write_labels(tmp_path / "labels.jsonl", n=150)
    common = ["--filters-dir", str(filters), "--state-dir", str(tmp_path / "state"), "--kind", "lexical"]
    out = runner.invoke(app, ["train", "--filter", "tiny/v1", "--labels", str(labels), *common,
                              "--report", str(tmp_path / "report")])
    assert out.exit_code == 0, out.output
    assert "cross-validated MAE" in out.output and "final model was trained on all" in " ".join(out.output.split())
    assert "Cross-validation" in (tmp_path / "report" / "report.md").read_text(encoding="utf-8")
    # Nothing promoted yet: evaluate takes the version just trained (train -> evaluate, no other flag).
    ev = runner.invoke(app, ["evaluate", "--filter", "tiny/v1", "--filters-dir", str(filters), "--state-dir",
                             str(tmp_path / "state"), "--out", str(tmp_path / "eval")])
    assert ev.exit_code == 0, ev.output
    assert "evaluating the newest" in ev.output and (tmp_path / "eval" / "report.md").is_file()
    bad = runner.invoke(app, ["train", "--filter", "tiny/v1", "--labels", str(labels), *common,
                              "--test", str(tmp_path / "missing.jsonl")])
    assert bad.exit_code == 2 and "missing.jsonl does not exist" in bad.output
    both = runner.invoke(app, ["train", "--filter", "tiny/v1", "--labels", str(labels), *common,
                               "--evaluation", "cv", "--test", str(labels)])
    assert both.exit_code == 2 and "cannot be combined" in both.output
