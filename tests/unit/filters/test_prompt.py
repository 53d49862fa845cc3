"""The oracle prompt is derived from the spec: every constant appears, and the hash tracks every change."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from distillery.filters import FilterCatalog, load_filter, prompt_hash, render_prompt, render_template
from distillery.filters.prompt import NO_EVIDENCE, output_json_schema

SHIPPED = Path(__file__).resolve().parents[3] / "filters"
CATALOG = FilterCatalog.load(SHIPPED)
REFS = sorted(spec.ref for spec in CATALOG.specs.values())


@pytest.mark.parametrize("ref", REFS)
def test_rendered_prompt_contains_every_constant(ref):
    spec = CATALOG.resolve(ref)
    prompt = render_prompt(spec, "A title", "Some article text " * 30, source="example.org",
                           published_at="2026-01-02")
    for dim in spec.dimensions:
        assert f"**{dim.name}** [Weight: {dim.weight * 100:g}%]" in prompt
        assert dim.description in prompt
        for band, text in dim.scale.items():
            assert f"| {band} | {text} |" in prompt
        for rule in dim.critical_rules:
            assert f"- {rule}" in prompt
    for gate in spec.gatekeepers:
        assert f"[GATEKEEPER: if < {gate.threshold:g}, max overall = {gate.max_overall:g}]" in prompt
    for cap in spec.content_caps:
        assert f"**{cap.name}** (max {cap.max_score:g} on every dimension)" in prompt
        for exception in cap.exceptions:
            assert exception in prompt
    schema = json.dumps(output_json_schema(spec), separators=(",", ":"))
    assert schema in prompt
    assert "Title: A title\nSource: example.org\nPublished: 2026-01-02" in prompt
    assert "{{" not in prompt, "an unrendered placeholder is left in the prompt"


@pytest.mark.parametrize("ref", REFS)
def test_output_schema_requires_every_dimension(ref):
    spec = CATALOG.resolve(ref)
    schema = output_json_schema(spec)
    assert schema["required"] == spec.dimension_names
    assert schema["additionalProperties"] is False
    for name in spec.dimension_names:
        prop = schema["properties"][name]
        assert prop["properties"]["score"] == {"type": "number", "minimum": 0, "maximum": 10}
        assert prop["required"] == ["score", "evidence"]


@pytest.mark.parametrize("ref", REFS)
def test_prompt_prose_holds_scope_check_and_evidence_rule(ref):
    """prompt.md carries the prose; constants (weights, thresholds, caps) come only from the spec."""
    template = CATALOG.resolve(ref).prompt_template
    assert "score ALL dimensions 0-2" in template
    assert "exact quote" in template and NO_EVIDENCE in template
    # No number is written in the prose: only the band name "0-2" and "Step 1/2" headings may carry digits.
    prose = template.replace("0-2", "").replace("Step 1", "").replace("Step 2", "")
    assert not any(ch.isdigit() for ch in prose), "write numbers in filter.yaml, not in prompt.md"


def test_long_article_is_cut_head_and_tail():
    spec = CATALOG.get("uplifting")
    text = "HEAD " + "x" * (spec.oracle.max_article_chars * 2) + " TAIL"
    prompt = render_prompt(spec, "t", text)
    assert "HEAD" in prompt and "TAIL" in prompt and " [...] " in prompt
    assert len(prompt) < len(render_template(spec)) + spec.oracle.max_article_chars + 200


def test_hash_changes_when_a_weight_changes(make_package):
    base = load_filter(make_package())

    def shift(d):
        d["dimensions"][0]["weight"] = 0.25
        d["dimensions"][1]["weight"] = 0.25

    changed = load_filter(make_package(shift, name="shifted"))
    renamed_base = load_filter(make_package(name="shifted_base"))
    assert prompt_hash(base) != prompt_hash(changed)
    # The hash depends on the rendered content, not on the folder it was loaded from.
    assert prompt_hash(base) == prompt_hash(renamed_base)


@pytest.mark.parametrize("edit", [
    lambda d: d["gatekeepers"][0].update({"threshold": 4}),
    lambda d: d["gatekeepers"][0].update({"max_overall": 3.5}),
    lambda d: d["dimensions"][0]["scale"].update({"9-10": "changed"}),
    lambda d: d["content_caps"][0].update({"max_score": 1}),
    lambda d: d["dimensions"][5]["critical_rules"].append("A new rule."),
], ids=["gate_threshold", "gate_cap", "scale_text", "content_cap", "critical_rule"])
def test_hash_tracks_every_prompt_constant(make_package, edit):
    assert prompt_hash(load_filter(make_package())) != prompt_hash(load_filter(make_package(edit, name="edited")))


def test_hash_ignores_settings_outside_the_prompt(make_package):
    base = load_filter(make_package())
    other = load_filter(make_package(lambda d: d["prefilter"].update({"min_length": 500}), name="other"))
    assert prompt_hash(base) == prompt_hash(other)
    assert len(prompt_hash(base)) == 12
