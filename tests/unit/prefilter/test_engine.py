"""The rule engine: every rule kind, its reason code and matched term, and the matching pitfalls."""

from __future__ import annotations

import pytest
from distillery_services.prefilter.engine import PrefilterEngine

from distillery.filters import FilterSpecError, UnknownFilterError

BODY = " Filler sentence about nothing in particular." * 3


def one(engine, title="Title", text=BODY, **kw):
    (verdict,) = engine.check(title, text, **kw).verdicts
    return verdict


def codes(verdict):
    return [r.code for r in verdict.reasons]


def test_plain_article_passes(make_spec):
    v = one(PrefilterEngine([make_spec({})]))
    assert v.passed and codes(v) == ["passed"]


def test_exclusion_keyword_blocks_with_reason_and_term(make_spec):
    spec = make_spec({"exclusions": [{"name": "crime", "keywords": ["murder", "armed robbery"]}]})
    v = one(PrefilterEngine([spec]), text="Police say an ARMED   robbery happened." + BODY)
    assert not v.passed
    assert v.reasons[0].code == "excluded:crime" and v.reasons[0].matched == "armed robbery"


def test_keywords_match_whole_words_only(make_spec):
    spec = make_spec({"exclusions": [{"name": "ai", "keywords": ["ai", "ev"]}]})
    engine = PrefilterEngine([spec])
    assert one(engine, text="The rain in Spain; every event was even." + BODY).passed
    assert not one(engine, text="An AI model." + BODY).passed
    assert not one(engine, text="(ev) charging" + BODY).passed


def test_prefix_and_suffix_wildcards(make_spec):
    spec = make_spec({"exclusions": [{"name": "c", "keywords": ["crypto*"]}]})
    engine = PrefilterEngine([spec])
    assert one(engine, text="Cryptocurrency prices" + BODY).reasons[0].matched == "crypto*"
    assert one(engine, text="encrypto stuff" + BODY).passed


def test_regex_pattern_blocks_and_reports_the_match(make_spec):
    spec = make_spec({"exclusions": [{"name": "deals", "patterns": [r"\b\d{1,3}% off\b"]}]})
    v = one(PrefilterEngine([spec]), text="Get 40% OFF today" + BODY)
    assert not v.passed and v.reasons[0] == ("excluded:deals", "40% off")


def test_regex_alternations_without_literals_still_run(make_spec):
    spec = make_spec({"exclusions": [{"name": "ver", "patterns": [r"\bv\d+\.\d+\.\d+\b", r"\d+-\d+ win"]}]})
    engine = PrefilterEngine([spec])
    assert not one(engine, text="Release v1.2.3 is out" + BODY).passed
    assert one(engine, text="Release xv1.2.3 is out" + BODY).passed
    assert not one(engine, text="a 3-1 win" + BODY).passed


def test_case_sensitive_pattern_stays_case_sensitive(make_spec):
    spec = make_spec({"exclusions": [{"name": "obituary", "case_sensitive_patterns": [r"\bRIP\b"]}]})
    engine = PrefilterEngine([spec])
    assert not one(engine, title="RIP John Smith").passed
    assert one(engine, title="Rip currents at the beach").passed
    assert one(engine, title="rip it up").passed


def test_case_insensitive_pattern_with_upper_case_letters(make_spec):
    spec = make_spec({"exclusions": [{"name": "shows", "patterns": [r"\bCES 20\d\d\b", r"[A-Z]{3}X\d"]}]})
    engine = PrefilterEngine([spec])
    assert not one(engine, text="at ces 2025 this week" + BODY).passed
    assert not one(engine, text="model abcx9 announced" + BODY).passed


def test_exception_keyword_cancels_its_category_only(make_spec):
    spec = make_spec({
        "exclusions": [
            {"name": "electronics", "keywords": ["smartphone"], "exceptions": ["right to repair"]},
            {"name": "deals", "keywords": ["black friday"]},
        ]
    })
    engine = PrefilterEngine([spec])
    v = one(engine, text="A smartphone and the right to repair." + BODY)
    assert v.passed and codes(v) == ["passed", "exception:electronics"]
    assert v.reasons[1].matched == "right to repair"
    v = one(engine, text="A smartphone, right to repair, black friday." + BODY)
    assert not v.passed and codes(v) == ["excluded:deals", "exception:electronics"]


def test_category_positive_threshold(make_spec):
    spec = make_spec({
        "positive_patterns": ["solar", "battery", r"\bheat pumps?\b"],
        "exclusions": [{"name": "ai", "keywords": ["llm"], "positive_threshold": 2}],
    })
    engine = PrefilterEngine([spec])
    assert not one(engine, text="An LLM for solar farms" + BODY).passed
    v = one(engine, text="An LLM for solar farms and heat pumps" + BODY)
    assert v.passed and codes(v) == ["passed", "positives:ai"]


def test_global_rescue_threshold(make_spec):
    spec = make_spec({
        "positive_patterns": ["climate", "emissions"],
        "rescue_threshold": 2,
        "exclusions": [{"name": "crime", "keywords": ["arrested"]}],
    })
    engine = PrefilterEngine([spec])
    assert not one(engine, text="Activist arrested at climate march" + BODY).passed
    v = one(engine, text="Activist arrested at climate march on emissions" + BODY)
    assert v.passed and v.reasons[1].code == "rescued:crime" and v.reasons[1].matched == "climate"


def test_title_only_category(make_spec):
    spec = make_spec({"exclusions": [{"name": "clickbait", "keywords": ["you won't believe"], "title_only": True}]})
    engine = PrefilterEngine([spec])
    assert not one(engine, title="You Won't Believe This").passed
    assert one(engine, title="Normal title", text="you won't believe" + BODY).passed


def test_scan_window_is_bounded(make_spec):
    spec = make_spec({"scan_chars": 100, "exclusions": [{"name": "crime", "keywords": ["murder"]}]})
    engine = PrefilterEngine([spec])
    assert one(engine, text="x" * 200 + " murder").passed
    assert not one(engine, text="x " * 20 + "murder").passed


def test_scan_window_counts_characters_not_bytes(make_spec):
    # Non-ASCII text is scanned as UTF-8 bytes: the window's bounds still count characters.
    for scan_chars in (100, 2000):
        spec = make_spec({"scan_chars": scan_chars, "exclusions": [{"name": "crime", "keywords": ["murder"]}]})
        engine = PrefilterEngine([spec])
        lead = "é€ " * ((scan_chars - 10) // 3)  # about 2.3 bytes per character
        assert not one(engine, text=lead + " murder and more").passed
        assert not one(engine, title="Straße", text=lead + " murder and more").passed
        assert one(engine, text=lead + "é€ " * 10 + " murder").passed


def test_html_and_zero_width_do_not_hide_keywords(make_spec):
    spec = make_spec({"exclusions": [{"name": "crime", "keywords": ["murder"]}]})
    engine = PrefilterEngine([spec])
    assert not one(engine, text="<p>mur\u200bder</p>" + BODY).passed
    assert not one(engine, text="ＭＵＲＤＥＲ" + BODY).passed  # full-width, NFKC


def test_length_rules(make_spec):
    engine = PrefilterEngine([make_spec({"min_length": 50, "max_length": 1000})])
    assert one(engine, text="short").reasons[0] == ("too_short", "5 chars")
    assert one(engine, text="<div>" * 20 + "short").reasons[0].code == "too_short"  # markup does not count
    assert one(engine, text="y" * 1001).reasons[0] == ("too_long", "1001 chars")
    assert one(engine, text="").reasons[0].code == "too_short"


def test_domain_rules(make_spec):
    spec = make_spec({
        "blocked_domains": ["github.com", "medium.com/tag"],
        "allowed_domains": ["blog.github.com"],
        "min_length": 1000,
    })
    engine = PrefilterEngine([spec])
    assert one(engine, url="https://www.github.com/x").reasons[0] == ("domain:github.com", "github.com")
    assert one(engine, url="https://gist.github.com/x").reasons[0].code == "domain:github.com"
    assert one(engine, url="https://notgithub.com/x").reasons[0].code == "too_short"
    assert one(engine, url="https://medium.com/tag/ai").reasons[0].code == "domain:medium.com/tag"
    assert one(engine, url="https://medium.com/story").reasons[0].code == "too_short"
    v = one(engine, url="https://blog.github.com/post")  # allow list beats the length rule
    assert v.passed and v.reasons[0].code == "allowed_domain:blog.github.com"


def test_source_type_rule(make_spec):
    engine = PrefilterEngine([make_spec({"blocked_source_types": ["code_repo"]})])
    assert one(engine, source_type="Code_Repo").reasons[0] == ("source_type:code_repo", "code_repo")
    assert one(engine, source_type="news_major").passed


def test_language_rule_with_given_and_detected_language(make_spec):
    engine = PrefilterEngine([make_spec({"languages": ["en", "nl"]})])
    assert one(engine, language="en-GB").passed
    assert one(engine, language="fr").reasons[0] == ("language:fr", "fr")
    german = "Die Regierung hat heute neue Regeln für die Energieversorgung beschlossen und die Bürger informiert."
    result = engine.check("Neue Regeln", german)
    assert result.language == "de" and not result.verdicts[0].passed
    dutch = "De regering heeft vandaag nieuwe regels voor de energievoorziening aangekondigd voor alle burgers."
    assert engine.check("Nieuwe regels", dutch).verdicts[0].passed


def test_topic_gate(make_spec):
    engine = PrefilterEngine([make_spec({"require_any": ["solar", "wind power"]})])
    assert one(engine).reasons[0].code == "off_topic"
    assert one(engine, text="wind power" + BODY).reasons[0] == ("passed", "wind power")


def test_disabled_prefilter_passes_everything(make_spec):
    engine = PrefilterEngine([make_spec({"enabled": False, "min_length": 100})])
    assert one(engine, text="x").passed


def test_many_filters_one_pass_and_selection(make_spec):
    a = make_spec({"exclusions": [{"name": "crime", "keywords": ["murder"]}]}, name="alpha")
    b = make_spec({"exclusions": [{"name": "sport", "keywords": ["football"]}]}, name="beta")
    b2 = make_spec({}, name="beta", version=2)
    engine = PrefilterEngine([a, b, b2])
    result = engine.check("t", "murder at the football match" + BODY)
    assert [(v.ref, v.passed) for v in result.verdicts] == [
        ("alpha/v1", False), ("beta/v1", False), ("beta/v2", True)]
    assert engine.select([("beta", 0)]) == [2]
    assert engine.select([("beta", 1), ("alpha", 0)]) == [1, 0]
    only = engine.check("t", "murder" + BODY, filters=engine.select([("beta", 1)]))
    assert [v.ref for v in only.verdicts] == ["beta/v1"]
    with pytest.raises(UnknownFilterError, match="unknown filter 'gamma'"):
        engine.select([("gamma", 0)])
    with pytest.raises(UnknownFilterError):
        engine.select([("alpha", 7)])


def test_same_keyword_whole_word_and_prefix_in_different_filters(make_spec):
    a = make_spec({"exclusions": [{"name": "c", "keywords": ["solar"]}]}, name="alpha")
    b = make_spec({"exclusions": [{"name": "c", "keywords": ["solar*"]}]}, name="beta")
    result = PrefilterEngine([a, b]).check("t", "solarpunk" + BODY)
    assert [v.passed for v in result.verdicts] == [True, False]


def test_unicode_keywords(make_spec):
    spec = make_spec({"exclusions": [{"name": "c", "keywords": ["coöperatie", "straße"]}]})
    engine = PrefilterEngine([spec])
    assert not one(engine, text="De COÖPERATIE groeit" + BODY).passed
    assert not one(engine, text="Die STRASSE ist neu" + BODY).passed


def test_ten_megabyte_text_is_bounded(make_spec):
    spec = make_spec({"exclusions": [{"name": "crime", "keywords": ["murder"]}], "max_length": 20_000_000})
    v = one(PrefilterEngine([spec]), text="calm " * 2_000_000 + "murder")
    assert v.passed


def test_invalid_regex_is_refused_with_rule_named(make_spec, tmp_path):
    from distillery.filters.loader import load_filter

    with pytest.raises(ValueError, match="invalid regular expression"):
        make_spec({"exclusions": [{"name": "bad", "patterns": ["(unclosed"]}]})
    pkg = tmp_path / "broken" / "v1"
    pkg.mkdir(parents=True)
    (pkg / "prompt.md").write_text("{{dimensions}} {{output_schema}} {{article}}")
    import yaml

    spec = make_spec({}).model_dump()
    spec["name"] = "broken"
    spec["prefilter"]["exclusions"] = [{"name": "bad", "patterns": ["[a-"]}]
    (pkg / "filter.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(FilterSpecError) as info:
        load_filter(pkg)
    message = str(info.value)
    assert "filter.yaml" in message and "exclusions[0] (bad).patterns" in message


def test_triggered_regexes_give_the_same_answers_as_a_plain_search(make_spec):
    """Regexes run only near their trigger literals (anchored match or a bounded window); compare with re."""
    import re

    patterns = [r"\b\d{1,3}% off\b", r"\bwon \d+-\d+\b", r"\bbeat .{1,40} \d+-\d+\b", r"\braised \$?\d+ ?(?:m|bn)\b"]
    spec = make_spec({"exclusions": [{"name": f"c{i}", "patterns": [p]} for i, p in enumerate(patterns)]})
    engine = PrefilterEngine([spec])
    texts = [
        "get 40% off now", "get 40% offer now", "x40% off", "wonder won 3-1 today", "wonder 3-1",
        "they beat the visiting side from the north 2-0", "beat 2-0", "firm raised $5bn", "firm raised 5 m",
        "won 3-1 and 50% off and raised $2 m", "nothing here at all",
    ]
    for text in texts:
        expected = next((f"excluded:c{i}" for i, p in enumerate(patterns) if re.search(p, text.lower())), "passed")
        got = one(engine, text=text + BODY).reasons[0].code
        assert got == expected, text


def test_topic_threshold_passes_the_gate_on_positive_matches(make_spec):
    spec = make_spec({
        "require_any": ["solar"],
        "positive_patterns": ["gpu", "software", "latency", "benchmark*"],
        "topic_threshold": 3,
    })
    engine = PrefilterEngine([spec])
    v = one(engine, text="A GPU and its software." + BODY)
    assert not v.passed and codes(v) == ["off_topic"]
    v = one(engine, text="A GPU, its software and lower latency on benchmarks." + BODY)
    assert v.passed and codes(v) == ["passed", "topic_positives"]
    assert v.reasons[0].matched == "gpu" and v.reasons[1].matched == "4 positive matches"
    assert codes(one(engine, text="A solar roof." + BODY)) == ["passed"]


def test_topic_threshold_zero_keeps_the_keyword_gate(make_spec):
    spec = make_spec({"require_any": ["solar"], "positive_patterns": ["gpu", "software"]})
    v = one(PrefilterEngine([spec]), text="A GPU and its software." + BODY)
    assert not v.passed and codes(v) == ["off_topic"]


def test_unspaced_script_keywords_match_inside_runs(make_spec):
    spec = make_spec({"require_any": ["电动", "ev"], "exclusions": [{"name": "x", "keywords": ["テスト"]}]})
    engine = PrefilterEngine([spec])
    assert one(engine, text="这家公司研发电动船舶推进系统。" + BODY).passed
    v = one(engine, text="电动のテスト結果" + BODY)
    assert not v.passed and v.reasons[0] == ("excluded:x", "テスト")
    # Latin keywords keep whole-word matching next to Han characters' neighbours that are letters.
    assert not one(engine, text="every event" + BODY).passed


@pytest.mark.parametrize("ws", ["  ", "\n\n", "\t", "\x1c", " \r\n ", "\u2028", "\u3000 "])
def test_whitespace_runs_give_the_same_verdicts_as_single_spaces(make_spec, ws):
    """The engine scans a speculative (uncollapsed) window first and re-cleans when it holds whitespace
    that cleaning removes: verdicts, reasons and matched terms are those of the cleaned text."""
    spec = make_spec({
        "exclusions": [{"name": "crime", "keywords": ["armed robbery"], "patterns": [r"\bshot\s+dead\b"]}],
        "require_any": ["solar panel"],
        "max_length": 100_000,
    })
    engine = PrefilterEngine([spec])
    words = ["solar", "panel", "news", "armed", "robbery", "shot", "dead", "today"] * 40
    for i in (0, 1, 4, 5, 100, 250):
        spaced = " ".join(words[:i]) + ws + " ".join(words[i:])
        plain = " ".join(words)
        assert engine.check("T", spaced) == engine.check("T", plain), (i, ws)
    v = one(engine, text="solar" + ws + "panel news today. " * 3)
    assert v.passed and v.reasons[0] == ("passed", "solar panel")
