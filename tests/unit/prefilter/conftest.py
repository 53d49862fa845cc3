"""Fixtures for the prefilter unit tests: filter specs built in code, so each test shows its rules."""

from __future__ import annotations

import pytest

from distillery.filters.spec import FilterSpec

_SCALE = {band: f"band {band}" for band in ("0-2", "3-4", "5-6", "7-8", "9-10")}


def build_spec(prefilter: dict, name: str = "demo", version: int = 1) -> FilterSpec:
    return FilterSpec.model_validate(
        {
            "name": name,
            "version": version,
            "description": "test filter",
            "dimensions": [
                {"name": "impact", "weight": 0.5, "description": "impact", "scale": _SCALE},
                {"name": "evidence", "weight": 0.5, "description": "evidence", "scale": _SCALE},
            ],
            "tiers": [{"name": "high", "min_overall": 7}, {"name": "low", "min_overall": 0}],
            "prefilter": {"min_length": 0, **prefilter},
        }
    )


@pytest.fixture
def make_spec():
    return build_spec
