"""``distillery prefilter evaluate``: rates, counts, reasons, gauges, and clear errors for bad label files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from distillery_services.prefilter.engine import PrefilterEngine
from distillery_services.prefilter.evaluate import LabelError, evaluate, load_labels
from typer.testing import CliRunner

from distillery.cli.main import app

REGRESSION = Path(__file__).parent / "data" / "regression.jsonl"
BODY = " Filler sentence about nothing in particular." * 3


@pytest.fixture
def spec(make_spec):
    return make_spec({"exclusions": [{"name": "crime", "keywords": ["murder"]}], "min_length": 20})


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_rates_from_oracle_scores(spec, tmp_path):
    rows = [
        {"title": "a", "text": "murder" + BODY, "dimension_scores": {"impact": 8, "evidence": 6}},  # FN
        {"title": "b", "text": "calm" + BODY, "dimension_scores": {"impact": 9, "evidence": 9}},  # TP
        {"title": "c", "text": "calm" + BODY, "dimension_scores": {"impact": 1, "evidence": 2}},  # FP
        {"title": "d", "text": "murder" + BODY, "oracle_scores": {"impact": 0, "evidence": 0}},  # TN
        {"title": "e", "text": "short", "overall": 2.0},  # TN (too short)
    ]
    items = load_labels(write(tmp_path / "l.jsonl", rows), spec, threshold=5.0)
    report = evaluate(PrefilterEngine([spec]), ("demo", 1), items, 5.0)
    assert (report.positives, report.false_negatives, report.negatives, report.false_positives) == (2, 1, 3, 1)
    assert report.false_negative_rate == 0.5 and report.false_positive_rate == pytest.approx(1 / 3)
    assert report.top_false_negative_reasons == [("excluded:crime (murder)", 1)]
    assert report.false_negative_examples[0]["overall"] == 7.0


def test_title_only_records_skip_length_rules(spec, tmp_path):
    items = load_labels(write(tmp_path / "n.jsonl", [{"title": "A murder"}, {"title": "Calm"}]), spec, 5.0,
                        relevant=False)
    report = evaluate(PrefilterEngine([spec]), ("demo", 1), items, 5.0)
    assert report.title_only_records == 2 and report.false_positives == 1  # "Calm" passes on its title


def test_label_errors_name_file_and_line(spec, tmp_path):
    with pytest.raises(LabelError, match=r"l.jsonl:2: dimension_scores lacks evidence"):
        load_labels(write(tmp_path / "l.jsonl", [{"title": "a", "overall": 1},
                                                 {"title": "b", "dimension_scores": {"impact": 1}}]), spec, 5)
    with pytest.raises(LabelError, match="no label"):
        load_labels(write(tmp_path / "m.jsonl", [{"title": "a"}]), spec, 5)


def test_cli_on_the_regression_suite(tmp_path):
    out, prom, labels = tmp_path / "r.json", tmp_path / "r.prom", tmp_path / "sustainability.jsonl"
    # The sustainability cases of the suite (the other filters' passing cases are off topic for it).
    labels.write_text("".join(line + "\n" for line in REGRESSION.read_text(encoding="utf-8").splitlines()
                              if line.strip() and json.loads(line)["filter"] == "sustainability"), encoding="utf-8")
    result = CliRunner().invoke(app, ["prefilter", "evaluate", "--filter", "sustainability", "--labels",
                                      str(labels), "--json", str(out), "--metrics-out", str(prom)])
    assert result.exit_code == 0, result.output
    assert "false negatives" in result.output
    (report,) = json.loads(out.read_text())
    assert report["filter"] == "sustainability/v1" and report["false_negatives"] == 0
    assert 'distillery_prefilter_false_negative_ratio{filter="sustainability/v1"} 0.0' in prom.read_text()


def test_cli_gate_and_user_errors(tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["prefilter", "evaluate", "--filter", "sustainability", "--negatives",
                                 str(REGRESSION), "--max-fp-rate", "0.01"])
    assert result.exit_code == 1  # the regression file's passing articles count as false positives here
    result = runner.invoke(app, ["prefilter", "evaluate", "--filter", "nope", "--labels", str(REGRESSION)])
    assert result.exit_code == 2 and "unknown filter" in result.output
    result = runner.invoke(app, ["prefilter", "evaluate", "--filter", "sustainability", "--labels",
                                 str(tmp_path / "missing.jsonl")])
    assert result.exit_code == 2 and "does not exist" in result.output
    result = runner.invoke(app, ["prefilter", "evaluate", "--filter", "sustainability"])
    assert result.exit_code == 2


def test_cli_check_writes_decisions(tmp_path):
    src = write(tmp_path / "a.jsonl", [{"title": "Solar farm opens", "text": "Solar and wind power." + BODY * 5}])
    out = tmp_path / "d.jsonl"
    result = CliRunner().invoke(app, ["prefilter", "check", str(src), "--filter", "sustainability", "-o", str(out)])
    assert result.exit_code == 0, result.output
    (decision,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert decision["filter"] == "sustainability/v1" and decision["passed"] is True
