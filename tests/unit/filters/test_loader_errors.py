"""Every way a filter package can be wrong gives a FilterSpecError naming the file and the field."""

from __future__ import annotations

import pytest

from distillery.filters import FilterCatalog, FilterSpecError, load_filter
from distillery.filters.loader import validate_path


def _dim(data: dict, name: str) -> dict:
    return next(d for d in data["dimensions"] if d["name"] == name)


def _set(path: str, value):
    """An edit that sets ``a.b.c`` (list items by index) in the spec dict."""

    def edit(data: dict) -> None:
        *parents, last = path.split(".")
        node = data
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        node[int(last) if last.isdigit() else last] = value

    return edit


CASES = {
    # id: (edit, field named in the message, words of the problem)
    "gatekeeper_unknown_dimension": (
        _set("gatekeepers.0.dimension", "evidence_levl"),
        "gatekeepers[0] (evidence_gatekeeper).dimension",
        "unknown dimension 'evidence_levl'",
    ),
    "weights_do_not_sum_to_one": (
        _set("dimensions.0.weight", 0.5),
        "dimensions.weight",
        "must sum to 1.0, they sum to 1.2000",
    ),
    "hyphenated_dimension_name": (
        _set("dimensions.1.name", "social-cohesion"),
        "dimensions[1] (social-cohesion).name",
        "use underscores, not hyphens",
    ),
    "hyphenated_filter_name": (
        _set("name", "up-lifting"),
        "name",
        "use underscores, not hyphens",
    ),
    "hyphenated_gatekeeper_name": (
        _set("gatekeepers.0.name", "evidence-gate"),
        "gatekeepers[0] (evidence-gate).name",
        "use underscores",
    ),
    "duplicate_dimension": (
        _set("dimensions.1.name", "human_wellbeing_impact"),
        "dimensions[1] (human_wellbeing_impact).name",
        "duplicate dimension",
    ),
    "missing_scale_band": (
        lambda d: d["dimensions"][2]["scale"].pop("5-6"),
        "dimensions[2] (justice_rights_impact).scale",
        "missing ['5-6']",
    ),
    "unknown_scale_band": (
        lambda d: d["dimensions"][2]["scale"].update({"10-11": "beyond"}),
        "dimensions[2] (justice_rights_impact).scale",
        "unknown ['10-11']",
    ),
    "typo_in_dimension_key": (
        lambda d: d["dimensions"][0].update({"descripton": "x"}),
        "dimensions[0] (human_wellbeing_impact).descripton",
        "unknown key; did you mean 'description'?",
    ),
    "typo_at_top_level": (
        lambda d: d.update({"gatekeeper": []}),
        "gatekeeper",
        "did you mean 'gatekeepers'?",
    ),
    "typo_in_prefilter": (
        lambda d: d["prefilter"].update({"min_lenght": 200}),
        "prefilter.min_lenght",
        "did you mean 'min_length'?",
    ),
    "typo_in_student_truncation": (
        lambda d: d["student"]["truncation"].update({"head_token": 128}),
        "student.truncation.head_token",
        "did you mean 'head_tokens'?",
    ),
    "bad_regex_in_exclusion": (
        lambda d: d["prefilter"]["exclusions"][0]["patterns"].append("(unclosed"),
        "prefilter.exclusions[0] (corporate_finance).patterns",
        "invalid regular expression '(unclosed'",
    ),
    "bad_regex_in_positive_patterns": (
        lambda d: d["prefilter"]["positive_patterns"].append("[a-"),
        "prefilter.positive_patterns",
        "invalid regular expression",
    ),
    "lowest_tier_not_zero": (
        _set("tiers.2.min_overall", 1.0),
        "tiers",
        "lowest tier must have min_overall: 0",
    ),
    "duplicate_tier_threshold": (
        _set("tiers.1.min_overall", 7.0),
        "tiers[1] (medium).min_overall",
        "used by another tier",
    ),
    "duplicate_gatekeeper_name": (
        lambda d: d["gatekeepers"].append(dict(d["gatekeepers"][0])),
        "gatekeepers[1] (evidence_gatekeeper).name",
        "duplicate name",
    ),
    "missing_weight": (
        lambda d: d["dimensions"][3].pop("weight"),
        "dimensions[3] (evidence_level).weight",
        "required key is missing",
    ),
    "weight_out_of_range": (
        _set("dimensions.0.weight", -0.3),
        "dimensions[0] (human_wellbeing_impact).weight",
        "greater than 0",
    ),
    "gatekeeper_threshold_out_of_range": (
        _set("gatekeepers.0.threshold", 11),
        "gatekeepers[0] (evidence_gatekeeper).threshold",
        "less than or equal to 10",
    ),
    "exclusion_without_rules": (
        lambda d: d["prefilter"]["exclusions"].append({"name": "empty_category", "exceptions": ["x"]}),
        "prefilter.exclusions[7] (empty_category)",
        "needs keywords or patterns",
    ),
    "content_cap_without_trigger": (
        _set("content_caps.0.triggers", []),
        "content_caps[0] (corporate_finance).triggers",
        "at least 1 item",
    ),
    "no_dimensions": (
        _set("dimensions", []),
        "dimensions",
        "at least 1 item",
    ),
    "prompt_template_in_yaml": (
        _set("prompt_template", "x"),
        "prompt_template",
        "the prompt lives in prompt.md",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_invalid_spec_names_file_and_field(make_package, case):
    edit, field, words = CASES[case]
    package = make_package(edit)
    with pytest.raises(FilterSpecError) as info:
        load_filter(package)
    message = str(info.value)
    assert info.value.path == str(package / "filter.yaml")
    assert message.startswith(str(package / "filter.yaml"))
    assert field in message, message
    assert words in message, message


def test_all_cross_field_problems_are_reported_together(make_package):
    def edit(d):
        d["gatekeepers"][0]["dimension"] = "nope"
        d["dimensions"][0]["weight"] = 0.9

    with pytest.raises(FilterSpecError) as info:
        load_filter(make_package(edit))
    problems = info.value.problems
    assert any(p.startswith("gatekeepers[0] (evidence_gatekeeper).dimension") for p in problems)
    assert any(p.startswith("dimensions.weight") for p in problems)


def test_missing_prompt(make_package):
    package = make_package()
    (package / "prompt.md").unlink()
    with pytest.raises(FilterSpecError) as info:
        load_filter(package)
    assert info.value.path == str(package / "prompt.md")
    assert "missing prompt.md" in str(info.value)


@pytest.mark.parametrize("placeholder", ["{{dimensions}}", "{{output_schema}}", "{{article}}", "{{content_caps}}"])
def test_missing_placeholder(make_package, placeholder):
    source = (make_package(name="source") / "prompt.md").read_text(encoding="utf-8")
    package = make_package(prompt=source.replace(placeholder, ""))
    with pytest.raises(FilterSpecError) as info:
        load_filter(package)
    assert info.value.path == str(package / "prompt.md")
    assert placeholder in str(info.value)


def test_content_caps_placeholder_optional_without_caps(make_package):
    source = (make_package(name="source") / "prompt.md").read_text(encoding="utf-8")
    package = make_package(lambda d: d.pop("content_caps"), prompt=source.replace("{{content_caps}}", ""))
    assert load_filter(package).content_caps == []


def test_unknown_placeholder(make_package):
    source = (make_package(name="source") / "prompt.md").read_text(encoding="utf-8")
    package = make_package(prompt=source + "\n{{dimension}}\n")
    with pytest.raises(FilterSpecError) as info:
        load_filter(package)
    assert "unknown placeholder(s) {{dimension}}" in str(info.value)


def test_version_folder_mismatch(make_package):
    package = make_package(lambda d: d.update({"version": 2}))
    with pytest.raises(FilterSpecError) as info:
        load_filter(package)
    assert "version: 2 does not match its folder v1/" in str(info.value)
    assert info.value.path == str(package / "filter.yaml")


def test_name_folder_mismatch(make_package):
    package = make_package(name="uplifting")
    spec = package / "filter.yaml"
    spec.write_text(spec.read_text(encoding="utf-8").replace("name: uplifting", "name: thriving", 1),
                    encoding="utf-8")
    with pytest.raises(FilterSpecError) as info:
        load_filter(package)
    assert "name: 'thriving' does not match its folder uplifting/" in str(info.value)


def test_hyphenated_folder_cannot_hold_a_valid_name(make_package):
    package = make_package(name="up_lifting")
    target = package.parent.parent / "up-lifting"
    package.parent.rename(target)
    with pytest.raises(FilterSpecError) as info:
        load_filter(target / "v1")
    assert "does not match its folder up-lifting/" in str(info.value)


@pytest.mark.parametrize("raw, words", [
    ("name: x\n  bad: [indent\n", "not valid YAML"),
    ("- just\n- a list\n", "must hold a mapping"),
    ("", "must hold a mapping"),
])
def test_invalid_yaml(make_package, raw, words):
    package = make_package(raw=raw)
    with pytest.raises(FilterSpecError) as info:
        load_filter(package)
    assert info.value.path == str(package / "filter.yaml")
    assert words in str(info.value)


def test_missing_spec_file(tmp_path):
    with pytest.raises(FilterSpecError) as info:
        load_filter(tmp_path / "nothing" / "v1")
    assert "missing filter.yaml" in str(info.value)


def test_validate_path_reports_every_bad_package(make_package):
    make_package(name="good_one")
    make_package(lambda d: d["dimensions"][0].update({"weight": 0.9}), name="bad_weights")
    make_package(lambda d: d.update({"tiers": [{"name": "only", "min_overall": 2}]}), name="bad_tiers")
    root = make_package(name="also_good").parent.parent
    (root / "stray").mkdir()
    (root / "stray" / "filter.yaml").write_text("name: stray\n", encoding="utf-8")
    specs, errors = validate_path(root)
    assert sorted(s.name for s in specs) == ["also_good", "good_one"]
    messages = "\n".join(str(e) for e in errors)
    assert "bad_weights/v1/filter.yaml" in messages and "must sum to 1.0" in messages
    assert "bad_tiers/v1/filter.yaml" in messages and "lowest tier" in messages
    assert "stray/filter.yaml" in messages and "would never be loaded" in messages
    # The catalog, by contrast, refuses to start with a bad package.
    with pytest.raises(FilterSpecError):
        FilterCatalog.load(root)


def test_validate_path_missing(tmp_path):
    with pytest.raises(FilterSpecError, match="no such file or folder"):
        validate_path(tmp_path / "absent")
    with pytest.raises(FilterSpecError, match="no filter packages found"):
        validate_path(tmp_path)


def test_misspelt_required_key_is_one_problem(make_package):
    def edit(d):
        d["dimensions"][0]["wieght"] = d["dimensions"][0].pop("weight")

    with pytest.raises(FilterSpecError) as info:
        load_filter(make_package(edit))
    assert info.value.problems == [
        ("dimensions[0] (human_wellbeing_impact).wieght: unknown key; did you mean 'weight'? "
        "(allowed: name, weight, description, scale, critical_rules, evidence_focus)")
    ]
