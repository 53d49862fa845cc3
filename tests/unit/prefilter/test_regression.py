"""Labelled regression suite for the example filters' prefilter rules.

``data/regression.jsonl`` holds hand-written articles with the decision and deciding reason code each
filter must give. A rule change in ``filters/<name>/v<N>/filter.yaml`` that flips one of them fails here,
with the article and the reasons in the message, so that the change is deliberate (update the file
then, and say why in the review). The same file works with ``distillery prefilter evaluate --labels``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from distillery_services.prefilter.engine import PrefilterEngine

DATA = Path(__file__).parent / "data" / "regression.jsonl"
CASES = [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def engine(catalog):
    return PrefilterEngine(catalog.latest())


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_regression_case(engine, case):
    (fi,) = engine.select([(case["filter"], 0)])
    result = engine.check(case["title"], case["text"], case.get("url", ""), case.get("source_type", ""),
                          case.get("language", "en"), filters=[fi])
    verdict = result.verdicts[0]
    got = "pass" if verdict.passed else "block"
    detail = f"{case['id']}: {got} with {[tuple(r) for r in verdict.reasons]}"
    assert got == case["expected"], detail
    assert verdict.reasons[0].code == case["reason"], detail


def test_suite_covers_both_outcomes_for_each_filter():
    for name in {c["filter"] for c in CASES}:
        outcomes = {c["expected"] for c in CASES if c["filter"] == name}
        assert outcomes == {"pass", "block"}, name
