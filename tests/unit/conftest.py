"""Shared unit-test fixtures (tests/unit/filters, tests/unit/cli): writable copies of a shipped filter package."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
SHIPPED = REPO_ROOT / "filters"


@pytest.fixture
def make_package(tmp_path) -> Callable[..., Path]:
    """Copy ``filters/<source>/v1`` to ``<tmp>/filters/<name>/v<version>/``, after ``edit(spec_dict)``.

    ``edit`` mutates the parsed filter.yaml in place; ``raw`` replaces the file's text instead.
    """

    def make(edit: Callable[[dict], None] | None = None, *, source: str = "uplifting", name: str | None = None,
             version: int = 1, raw: str | None = None, prompt: str | None = None) -> Path:
        name = name or source
        package = tmp_path / "filters" / name / f"v{version}"
        shutil.copytree(SHIPPED / source / "v1", package)
        spec = package / "filter.yaml"
        if raw is not None:
            spec.write_text(raw, encoding="utf-8")
        else:
            data = yaml.safe_load(spec.read_text(encoding="utf-8"))
            data["name"], data["version"] = name, version
            if edit is not None:
                edit(data)
            spec.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
        if prompt is not None:
            (package / "prompt.md").write_text(prompt, encoding="utf-8")
        return package

    return make
