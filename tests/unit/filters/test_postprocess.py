"""Post-processing: properties over random specs and scores, plus worked examples on shipped filters."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from distillery.filters import FilterCatalog, FilterSpec, overall_scores, postprocess, tier_for
from distillery.filters.loader import load_filter

SHIPPED = Path(__file__).resolve().parents[3] / "filters"

BANDS = {b: f"band {b}" for b in ("0-2", "3-4", "5-6", "7-8", "9-10")}
score = st.floats(min_value=0, max_value=10, allow_nan=False)
wild_score = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)


@st.composite
def specs(draw) -> FilterSpec:
    """Random valid specs: 1-8 dimensions, weights summing to 1, 0-3 gatekeepers, 1-5 tiers."""
    n = draw(st.integers(1, 8))
    raw = draw(st.lists(st.integers(1, 100), min_size=n, max_size=n))
    weights = [r / sum(raw) for r in raw[:-1]]
    weights.append(1.0 - sum(weights))
    dims = [{"name": f"d{i}", "weight": w, "description": "x", "scale": BANDS} for i, w in enumerate(weights)]
    gates = [
        {"name": f"g{j}", "dimension": f"d{draw(st.integers(0, n - 1))}",
         "threshold": draw(st.floats(0, 10)), "max_overall": draw(st.floats(0, 10))}
        for j in range(draw(st.integers(0, 3)))
    ]
    cuts = draw(st.lists(st.floats(0.5, 10), max_size=4, unique=True))
    tiers = [{"name": "t0", "min_overall": 0.0}] + [{"name": f"t{k + 1}", "min_overall": c}
                                                    for k, c in enumerate(cuts)]
    return FilterSpec.model_validate(
        {"name": "random", "version": 1, "description": "random spec", "dimensions": dims,
         "gatekeepers": gates, "tiers": tiers}
    )


@st.composite
def spec_and_scores(draw, element=score):
    spec = draw(specs())
    values = draw(st.lists(element, min_size=len(spec.dimensions), max_size=len(spec.dimensions)))
    return spec, values


@settings(max_examples=300, deadline=None)
@given(spec_and_scores(wild_score))
def test_overall_within_range_and_scores_clamped(case):
    spec, values = case
    out = postprocess(spec, values)
    assert 0.0 <= out.overall <= 10.0
    assert all(0.0 <= s <= 10.0 for s in out.scores)
    assert out.scores == tuple(min(10.0, max(0.0, v)) for v in values)


@settings(max_examples=300, deadline=None)
@given(spec_and_scores())
def test_gatekeeper_caps_are_respected(case):
    spec, values = case
    out = postprocess(spec, values)
    index = {name: i for i, name in enumerate(spec.dimension_names)}
    weighted = float(np.dot(out.scores, spec.weights))
    active = [g for g in spec.gatekeepers if out.scores[index[g.dimension]] < g.threshold]
    for gate in active:
        assert out.overall <= gate.max_overall + 1e-9
    expected = min([weighted] + [g.max_overall for g in active])
    assert out.overall == pytest.approx(expected, abs=1e-9)
    # A gatekeeper is reported only when it fired and actually lowered the score.
    assert set(out.gatekeepers_applied) <= {g.name for g in active}
    if not active:
        assert out.gatekeepers_applied == ()


@settings(max_examples=300, deadline=None)
@given(spec_and_scores(), st.data())
def test_monotone_in_each_dimension(case, data):
    spec, values = case
    i = data.draw(st.integers(0, len(values) - 1))
    raised = list(values)
    raised[i] = data.draw(st.floats(min_value=values[i], max_value=10))
    assert postprocess(spec, raised).overall >= postprocess(spec, values).overall - 1e-12


@settings(max_examples=300, deadline=None)
@given(spec_and_scores())
def test_tier_consistent_with_thresholds(case):
    spec, values = case
    out = postprocess(spec, values)
    tier = next(t for t in spec.tiers if t.name == out.tier)
    assert tier.min_overall <= out.overall
    # No tier with a higher threshold is also reached.
    assert not [t for t in spec.tiers if tier.min_overall < t.min_overall <= out.overall]


@settings(max_examples=100, deadline=None)
@given(specs(), st.integers(1, 20), st.data())
def test_vectorised_matches_single(spec, rows, data):
    n = len(spec.dimensions)
    matrix = np.array(data.draw(st.lists(st.lists(wild_score, min_size=n, max_size=n), min_size=rows,
                                         max_size=rows)))
    overall, applied = overall_scores(spec, matrix)
    for row, value, gates in zip(matrix, overall, applied, strict=True):
        single = postprocess(spec, row)
        assert single.overall == pytest.approx(float(value), abs=1e-12)
        assert single.gatekeepers_applied == gates


# -- worked examples on the shipped filters ------------------------------------------------------


@pytest.fixture(scope="module")
def shipped() -> FilterCatalog:
    return FilterCatalog.load(SHIPPED)


def _scores(spec: FilterSpec, default: float, **overrides: float) -> list[float]:
    return [overrides.get(name, default) for name in spec.dimension_names]


def test_uplifting_all_eights_is_high(shipped):
    spec = shipped.get("uplifting")
    out = postprocess(spec, _scores(spec, 8.0))
    assert out.overall == pytest.approx(8.0)
    assert out.tier == "high"
    assert out.gatekeepers_applied == ()


def test_uplifting_weighted_mean(shipped):
    spec = shipped.get("uplifting")
    # .30*10 + .20*5 + .15*4 + .10*6 + .10*2 + .15*8 = 3 + 1 + .6 + .6 + .2 + 1.2 = 6.6
    values = {"human_wellbeing_impact": 10, "social_cohesion_impact": 5, "justice_rights_impact": 4,
              "evidence_level": 6, "benefit_distribution": 2, "change_durability": 8}
    out = postprocess(spec, _scores(spec, 0, **values))
    assert out.overall == pytest.approx(6.6)
    assert out.tier == "medium"


def test_uplifting_evidence_gatekeeper_caps_at_three(shipped):
    spec = shipped.get("uplifting")
    out = postprocess(spec, _scores(spec, 9.0, evidence_level=2.5))
    # Uncapped it would be .9 * 9 + .1 * 2.5 = 8.35.
    assert out.overall == pytest.approx(3.0)
    assert out.tier == "low"
    assert out.gatekeepers_applied == ("evidence_gatekeeper",)


def test_uplifting_gatekeeper_not_applied_at_threshold(shipped):
    spec = shipped.get("uplifting")
    out = postprocess(spec, _scores(spec, 9.0, evidence_level=3.0))
    assert out.overall == pytest.approx(0.9 * 9 + 0.1 * 3)
    assert out.gatekeepers_applied == ()


def test_gatekeeper_below_cap_is_not_reported(shipped):
    spec = shipped.get("uplifting")
    out = postprocess(spec, _scores(spec, 1.0))
    assert out.overall == pytest.approx(1.0)
    assert out.gatekeepers_applied == ()


def test_sustainability_technology_trl_gatekeeper(shipped):
    spec = shipped.get("sustainability_technology")
    out = postprocess(spec, _scores(spec, 8.0, technology_readiness_level=2.0))
    assert out.overall == pytest.approx(2.2)
    assert out.tier == "low"
    out = postprocess(spec, _scores(spec, 6.0))
    assert out.tier == "medium_high"


def test_investment_risk_tiers(shipped):
    spec = shipped.get("investment_risk")
    assert [tier_for(spec, x) for x in (0, 1.99, 2, 3.99, 4, 6.99, 7, 10)] == [
        "noise", "noise", "green", "green", "yellow", "yellow", "red", "red"]
    out = postprocess(spec, _scores(spec, 9.0, evidence_quality=3.5))
    assert out.overall == pytest.approx(2.9)
    assert out.tier == "green"


def test_out_of_range_scores_are_clamped(shipped):
    spec = shipped.get("uplifting")
    out = postprocess(spec, _scores(spec, 14.0))
    assert out.scores == (10.0,) * 6
    assert out.overall == pytest.approx(10.0)
    out = postprocess(spec, _scores(spec, -3.0))
    assert out.overall == 0.0


def test_wrong_number_of_scores_is_an_error(shipped):
    spec = shipped.get("uplifting")
    with pytest.raises(ValueError, match="expected 6 scores per row for uplifting/v1, got 5"):
        postprocess(spec, [5.0] * 5)


def test_sustainability_on_real_labels_if_present(shipped):
    """The sustainability spec scores the real oracle labels: overall in range, gatekeeper where expected."""
    import json

    # The shared datasets sit beside the checkout (../shared), as on developer machines and in CI.
    path = (Path(__file__).resolve().parents[4] / "shared" / "datasets" / "origin" / "oracle"
            / "sustainability__v1__bulk-labeling__gemini.jsonl")
    if not path.is_file():
        pytest.skip("origin dataset not present on this machine")
    spec = load_filter(SHIPPED / "sustainability" / "v1")
    with path.open(encoding="utf-8") as fh:
        records = [json.loads(next(fh)) for _ in range(500)]
    matrix = np.array([[r["dimension_scores"][d] for d in spec.dimension_names] for r in records])
    overall, applied = overall_scores(spec, matrix)
    assert ((overall >= 0) & (overall <= 10)).all()
    gate_col = spec.dimension_names.index("climate_impact_potential")
    fired = np.array([bool(a) for a in applied])
    assert (overall[matrix[:, gate_col] < 2] <= 3.0).all()
    assert not fired[matrix[:, gate_col] >= 2].any()
