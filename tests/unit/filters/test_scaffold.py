"""`new_filter` writes a package that validates, for any dimension count or list of names."""

from __future__ import annotations

import math

import pytest

from distillery.filters import load_filter, prompt_hash, render_prompt
from distillery.filters.scaffold import MAX_DIMENSIONS, dimension_names, equal_weights, new_filter


@pytest.mark.parametrize("n", [1, 2, 3, 5, 7, 8, MAX_DIMENSIONS])
def test_scaffold_validates_for_any_dimension_count(tmp_path, n):
    package = new_filter("my_filter", n, tmp_path)
    assert package == tmp_path / "my_filter" / "v1"
    spec = load_filter(package)
    assert spec.ref == "my_filter/v1"
    assert spec.dimension_names == [f"dimension_{i}" for i in range(1, n + 1)]
    assert math.isclose(sum(spec.weights), 1.0, abs_tol=1e-6)
    assert len(prompt_hash(spec)) == 12
    prompt = render_prompt(spec, "Title", "text " * 100)
    assert "{{" not in prompt and "score ALL dimensions 0-2" in prompt


def test_scaffold_with_named_dimensions(tmp_path):
    spec = load_filter(new_filter("nature", "recovery_evidence, species_benefit,scale", tmp_path))
    assert spec.dimension_names == ["recovery_evidence", "species_benefit", "scale"]
    assert spec.gatekeepers == [] and spec.content_caps == [] and not spec.prefilter.enabled


def test_scaffold_adds_rules_only_when_asked(tmp_path):
    plain = new_filter("plain", 3, tmp_path)
    text = (plain / "filter.yaml").read_text(encoding="utf-8")
    # Nobody asked: no gatekeeper, cap or prefilter rule, but each is there as a commented example.
    assert "\n# gatekeepers:" in text and "\n# content_caps:" in text and "\n#   min_length: 300" in text
    spec = load_filter(plain)
    assert (spec.gatekeepers, spec.content_caps, spec.prefilter.enabled) == ([], [], False)

    asked = load_filter(new_filter("asked", "impact,evidence,scale", tmp_path, gatekeepers=["evidence"],
                                   content_cap=True, prefilter=True))
    assert [g.dimension for g in asked.gatekeepers] == ["evidence"]
    assert [c.name for c in asked.content_caps] == ["pure_speculation"]
    assert asked.prefilter.enabled and asked.prefilter.min_length == 300 and asked.prefilter.exclusions


def test_scaffold_rejects_a_gatekeeper_on_an_unknown_dimension(tmp_path):
    with pytest.raises(ValueError, match="not a dimension of this filter"):
        new_filter("gated", 3, tmp_path, gatekeepers=["impact"])
    assert not any(tmp_path.iterdir())


def test_equal_weights_sum_to_one():
    for n in range(1, MAX_DIMENSIONS + 1):
        weights = equal_weights(n)
        assert len(weights) == n and all(w > 0 for w in weights)
        assert math.isclose(sum(weights), 1.0, abs_tol=1e-9)


@pytest.mark.parametrize("name, words", [
    ("my-filter", "use underscores, not hyphens"),
    ("MyFilter", "lower-case"),
    ("1filter", "starting with a letter"),
])
def test_scaffold_rejects_bad_filter_names(tmp_path, name, words):
    with pytest.raises(ValueError, match=words):
        new_filter(name, 3, tmp_path)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("dims, words", [
    (0, "between 1 and"),
    (MAX_DIMENSIONS + 1, "between 1 and"),
    ("a,a", "duplicate dimension names: a"),
    ("good,bad-name", "use underscores"),
    (",", "between 1 and"),
])
def test_scaffold_rejects_bad_dimensions(tmp_path, dims, words):
    with pytest.raises(ValueError, match=words):
        new_filter("ok", dims, tmp_path)


def test_scaffold_refuses_to_overwrite(tmp_path):
    package = new_filter("twice", 3, tmp_path)
    (package / "filter.yaml").write_text("edited by an author\n", encoding="utf-8")
    with pytest.raises(FileExistsError, match="--force"):
        new_filter("twice", 4, tmp_path)
    assert (package / "filter.yaml").read_text(encoding="utf-8") == "edited by an author\n"
    assert len(load_filter(new_filter("twice", 4, tmp_path, force=True)).dimensions) == 4


def test_dimension_names_forms():
    assert dimension_names(2) == ["dimension_1", "dimension_2"]
    assert dimension_names("3") == ["dimension_1", "dimension_2", "dimension_3"]
    assert dimension_names(["a", "b"]) == ["a", "b"]
