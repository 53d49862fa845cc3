"""The filter commands through the real `distillery` app: exit codes, messages, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from distillery.cli.main import app

SHIPPED = Path(__file__).resolve().parents[3] / "filters"
runner = CliRunner()


def run(*args: str):
    result = runner.invoke(app, list(args))
    assert "Traceback" not in result.output
    if result.exception is not None:
        assert isinstance(result.exception, SystemExit), repr(result.exception)
    return result


def flat(text: str) -> str:
    return " ".join(text.split())


def test_commands_are_registered():
    out = run("--help").output
    for command in ("new-filter", "validate", "filters"):
        assert command in out
    out = run("filters", "--help").output
    assert "list" in out and "prompt" in out


def test_validate_shipped_filters_folder():
    result = run("validate", str(SHIPPED))
    assert result.exit_code == 0, result.output
    out = flat(result.output)
    for ref in ("uplifting/v1", "sustainability/v1", "sustainability_technology/v1", "investment_risk/v1"):
        assert f"OK {ref} prompt hash" in out
    assert "evidence_gatekeeper: < 3 caps overall at 3" in out
    assert "tiers: high >= 7, medium >= 4, low >= 0" in out
    assert "filter packages valid" in out


@pytest.mark.parametrize("target", ["uplifting/v1", "uplifting/v1/filter.yaml", "uplifting"])
def test_validate_one_package_folder_or_file(target):
    result = run("validate", str(SHIPPED / target))
    assert result.exit_code == 0, result.output
    out = flat(result.output)
    assert "OK uplifting/v1" in out and "human_wellbeing_impact" in out and "0.3" in out


def test_validate_invalid_package_exits_2_naming_file_and_field(make_package):
    package = make_package(lambda d: d["gatekeepers"][0].update({"dimension": "evidense"}))
    result = run("validate", str(package))
    assert result.exit_code == 2
    out = flat(result.output)
    assert f"error: {package / 'filter.yaml'}" in out
    assert "gatekeepers[0] (evidence_gatekeeper).dimension: refers to unknown dimension 'evidense'" in out


def test_validate_folder_lists_every_invalid_package(make_package):
    make_package(name="fine")
    make_package(lambda d: d["dimensions"][0].update({"wieght": 1}), name="typo")
    root = make_package(lambda d: d.update({"version": 3}), name="moved").parent.parent
    result = run("validate", str(root))
    assert result.exit_code == 2
    out = flat(result.output)
    assert "OK fine/v1" in out
    assert "INVALID" in out and "typo/v1/filter.yaml" in out and "did you mean 'weight'?" in out
    assert "moved/v1/filter.yaml" in out and "version: 3 does not match its folder v1/" in out
    assert "2 invalid, 1 valid" in out


def test_validate_missing_path_exits_2(tmp_path):
    result = run("validate", str(tmp_path / "nope"))
    assert result.exit_code == 2
    assert "no such file or folder" in flat(result.output)


def test_new_filter_then_validate(tmp_path):
    result = run("new-filter", "--name", "nature_recovery", "--dimensions", "6", "--dir", str(tmp_path))
    assert result.exit_code == 0, result.output
    package = tmp_path / "nature_recovery" / "v1"
    assert (package / "filter.yaml").is_file() and (package / "prompt.md").is_file()
    assert f"distillery validate {package}" in flat(result.output)
    result = run("validate", str(package))
    assert result.exit_code == 0, result.output
    assert "OK nature_recovery/v1" in flat(result.output)
    assert "dimension_6" in result.output


def test_new_filter_errors_exit_2(tmp_path):
    result = run("new-filter", "--name", "Nature-Recovery", "--dimensions", "3", "--dir", str(tmp_path))
    assert result.exit_code == 2
    out = flat(result.output)
    assert "use underscores, not hyphens" in out and "try --name nature_recovery" in out
    result = run("new-filter", "--name", "ok", "--dimensions", "0", "--dir", str(tmp_path))
    assert result.exit_code == 2 and "between 1 and" in flat(result.output)
    assert run("new-filter", "--name", "ok", "--dir", str(tmp_path)).exit_code == 0
    result = run("new-filter", "--name", "ok", "--dir", str(tmp_path))
    assert result.exit_code == 2 and "--force" in flat(result.output)
    result = run("new-filter", "--dimensions", "3")
    assert result.exit_code == 2 and "--name" in result.output


def test_filters_list():
    result = run("filters", "list", "--dir", str(SHIPPED))
    assert result.exit_code == 0, result.output
    for ref in ("uplifting/v1", "investment_risk/v1", "sustainability/v1"):
        assert ref in result.output


def test_filters_list_bad_folder_exits_2(tmp_path, make_package):
    result = run("filters", "list", "--dir", str(tmp_path / "missing"))
    assert result.exit_code == 2 and "filters folder does not exist" in flat(result.output)
    root = make_package(lambda d: d["dimensions"][0].update({"weight": 0.9})).parent.parent
    result = run("filters", "list", "--dir", str(root))
    assert result.exit_code == 2 and "must sum to 1.0" in flat(result.output)


def test_filters_prompt_template_and_with_article(tmp_path):
    result = run("filters", "prompt", "uplifting", "--dir", str(SHIPPED))
    assert result.exit_code == 0, result.output
    assert "**evidence_level** [Weight: 10%] [GATEKEEPER: if < 3, max overall = 3]" in result.output
    assert "{{article}}" in result.output  # no article given: the slot stays visible

    article = tmp_path / "a.json"
    article.write_text(json.dumps({"title": "Town opens clinic", "text": "The clinic treated 400 people.",
                                   "source": "example.org", "published_date": "2026-01-01"}), encoding="utf-8")
    result = run("filters", "prompt", "uplifting/v1", "--article", str(article), "--dir", str(SHIPPED))
    assert result.exit_code == 0, result.output
    assert "Title: Town opens clinic\nSource: example.org\nPublished: 2026-01-01" in result.output
    assert "{{article}}" not in result.output

    jsonl = tmp_path / "a.jsonl"
    jsonl.write_text(json.dumps({"title": "First", "content": "body one"}) + "\n"
                     + json.dumps({"title": "Second", "text": "body two"}) + "\n", encoding="utf-8")
    result = run("filters", "prompt", str(SHIPPED / "sustainability" / "v1"), "--article", str(jsonl))
    assert result.exit_code == 0 and "Title: First" in result.output and "body one" in result.output

    text = tmp_path / "a.txt"
    text.write_text("Plain title\nPlain body text.\n", encoding="utf-8")
    result = run("filters", "prompt", "investment_risk", "--article", str(text), "--dir", str(SHIPPED))
    assert result.exit_code == 0 and "Title: Plain title" in result.output


@pytest.mark.parametrize("args, words", [
    (("filters", "prompt", "nonexistent"), "unknown filter 'nonexistent'"),
    (("filters", "prompt", "uplifting/v9"), "unknown filter uplifting/v9; loaded versions: [1]"),
    (("filters", "prompt", "uplifting", "--article", "/nonexistent/a.json"), "does not exist"),
])
def test_filters_prompt_errors_exit_2(args, words):
    result = run(*args, "--dir", str(SHIPPED))
    assert result.exit_code == 2
    assert words in flat(result.output)


@pytest.mark.parametrize("content, words", [
    ("{not json", "not valid JSON"),
    (json.dumps({"title": "no text"}), "non-empty 'title' and 'text'"),
    ("", "the article file is empty"),
    ("only a title line", "title line followed by its text"),
])
def test_filters_prompt_bad_article_exits_2(tmp_path, content, words):
    article = tmp_path / "bad.json"
    article.write_text(content, encoding="utf-8")
    result = run("filters", "prompt", "uplifting", "--article", str(article), "--dir", str(SHIPPED))
    assert result.exit_code == 2
    assert words in flat(result.output)
