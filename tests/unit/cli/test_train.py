"""``distillery train`` / ``distillery evaluate`` end to end on a small generated data set."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parents[1] / "trainer"))  # tests/unit/trainer/helpers.py
from helpers import write_filter, write_labels

from distillery.cli.main import app


def test_train_then_evaluate_with_reports(tmp_path):
    filters = write_filter(tmp_path / "filters")
    labels = write_labels(tmp_path / "labels.jsonl", n=160, seed=4)
    runner = CliRunner()
    common = ["--state-dir", str(tmp_path / "state"), "--filters-dir", str(filters)]
    result = runner.invoke(app, ["train", "--filter", "tiny/v1", "--labels", str(labels), "--kind", "lexical",
                                 "-p", "char_ngram_max=0", "--promote", "--report", str(tmp_path / "rep"), *common])
    assert result.exit_code == 0, result.output
    assert "registered" in result.output and "(promoted)" in result.output
    for name in ("report.md", "report.json", "predicted_vs_oracle.png", "error_by_band.png", "coverage.png"):
        assert (tmp_path / "rep" / name).stat().st_size > 0
    # the short form: the promoted model on its frozen test split
    result = runner.invoke(app, ["evaluate", "--filter", "tiny", "--out", str(tmp_path / "ev"), *common])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "ev" / "report.json").read_text())
    evaluation = report["evaluation"]
    assert evaluation["mae"] < evaluation["mean_predictor_mae"]
    assert "frozen test split" in report["data"] and 0 <= evaluation["coverage"] <= 1
    assert set(evaluation["error_by_band"]) == {"0-2", "3-4", "5-6", "7-8", "9-10"}
    md = (tmp_path / "ev" / "report.md").read_text()
    assert "| climate |" in md and "coverage.png" in md
    # any labelled JSONL
    other = write_labels(tmp_path / "other.jsonl", n=40, seed=9)
    result = runner.invoke(app, ["evaluate", "--filter", "tiny", "--data", str(other), "--out",
                                 str(tmp_path / "ev2"), *common])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "ev2" / "report.json").read_text())["evaluation"]["n"] == 40


def test_user_errors_exit_2_without_traceback(tmp_path):
    filters = write_filter(tmp_path / "filters")
    runner = CliRunner()
    common = ["--state-dir", str(tmp_path / "state"), "--filters-dir", str(filters)]
    for args, needle in [
        (["train", "--filter", "nope", "--labels", str(tmp_path)], "does not exist"),
        (["train", "--filter", "nope", *common], "unknown filter"),
        (["train", "--filter", "tiny", "--kind", "magic", *common], "unknown student kind"),
        (["train", "--filter", "tiny", "--labels", str(tmp_path / "x.jsonl"), *common], "does not exist"),
        (["evaluate", "--filter", "tiny", *common], "no model for tiny; train one"),
    ]:
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        assert needle in result.output and "Traceback" not in result.output
