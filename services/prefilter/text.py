"""Text handling for the rule engine: the bounded, cleaned, normalised window that rules are matched on.

Pitfalls this module exists for (each one bit the first version):

- HTML tags, entities and zero-width / BiDi characters split words (``sol<b>ar</b>``, ``so\u200blar``)
  so keywords silently stopped matching;
- compatibility characters (full-width letters, ligatures, NBSP) only match after NFKC;
- case folding must not be applied to the copy that case-sensitive rules see (``\\bRIP\\b`` must not
  match "rip current"); this module returns both a case-preserving and a case-folded window;
- the scanned window is bounded: the title plus the first N characters of the body, so that a 10 MB
  text costs the same as a 5 KB one.
"""

from __future__ import annotations

import html
import re
import unicodedata
from dataclasses import dataclass

# Zero-width, joiners, BiDi controls, word joiner/invisible operators, BOM, soft hyphen.
_INVISIBLE = (
    [0x00AD, 0x034F, 0x061C, 0x180E, 0xFEFF]
    + list(range(0x200B, 0x2010))
    + list(range(0x202A, 0x202F))
    + list(range(0x2060, 0x2070))
)
_DROP_INVISIBLE = {cp: None for cp in _INVISIBLE}
_INVISIBLE_RE = re.compile("[" + "".join(chr(cp) for cp in _INVISIBLE) + "]")
_ASCII_SPACES = {cp: " " for cp in (9, 10, 11, 12, 13, 28, 29, 30, 31)}
# Invisible characters, and whitespace that NFKC does not turn into a plain space (NEL, U+2028/9).
_UNUSUAL = re.compile("[" + "".join(chr(cp) for cp in _INVISIBLE) + "\x85\u2028\u2029]")
_BYTE_SPACES = bytes(32 if b in (9, 10, 11, 12, 13, 28, 29, 30, 31) else b for b in range(256))
_SURROGATES = re.compile("[\ud800-\udfff]")
_SCRIPT_STYLE = re.compile(r"<(script|style)\b[^>]*>.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_TAG = re.compile(r"</?[A-Za-z][^<>]{0,2000}>|<br\s*/?>", re.IGNORECASE)
# Raw characters read for every scan character: room for markup that cleaning removes.
RAW_FACTOR = 3
RAW_SLACK = 256


def strip_html(text: str) -> str:
    """Remove script/style blocks, comments and tags (a tag becomes a space) and decode entities."""
    if "<" in text:
        text = _COMMENT.sub(" ", text)
        text = _SCRIPT_STYLE.sub(" ", text)
        text = _TAG.sub(" ", text)
    if "&" in text:
        text = html.unescape(text)
    return text


def clean(text: str) -> str:
    """HTML/entity removal, lone surrogates dropped, NFKC, invisible characters removed, whitespace collapsed.

    Every step has a fast path for the common case (checks that run in C over the bytes and skip the
    work when nothing needs doing), which keeps the engine's per-article cost low.
    """
    text = strip_html(text)
    if text.isascii():
        # str.translate is a table lookup for ASCII: control whitespace to spaces, then collapse runs.
        text = text.translate(_ASCII_SPACES)
        while "  " in text:
            text = text.replace("  ", " ")
        return text.strip()
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates (e.g. from JSON escapes): drop them
        text = _SURROGATES.sub("", text)
        data = text.encode("utf-8")
    if not unicodedata.is_normalized("NFKC", text):
        text = unicodedata.normalize("NFKC", text)
        data = text.encode("utf-8")
    if _UNUSUAL.search(text):  # one pass for the rare cases: invisible characters, exotic line breaks
        text = " ".join(_INVISIBLE_RE.sub("", text).split())
        return text
    data = data.translate(_BYTE_SPACES)
    while b"  " in data:
        data = data.replace(b"  ", b" ")
    return data.strip().decode("utf-8")


def normalise_term(term: str) -> str:
    """How a rule keyword is stored: the same NFKC, case folding and whitespace collapse as the text."""
    return " ".join(unicodedata.normalize("NFKC", term).translate(_DROP_INVISIBLE).casefold().split())


@dataclass(frozen=True, slots=True)
class Window:
    """The text rules see: ``title + "\\n" + body[:scan_chars]``, cleaned, in two cases."""

    text: str  # cleaned and normalised, original case (for case-sensitive rules)
    folded: str  # case-folded copy (for keywords and case-insensitive regexes)
    title_end: int  # the title occupies text[:title_end]
    title_end_folded: int  # ... and folded[:title_end_folded]
    body_chars: int  # cleaned body length when the whole body was read, else -1 (body longer than the bound)


def make_window(title: str, body: str, scan_chars: int) -> Window:
    """Title + the first ``scan_chars`` characters of the cleaned body; reads at most a bounded raw prefix."""
    raw_limit = scan_chars + RAW_SLACK
    head = body[:raw_limit]
    if "<" in head or "&" in head:
        raw_limit = scan_chars * RAW_FACTOR + RAW_SLACK  # room for markup that cleaning removes
        head = body[:raw_limit]
    whole = len(body) <= raw_limit
    cleaned_body = clean(head)
    cleaned_title = clean(title[:raw_limit])
    body_chars = len(cleaned_body) if whole else -1
    text = f"{cleaned_title}\n{cleaned_body[:scan_chars]}"
    folded = fold(text)
    title_end = len(cleaned_title)
    # Folding can change lengths (German sharp s -> "ss"): the title ends elsewhere in the folded copy.
    title_end_folded = title_end if len(folded) == len(text) else len(cleaned_title.casefold())
    return Window(text, folded, title_end, title_end_folded, body_chars)


_FOLD_SPECIAL = ("ß", "ς", "ſ", "ﬅ", "ﬆ", "ẞ")


def fold(text: str) -> str:
    """Case folding: ``str.lower`` (twice as fast) unless the text holds a character whose full case
    folding differs from its lower case (German sharp s, final sigma, long s), then ``str.casefold``."""
    if text.isascii():
        return text.lower()
    low = text.lower()
    for ch in _FOLD_SPECIAL:
        if ch in low:
            return text.casefold()
    return low


def is_word_char(ch: str) -> bool:
    return ch.isalnum() or ch == "_"
