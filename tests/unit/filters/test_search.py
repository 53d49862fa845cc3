"""Every CLI command finds filters the same way: ./filters, then configured folders, then the shipped examples."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from distillery.cli.main import app
from distillery.filters import FilterSpecError, UnknownFilterError
from distillery.filters.scaffold import new_filter
from distillery.filters.search import discover, search_path, shipped_filters_dir

SHIPPED = Path(__file__).resolve().parents[3] / "filters"
runner = CliRunner()


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DISTILLERY_FILTERS_DIR", raising=False)
    return tmp_path


def test_local_then_configured_then_shipped(project, monkeypatch):
    new_filter("belonging", 3, project / "filters")
    new_filter("uplifting", 2, project / "filters")  # shadows the shipped example of that name
    team = project / "team"
    new_filter("team_only", 2, team)
    monkeypatch.setenv("DISTILLERY_FILTERS_DIR", str(team))
    assert search_path() == [Path("filters"), team, shipped_filters_dir()]
    catalog = discover()
    assert catalog.origins["belonging"] == Path("filters") and catalog.origins["team_only"] == team
    assert catalog.origins["uplifting"] == Path("filters") and len(catalog.get("uplifting").dimensions) == 2
    assert catalog.origins["sustainability"] == SHIPPED  # still found in the examples
    other = project / "other"
    new_filter("other_only", 2, other)
    explicit = discover([other])  # --filters-dir replaces the environment's folders
    assert "other_only" in explicit.names() and "team_only" not in explicit.names()


def test_errors_name_the_folders_searched(project):
    with pytest.raises(UnknownFilterError, match=r"unknown filter nope/v1 \(searched .*filters\)"):
        discover().resolve("nope/v1")
    with pytest.raises(UnknownFilterError, match=r"unknown filter 'nope' \(searched "):
        discover().resolve("nope")
    with pytest.raises(FilterSpecError, match="filters folder does not exist"):
        discover([project / "typo"])


def test_commands_find_a_new_filter_without_flags(project):
    assert runner.invoke(app, ["new-filter", "--name", "belonging", "--dimension", "trust",
                               "--dimension", "inclusion"]).exit_code == 0
    validated = runner.invoke(app, ["validate", "belonging/v1"])
    assert validated.exit_code == 0 and "OK belonging/v1" in " ".join(validated.output.split())
    listed = runner.invoke(app, ["filters", "list"])
    assert listed.exit_code == 0 and "belonging/v1" in listed.output and "uplifting/v1" in listed.output
    prompt = runner.invoke(app, ["filters", "prompt", "belonging"])
    assert prompt.exit_code == 0 and "trust" in prompt.output
    dry = runner.invoke(app, ["score", "--filter", "belonging/v1", "--articles", "5", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    mismatch = runner.invoke(app, ["new-filter", "--name", "x", "--dimensions", "3", "--dimension", "a"])
    assert mismatch.exit_code == 2 and "disagrees" in mismatch.output
