"""The shipped example filters load, follow the conventions, and match the real data they describe."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from distillery.filters import FilterCatalog, load_filter
from distillery.filters.loader import validate_path

SHIPPED = Path(__file__).resolve().parents[3] / "filters"
ORIGIN = Path(os.environ.get("DISTILLERY_ORIGIN_DIR",
                             Path(__file__).resolve().parents[4] / "shared" / "datasets" / "origin"))
EXPECTED = {"uplifting", "sustainability_technology", "investment_risk", "sustainability"}


def test_every_shipped_package_validates():
    specs, errors = validate_path(SHIPPED)
    assert errors == []
    assert EXPECTED <= {s.name for s in specs}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_conventions(name):
    spec = load_filter(SHIPPED / name / "v1")
    assert 5 <= len(spec.dimensions) <= 8
    assert spec.gatekeepers, "every example has a gatekeeper"
    assert spec.content_caps, "every example has content caps"
    # Short texts make LLM oracles analyse the prompt itself; sustainability_technology keeps 100 because a
    # quarter of its human-confirmed true positives are short (tuned on the prefilter evaluation set).
    assert spec.prefilter.min_length == (100 if name == "sustainability_technology" else 300)
    assert spec.prefilter.exclusions
    assert {"code_repo", "developer_aggregator", "firehose_aggregator"} <= set(spec.prefilter.blocked_source_types)
    trunc = spec.student.truncation
    assert (trunc.head_tokens, trunc.tail_tokens) == (256, 256)
    for dim in spec.dimensions:
        assert dim.critical_rules and dim.evidence_focus


def test_uplifting_matches_the_domain():
    spec = load_filter(SHIPPED / "uplifting" / "v1")
    assert dict(zip(spec.dimension_names, spec.weights, strict=True)) == {
        "human_wellbeing_impact": 0.30, "social_cohesion_impact": 0.20, "justice_rights_impact": 0.15,
        "evidence_level": 0.10, "benefit_distribution": 0.10, "change_durability": 0.15,
    }
    (gate,) = spec.gatekeepers
    assert (gate.dimension, gate.threshold, gate.max_overall) == ("evidence_level", 3, 3.0)
    caps = {c.name: c.max_score for c in spec.content_caps}
    assert caps["corporate_finance"] == 2 and caps["pure_speculation"] == 3
    assert {t.name: t.min_overall for t in spec.tiers} == {"high": 7.0, "medium": 4.0, "low": 0.0}


def test_sustainability_technology_trl_gatekeeper():
    spec = load_filter(SHIPPED / "sustainability_technology" / "v1")
    (gate,) = spec.gatekeepers
    assert gate.dimension == "technology_readiness_level"
    assert len(spec.dimensions) == 6


def test_sustainability_dimensions_match_the_real_dataset():
    spec = load_filter(SHIPPED / "sustainability" / "v1")
    expected = ["climate_impact_potential", "technical_credibility", "economic_viability", "deployment_readiness",
                "systemic_impact", "justice_equity", "innovation_quality", "evidence_strength"]
    assert spec.dimension_names == expected
    path = ORIGIN / "oracle" / "sustainability__v1__bulk-labeling__gemini.jsonl"
    if not path.is_file():
        pytest.skip(f"{path} not present")
    with path.open(encoding="utf-8") as fh:
        for _, line in zip(range(200), fh, strict=False):
            assert set(json.loads(line)["dimension_scores"]) == set(expected)


def test_shipped_prefilter_rules_compile_in_the_prefilter_engine():
    """The rules are data for services/prefilter; every keyword and regex must compile there."""
    engine_module = pytest.importorskip("distillery_services.prefilter.engine")
    catalog = FilterCatalog.load(SHIPPED)
    engine = engine_module.PrefilterEngine(catalog.latest())
    assert {name for name, _ in engine.refs()} >= EXPECTED
    text = ("Solar panels and a grid battery cut emissions for the village cooperative. " * 8)
    result = engine.check("Village cooperative installs solar mini-grid", text)
    passed = {v.filter: v.passed for v in result.verdicts}
    assert passed["sustainability_technology"] and passed["sustainability"]
    deals = "Black Friday: the best deals on smartphones, 50% off today only. " * 8
    result = engine.check("Best Black Friday smartphone deals", deals)
    assert not any(v.passed for v in result.verdicts)
