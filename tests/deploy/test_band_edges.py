"""The recording rules' score bands are the spec's (distillery.filters.spec.SCORE_BANDS), edge for edge.

The drift rules read band shares from the inference score histograms' ``le`` buckets; a band edge changed in
the spec but not in the rules (or a bucket missing from the histogram) would compare the live scores with the
training reference over different bands, silently. The band rules are generated from the spec
(deploy/prometheus/rules/score_bands.yml, ``make dashboards``; ``make dashboards-check`` fails when stale);
this test checks what Prometheus loads.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from distillery.filters.spec import BAND_EDGES, SCALE_BANDS, SCORE_BANDS

ROOT = Path(__file__).resolve().parents[2]
RULE_FILES = sorted((ROOT / "deploy/prometheus/rules").glob("*.yml"))
BAND_RECORDS = ("distillery:inference_score_band:ratio_1h", "distillery:inference_overall_score_band:ratio_1h",
                "distillery:inference_score_band:ratio_7d")
LE = re.compile(r'distillery_inference_(?:overall_)?score_bucket\{le="([^"]+)"\}')


def _rules() -> list[dict]:
    return [r for p in RULE_FILES for g in yaml.safe_load(p.read_text())["groups"] for r in g["rules"]]


def _expected_edges(band: str) -> set[float]:
    """A band's share is bucket(upper) - bucket(lower edge): the last band uses the count, the first no lower."""
    index = SCALE_BANDS.index(band)
    edges = {SCORE_BANDS[index][1]} if index < len(SCORE_BANDS) - 1 else set()
    return edges | ({SCORE_BANDS[index - 1][1]} if index > 0 else set())


@pytest.mark.parametrize("record", BAND_RECORDS)
def test_band_rules_cover_the_spec_bands_with_its_edges(record):
    rules = [r for r in _rules() if r.get("record") == record]
    assert [r["labels"]["band"] for r in rules] == list(SCALE_BANDS)
    for rule in rules:
        edges = {float(le) for le in LE.findall(rule["expr"])}
        assert edges == _expected_edges(rule["labels"]["band"]), (record, rule["labels"]["band"], rule["expr"])


def test_every_le_selector_is_a_bucket_of_the_score_histograms():
    from distillery_services.inference.metrics import OVERALL, SCORES

    buckets = {float(b) for b in SCORES._upper_bounds} & {float(b) for b in OVERALL._upper_bounds}
    assert set(BAND_EDGES) <= buckets
    used = {float(le) for r in _rules() for le in LE.findall(r["expr"])}
    assert used and used <= buckets, sorted(used - buckets)
