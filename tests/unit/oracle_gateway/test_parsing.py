"""Response extraction, repair and validation against the filter spec."""

from __future__ import annotations

import json

import pytest
from distillery_services.oracle_gateway.parsing import (
    ResponseInvalidError,
    corrective_message,
    parse_response,
)


@pytest.fixture()
def spec(catalog):
    return catalog.get("uplifting")


def _answer(spec, **overrides):
    out = {d: {"score": 5.0, "evidence": f"quote {d}"} for d in spec.dimension_names}
    out.update(overrides)
    return out


def test_clean_json(spec):
    parsed = parse_response(spec, json.dumps(_answer(spec)))
    assert set(parsed.scores) == set(spec.dimension_names)
    assert not parsed.repaired


def test_fenced_with_prose(spec):
    text = "Sure! Here it is:\n```json\n" + json.dumps(_answer(spec), indent=2) + "\n```\nHope this helps."
    parsed = parse_response(spec, text)
    assert parsed.scores[spec.dimension_names[0]] == 5.0 and parsed.repaired


def test_trailing_commas_comments_python_literals(spec):
    dims = spec.dimension_names
    body = ",\n".join(f'  // note\n  "{d}": {{"score": 4, "evidence": "a // not a comment",}}' for d in dims)
    text = "{\n /* header */\n" + body + ",\n}"
    parsed = parse_response(spec, text)
    assert parsed.evidence[dims[0]] == "a // not a comment"
    assert parsed.repaired


def test_bare_numbers_and_string_scores_and_missing_evidence(spec):
    dims = spec.dimension_names
    answer = {d: 3 for d in dims}
    answer[dims[1]] = {"score": "6.5"}
    parsed = parse_response(spec, json.dumps(answer))
    assert parsed.scores[dims[1]] == 6.5
    assert parsed.evidence[dims[1]] == "No evidence in article"


@pytest.mark.parametrize("mutate, message", [
    (lambda a, d: a.pop(d[0]), "missing dimension"),
    (lambda a, d: a[d[0]].update(score=42), "outside 0-10"),
    (lambda a, d: a[d[0]].update(score=-1), "outside 0-10"),
    (lambda a, d: a[d[0]].update(score="high"), "not a number"),
    (lambda a, d: a.__setitem__(d[0], ["x"]), "expected an object"),
])
def test_invalid_answers(spec, mutate, message):
    answer = _answer(spec)
    mutate(answer, spec.dimension_names)
    with pytest.raises(ResponseInvalidError, match=message) as info:
        parse_response(spec, json.dumps(answer))
    assert spec.dimension_names[0] in corrective_message(spec, info.value)


@pytest.mark.parametrize("text", ["", "   ", "no json here", "{broken", "[1, 2]"])
def test_unparseable(spec, text):
    with pytest.raises(ResponseInvalidError):
        parse_response(spec, text)
