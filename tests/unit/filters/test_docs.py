"""docs/filters.md's schema reference is generated from spec.py and must not go stale."""

from __future__ import annotations

from pathlib import Path

import pytest

from distillery.filters.reference import BEGIN, END, main, render_doc, schema_reference, undocumented_fields
from distillery.filters.spec import FilterSpec

DOC = Path(__file__).resolve().parents[3] / "docs" / "filters.md"


def test_reference_in_docs_is_current():
    text = DOC.read_text(encoding="utf-8")
    assert render_doc(text) == text, "run: python -m distillery.filters.reference --write docs/filters.md"


def test_every_schema_key_is_documented():
    assert undocumented_fields() == []
    reference = schema_reference()
    for name in FilterSpec.model_fields:
        if name != "prompt_template":
            assert f"| `{name}` |" in reference
    for key in ("weight", "critical_rules", "max_overall", "min_overall", "case_sensitive_patterns",
                "rescue_threshold", "head_tokens", "max_article_chars", "cascade_threshold"):
        assert f"| `{key}` |" in reference


def test_docs_mention_every_placeholder_and_command():
    text = DOC.read_text(encoding="utf-8")
    for token in ("{{dimensions}}", "{{content_caps}}", "{{output_schema}}", "{{article}}",
                  "distillery new-filter", "distillery validate", "distillery filters prompt", "distillery filters list"):
        assert token in text


def test_check_mode_detects_a_stale_doc(tmp_path, capsys):
    stale = tmp_path / "filters.md"
    stale.write_text(f"# Doc\n\n{BEGIN}\nold\n{END}\n", encoding="utf-8")
    assert main([str(stale)]) == 1
    assert "is stale" in capsys.readouterr().err
    assert main([str(stale), "--write"]) == 0
    assert main([str(stale)]) == 0
    assert "| `dimensions` |" in stale.read_text(encoding="utf-8")


def test_doc_without_markers_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="lacks the markers"):
        render_doc("no markers here")
