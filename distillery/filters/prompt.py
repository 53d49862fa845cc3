"""Render the oracle prompt from a filter spec and its ``prompt.md`` template.

``prompt.md`` holds the prose (role, scope check, contrastive examples); the parts that carry numbers
— the dimension section with weights, gatekeepers and scales, the content caps, and the JSON output
schema — are rendered from the spec, so each constant lives in exactly one place.
"""

from __future__ import annotations

import hashlib
import json

from distillery.filters.spec import SCALE_BANDS, FilterSpec

DIMENSIONS = "{{dimensions}}"
OUTPUT_SCHEMA = "{{output_schema}}"
ARTICLE = "{{article}}"
CONTENT_CAPS = "{{content_caps}}"
REQUIRED_PLACEHOLDERS = (DIMENSIONS, OUTPUT_SCHEMA, ARTICLE)
KNOWN_PLACEHOLDERS = (DIMENSIONS, CONTENT_CAPS, OUTPUT_SCHEMA, ARTICLE)
NO_EVIDENCE = "No evidence in article"


def render_dimensions(spec: FilterSpec) -> str:
    gates = {g.dimension: g for g in spec.gatekeepers}
    blocks = []
    for i, dim in enumerate(spec.dimensions, 1):
        head = f"### {i}. **{dim.name}** [Weight: {dim.weight * 100:g}%]"
        if dim.name in gates:
            g = gates[dim.name]
            head += f" [GATEKEEPER: if < {g.threshold:g}, max overall = {g.max_overall:g}]"
        lines = [head, f"*{dim.description}*"]
        if dim.critical_rules:
            lines.append("**CRITICAL FILTERS - Score 0-2 if:**")
            lines += [f"- {rule}" for rule in dim.critical_rules]
        if dim.evidence_focus:
            lines.append(f"Evidence focus: {dim.evidence_focus}")
        lines.append("| Score | Criteria |")
        lines.append("|---|---|")
        lines += [f"| {band} | {dim.scale[band]} |" for band in SCALE_BANDS]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def render_content_caps(spec: FilterSpec) -> str:
    if not spec.content_caps:
        return "No content-type caps apply to this filter."
    lines = []
    for cap in spec.content_caps:
        line = f"- **{cap.name}** (max {cap.max_score:g} on every dimension): {'; '.join(cap.triggers)}"
        if cap.exceptions:
            line += f". Exceptions: {', '.join(cap.exceptions)}"
        lines.append(line)
    return "\n".join(lines)


def output_json_schema(spec: FilterSpec) -> dict:
    """JSON Schema of the oracle's answer: one object per dimension with score and evidence."""
    dim_schema = {
        "type": "object",
        "properties": {
            "score": {"type": "number", "minimum": 0, "maximum": 10},
            "evidence": {"type": "string"},
        },
        "required": ["score", "evidence"],
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {name: dim_schema for name in spec.dimension_names},
        "required": spec.dimension_names,
        "additionalProperties": False,
    }


def render_output_schema(spec: FilterSpec) -> str:
    example = {name: {"score": 0.0, "evidence": f"<exact quote or '{NO_EVIDENCE}'>"} for name in spec.dimension_names}
    return (
        "Output ONLY a single JSON object, no prose and no markdown fences, shaped exactly like:\n"
        + json.dumps(example, indent=2)
        + "\nScores are numbers from 0.0 to 10.0 in half points; score each dimension independently."
        + "\nJSON Schema:\n"
        + json.dumps(output_json_schema(spec), separators=(",", ":"))
    )


def render_template(spec: FilterSpec) -> str:
    """The prompt with every spec-derived section filled in and ``{{article}}`` still open."""
    return (
        spec.prompt_template.replace(DIMENSIONS, render_dimensions(spec))
        .replace(CONTENT_CAPS, render_content_caps(spec))
        .replace(OUTPUT_SCHEMA, render_output_schema(spec))
    )


def prompt_hash(spec: FilterSpec) -> str:
    """12-hex-digit SHA-256 of the rendered template: recorded with every label and model."""
    return hashlib.sha256(render_template(spec).encode("utf-8")).hexdigest()[:12]


def format_article(title: str, text: str, source: str = "", published_at: str = "", max_chars: int = 8000) -> str:
    from distillery.articles import head_tail_chars

    return (
        f"Title: {title}\nSource: {source or 'unknown'}\nPublished: {published_at or 'unknown'}\n\n"
        + head_tail_chars(text, max_chars)
    )


def render_prompt(spec: FilterSpec, title: str, text: str, source: str = "", published_at: str = "") -> str:
    """The full prompt for one article."""
    article = format_article(title, text, source, published_at, spec.oracle.max_article_chars)
    return render_template(spec).replace(ARTICLE, article)
