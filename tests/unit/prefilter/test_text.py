"""Text normalisation pitfalls: HTML, zero-width characters, NFKC, surrogates, whitespace, bounded window."""

from __future__ import annotations

from services.prefilter.text import clean, make_window, normalise_term


def test_html_tags_and_entities_are_removed():
    assert clean("<p>Solar <b>power</b>&nbsp;&amp; wind</p>") == "Solar power & wind"


def test_script_and_style_blocks_are_dropped_with_their_content():
    assert clean("a<script>var solar = 1;</script> b<style>.x{}</style> c") == "a b c"


def test_zero_width_and_soft_hyphen_are_removed():
    assert clean("so\u200blar pa\u00adnel \ufeffgrid") == "solar panel grid"


def test_nfkc_folds_compatibility_characters():
    # full-width letters, the "fi" ligature and a no-break space
    assert clean("ＳＯＬＡＲ \ufb01ne\u00a0day") == "SOLAR fine day"


def test_whitespace_runs_and_control_characters_collapse():
    assert clean("heat\n\n  pump\t\tinstalled ") == "heat pump installed"
    assert clean("heat\u2028pump caf\u00e9") == "heat pump café"


def test_lone_surrogates_are_dropped():
    assert clean("caf\u00e9 \ud800solar") == "café solar"


def test_window_is_bounded_and_keeps_title():
    w = make_window("Title", "x" * 10_000_000, scan_chars=100)
    assert w.text.startswith("Title\n")
    assert len(w.text) == len("Title\n") + 100
    assert w.body_chars == -1  # body longer than what was read


def test_window_title_end_and_folding():
    w = make_window("Straße News", "body text", scan_chars=50)
    assert w.text[: w.title_end] == "Straße News"
    assert w.folded[: w.title_end_folded] == "strasse news"
    assert w.body_chars == len("body text")


def test_normalise_term_matches_text_normalisation():
    assert normalise_term("  Heat\u00a0 PUMP ") == "heat pump"


def test_speculative_window_equals_cleaned_window_when_no_whitespace_needs_collapsing():
    body = "Heat pumps and solar panels, installed in 2024. " * 60
    spec = make_window("A title", body, scan_chars=1000, collapse=False)
    full = make_window("A title", body, scan_chars=1000)
    assert not spec.collapsed and full.collapsed
    assert spec[:5] == full[:5]


def test_speculative_window_falls_back_when_whitespace_lies_outside_the_scanned_text():
    from services.prefilter.text import DIRTY

    body = "word " * 250
    # a newline anywhere, or a run straddling the window's end or beyond it: cleaned at once
    for raw in ("a\nb " + body, body[:999] + "  " + body, body[:1010] + "\t" + body):
        w = make_window("T", raw, scan_chars=1000, collapse=False)
        assert w.collapsed and w == make_window("T", raw, scan_chars=1000)
    # a run inside the window is left for the caller's scan to find (it looks for DIRTY)
    w = make_window("T", "a  b " + body, scan_chars=1000, collapse=False)
    assert not w.collapsed and "  " in w.folded and "  " in DIRTY
    # markup always takes the full path (removed tags leave runs of spaces)
    assert make_window("T", "<p>a</p> " + body, scan_chars=1000, collapse=False).collapsed
