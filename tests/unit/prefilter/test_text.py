"""Text normalisation pitfalls: HTML, zero-width characters, NFKC, surrogates, whitespace, bounded window."""

from __future__ import annotations

import unicodedata

from distillery_services.prefilter.text import clean, make_window, normalise_term


def test_html_tags_and_entities_are_removed():
    assert clean("<p>Solar <b>power</b>&nbsp;&amp; wind</p>") == "Solar power & wind"


def test_script_and_style_blocks_are_dropped_with_their_content():
    assert clean("a<script>var solar = 1;</script> b<style>.x{}</style> c") == "a b c"


def test_zero_width_and_soft_hyphen_are_removed():
    assert clean("so\u200blar pa\u00adnel \ufeffgrid") == "solar panel grid"


def test_nfkc_folds_compatibility_characters():
    # full-width letters, the "fi" ligature and a no-break space
    assert clean("ＳＯＬＡＲ \ufb01ne\u00a0day") == "SOLAR fine day"


def test_character_wise_nfkc_equals_normalising_the_whole_text():
    # Math symbols, emoji and spacing accents are normalised one by one; combining marks, Hangul jamo and
    # Indic vowel signs compose with their neighbour and take the whole-text path.
    for text in ("x \u2260 y \u2265 3 \u221a2 \u222b \u2705\ufe0f", "na\u00a8ve \u2264 e\u0301t\u00e9",
                 "=\u0338 \ufb01 \u2126", "\u1100\u1161\u11a8 \ud55c", "\u0b47\u0b3e \u0915\u093e \u00bd"):
        assert clean(text) == " ".join(unicodedata.normalize("NFKC", text).split()), text


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
    from distillery_services.prefilter.text import DIRTY

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


def test_marked_up_body_window_equals_cleaning_the_whole_body():
    """A long marked-up body is cleaned only as far as the window needs; the window is the one cleaning all of
    it gives, entities are decoded once, and a body that cleans short is still measured exactly."""
    from distillery_services.prefilter.text import clean_folded

    body = "".join(f"<p class='x'>Heat pumps &amp; solar&nbsp;{i} &amp;lt;ok&gt;</p>\n  " for i in range(400))
    w = make_window("Title", body, scan_chars=1000)
    cleaned, folded = clean_folded(body)
    assert w.text == "Title\n" + cleaned[:1000] and w.folded == "title\n" + folded[:1000]
    assert "&lt;ok>" in w.text  # "&amp;lt;" decoded once
    assert w.body_chars == -1  # only a prefix was cleaned: the body is longer than the window
    short = "<div>" + "<br>" * 900 + "a few words</div>"
    assert make_window("Title", short, scan_chars=1000).body_chars == len("a few words")
