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
from typing import NamedTuple

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
# Without markup: raw characters read beyond scan_chars (whitespace runs collapse, and the character at the
# window's edge needs its neighbour for the word-boundary check); a body that cleans shorter is re-read.
RAW_MARGIN = 64
RAW_EDGE = 1
MAX_RAW_FACTOR = 64


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
    """HTML/entity removal, lone surrogates dropped, NFKC, invisible characters removed, whitespace collapsed."""
    return clean_folded(text)[0]


_ASCII_BYTES = bytes(range(128))
# Non-ASCII characters that NFKC never composes with a neighbour (no combining marks, no jamo, no
# script-specific vowel signs): for text whose non-ASCII characters all lie here, the text is NFKC-normal
# exactly when those characters, taken alone, are.
_NFKC_CONTEXT_FREE = re.compile("[^\u0080-\u02ff\u2000-\u206f\u20a0-\u20cf\u2100-\u214f]")


_NFKC_CHAR: dict[str, str | None] = {}


def _nfkc_char(ch: str) -> str | None:
    """NFKC of one character when it does not depend on the neighbours (None when it may)."""
    try:
        return _NFKC_CHAR[ch]
    except KeyError:
        pass
    out = unicodedata.normalize("NFKC", ch)
    free = not _NFKC_CONTEXT_FREE.search(ch) and not any(
        unicodedata.combining(c) or _NFKC_CONTEXT_FREE.search(c) for c in out if not c.isascii())
    if len(_NFKC_CHAR) < 4096:
        _NFKC_CHAR[ch] = out if free else None
    return out if free else None


def _context_free_nfkc(rest: str) -> list[tuple[str, str]] | None:
    """For the non-ASCII characters ``rest`` of a text: the (character, NFKC) replacements that normalise
    the text, [] when it is already normal, None when a character's NFKC may depend on its neighbours."""
    out = []
    for ch in set(rest):
        repl = _nfkc_char(ch)
        if repl is None:
            return None
        if repl != ch:
            out.append((ch, repl))
    return out


def clean_folded(text: str, collapse: bool = True) -> tuple[str, str]:
    """:func:`clean`, and the cleaned text case-folded (as :func:`fold`), computed together.

    ``collapse=False`` (speculative): on the fast paths, skip turning control whitespace into spaces and
    collapsing runs of spaces (two passes over the text, and runs are rare in real articles); the ends
    are still stripped. The caller must then check that the result holds no whitespace run and no
    control whitespace (see :data:`DIRTY`), and clean again with ``collapse=True`` when it does.

    Every step has a fast path for the common case, checks that run in C and skip the work when nothing
    needs doing: ASCII text is handled with str methods; other text is examined through its non-ASCII
    characters alone (usually a few quotes, dashes and accented letters): when those need no NFKC, hold
    no invisible character and have no case, the whitespace collapse and the case folding run on the
    UTF-8 bytes, where both are table lookups.
    """
    text = strip_html(text)
    if text.isascii():
        data = text.encode("ascii")
        rest = ""
    else:
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates (e.g. from JSON escapes): drop them
            text = _SURROGATES.sub("", text)
            data = text.encode("utf-8")
        rest = data.translate(None, _ASCII_BYTES).decode("utf-8")  # the non-ASCII characters, in order
        if _UNUSUAL.search(rest):
            return _clean_slow(text)
        replace = _context_free_nfkc(rest) if len(rest) <= 256 else None
        if replace:
            # A few compatibility characters (the ellipsis above all) and nothing NFKC would compose:
            # replace them instead of normalising the whole text.
            for ch, repl in replace:
                text = text.replace(ch, repl)
            data = text.encode("utf-8")
            rest = data.translate(None, _ASCII_BYTES).decode("utf-8")
        elif replace is None and (not unicodedata.is_normalized("NFKC", rest) or (
                _NFKC_CONTEXT_FREE.search(rest) and not unicodedata.is_normalized("NFKC", text))):
            text = unicodedata.normalize("NFKC", text)
            data = text.encode("utf-8")
            rest = data.translate(None, _ASCII_BYTES).decode("utf-8")
            if _UNUSUAL.search(rest):  # NFKC can produce a line separator from a compatibility character
                return _clean_slow(text)
    if collapse:
        # bytes.translate is a table lookup: control whitespace to spaces, then collapse runs of spaces.
        data = data.translate(_BYTE_SPACES)
        while True:
            shorter = data.replace(b"  ", b" ")
            if len(shorter) == len(data):
                break
            data = shorter
    data = data.strip()
    if not rest or (rest.lower() == rest and _FOLD_SPECIAL_SET.isdisjoint(rest)):
        # No non-ASCII character changes under case folding: folding the ASCII bytes is enough.
        return data.decode("utf-8"), data.lower().decode("utf-8")
    text = data.decode("utf-8")
    return text, fold(text)


def _clean_slow(text: str) -> tuple[str, str]:
    """The general path: NFKC, invisible characters and exotic line breaks removed, whitespace collapsed."""
    if not unicodedata.is_normalized("NFKC", text):
        text = unicodedata.normalize("NFKC", text)
    if _UNUSUAL.search(text):
        text = _INVISIBLE_RE.sub("", text)
    text = " ".join(text.split())
    return text, fold(text)


def normalise_term(term: str) -> str:
    """How a rule keyword is stored: the same NFKC, case folding and whitespace collapse as the text."""
    return " ".join(unicodedata.normalize("NFKC", term).translate(_DROP_INVISIBLE).casefold().split())


class Window(NamedTuple):
    """The text rules see: ``title + "\\n" + body[:scan_chars]``, cleaned, in two cases."""

    text: str  # cleaned and normalised, original case (for case-sensitive rules)
    folded: str  # case-folded copy (for keywords and case-insensitive regexes)
    title_end: int  # the title occupies text[:title_end]
    title_end_folded: int  # ... and folded[:title_end_folded]
    body_chars: int  # cleaned body length when the whole body was read, else -1 (body longer than the bound)
    collapsed: bool = True  # False: speculative window, valid only if the window holds none of DIRTY


# What a speculative window (``make_window(..., collapse=False)``) may hold that cleaning would have
# removed: runs of spaces and control whitespace (a newline is checked by make_window itself, since the
# window uses one between title and body). A window holding none of these equals the cleaned one.
DIRTY = ("  ", "\t", "\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x1f")


def make_window(title: str, body: str, scan_chars: int, collapse: bool = True) -> Window:
    """Title + the first ``scan_chars`` characters of the cleaned body; reads at most a bounded raw prefix.

    The body is sliced before it is cleaned: ``scan_chars`` plus a small margin (whitespace that collapses),
    or a larger one when it holds markup (tags and entities that cleaning removes, and a tag cut at the edge
    of the slice); if cleaning leaves fewer than ``scan_chars`` characters of a longer body, a longer
    prefix is cleaned, so the window is the same as if the whole body had been cleaned.

    ``collapse=False`` asks for a speculative window (see :func:`clean_folded`): the body's whitespace is
    not collapsed when it holds no markup; the result says ``collapsed=False`` and is the cleaned window
    exactly when its ``folded`` text holds none of :data:`DIRTY` (the caller checks, e.g. with the
    keyword scan it runs anyway; the part of the body beyond the window is checked here).
    """
    raw_limit = scan_chars + RAW_MARGIN
    head = body[:raw_limit]
    if "<" in head or "&" in head:
        raw_limit = scan_chars * RAW_FACTOR + RAW_SLACK  # room for markup that cleaning removes
        head = body[:raw_limit]
        collapse = True  # removed tags leave runs of spaces: not worth speculating
    if not collapse:
        cleaned_body, folded_body = clean_folded(head, collapse=False)
        tail = cleaned_body[max(0, scan_chars - 1):]  # from the window's last character: a run may straddle
        # Every character of DIRTY but the space is a control character: tail.isprintable() rules them out.
        if (len(body) <= raw_limit or len(cleaned_body) >= scan_chars + RAW_EDGE) and "\n" not in cleaned_body \
                and "  " not in tail and tail.isprintable():
            return _window(title, cleaned_body, folded_body, scan_chars, len(body) <= raw_limit, False)
        collapse = True
    while True:
        cleaned_body, folded_body = clean_folded(head)
        whole = len(body) <= raw_limit
        if whole or len(cleaned_body) >= scan_chars + RAW_EDGE or raw_limit >= MAX_RAW_FACTOR * (scan_chars + 1):
            break
        raw_limit *= 2
        head = body[:raw_limit]
    return _window(title, cleaned_body, folded_body, scan_chars, whole, True)


def _window(title: str, cleaned_body: str, folded_body: str, scan_chars: int, whole: bool,
            collapsed: bool) -> Window:
    cleaned_title, folded_title = clean_folded(title[:scan_chars * RAW_FACTOR + RAW_SLACK])
    body_chars = len(cleaned_body) if whole else -1
    if len(cleaned_body) > scan_chars:
        same_length = len(folded_body) == len(cleaned_body)
        cleaned_body = cleaned_body[:scan_chars]
        folded_body = folded_body[:scan_chars] if same_length else fold(cleaned_body)
    text = f"{cleaned_title}\n{cleaned_body}"
    folded = f"{folded_title}\n{folded_body}"
    title_end = len(cleaned_title)
    # Folding can change lengths (German sharp s -> "ss"): the title ends elsewhere in the folded copy.
    return _new(Window, (text, folded, title_end, len(folded_title), body_chars, collapsed))


_FOLD_SPECIAL = ("ß", "ς", "ſ", "ﬅ", "ﬆ", "ẞ")
_FOLD_SPECIAL_SET = frozenset(_FOLD_SPECIAL)
_new = tuple.__new__  # builds a Window without the Python-level __new__ of the NamedTuple


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


# Thai, Lao, Myanmar, Khmer, CJK symbols/kana/Han (and compatibility, extension planes): no spaces between words.
_UNSPACED = ((0x0E00, 0x0EFF), (0x1000, 0x109F), (0x1780, 0x17FF), (0x2E80, 0x9FFF), (0xF900, 0xFAFF),
             (0x20000, 0x3FFFF))


def unspaced_script(ch: str) -> bool:
    """Whether ``ch`` belongs to a script written without spaces between words (a keyword in it is
    matched inside runs of text, since whole-word matching would never fire there)."""
    cp = ord(ch)
    return any(lo <= cp <= hi for lo, hi in _UNSPACED)
