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
# Non-ASCII characters whose NFKC the fast path below may take from the character alone, whatever the
# neighbours (a quick guard before checking a whole text; see _nfkc_char for the general rule).
_NFKC_CONTEXT_FREE = re.compile("[^\u0080-\u02ff\u2000-\u206f\u20a0-\u20cf\u2100-\u214f]")
_NFKC_CHAR: dict[str, str | None] = {}
_SECOND: frozenset[str] | None = None


def _composition_seconds() -> frozenset[str]:
    """Starters that canonical composition can join to the character before them (Indic/Sinhala/Tibetan
    vowel parts, Hangul medial vowels and final consonants); derived from the Unicode database once
    (about 0.1 s: the engine asks for it when it compiles, not on a live article)."""
    global _SECOND
    if _SECOND is None:
        found = set()
        for cp in range(0x110000):
            dec = unicodedata.decomposition(chr(cp))
            if dec and not dec.startswith("<"):
                parts = dec.split()
                if len(parts) == 2 and not unicodedata.combining(second := chr(int(parts[1], 16))):
                    found.add(second)
        found.update(map(chr, range(0x1161, 0x1176)))  # Hangul V jamo (algorithmic composition)
        found.update(map(chr, range(0x11A8, 0x11C3)))  # Hangul T jamo
        _SECOND = frozenset(found)
    return _SECOND


def _nfkc_char(ch: str) -> str | None:
    """NFKC of one character when it does not depend on the neighbours (None when it may).

    Context-free when the character's decomposition starts with a starter that composition never joins
    to a preceding character: then, in a text made only of ASCII and such characters, no reordering or
    composition crosses a character boundary and NFKC of the text is NFKC of each character in turn
    (math symbols, emoji, accented letters, ligatures, full-width forms; not combining marks, jamo or
    Indic vowel signs). An output holding an invisible or exotic line-break character is left to the
    general path, which removes those.
    """
    try:
        return _NFKC_CHAR[ch]
    except KeyError:
        pass
    out = unicodedata.normalize("NFKC", ch)
    first = unicodedata.normalize("NFKD", ch)[0]
    free = not unicodedata.combining(first) and first not in _composition_seconds() and not _UNUSUAL.search(out)
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
    return _clean_stripped(strip_html(text), collapse)


def _clean_stripped(text: str, collapse: bool = True) -> tuple[str, str]:
    """:func:`clean_folded` of a text whose markup is already removed (running it twice would decode
    entities twice: ``&amp;lt;`` must stay ``&lt;``)."""
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
        replace = _context_free_nfkc(rest)
        if replace:
            # A few compatibility characters (the ellipsis above all) and nothing NFKC would compose:
            # replace them instead of normalising the whole text.
            # (on the UTF-8 bytes: a character's encoding only matches at that character, and the text
            # need not be encoded again)
            for ch, repl in replace:
                data = data.replace(ch.encode("utf-8"), repl.encode("utf-8"))
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
    return data.decode("utf-8"), _fold_utf8(data, rest)


def _fold_utf8(data: bytes, rest: str) -> str:
    """:func:`fold` of the UTF-8 text ``data`` whose non-ASCII characters are ``rest``, without converting
    every character: the ASCII bytes are lowered by table lookup and each distinct non-ASCII character is
    replaced by its folding (``str.lower`` of a non-ASCII text costs several times more). Both foldings
    are per character but for the capital sigma, whose lower case depends on its neighbours."""
    chars = set(rest)
    if "\u03a3" in chars:
        return fold(data.decode("utf-8"))
    folded = {ch: ch.lower() for ch in chars}
    if any(c in _FOLD_SPECIAL_SET for low in folded.values() for c in low):
        folded = {ch: ch.casefold() for ch in chars}  # as fold: full case folding when lower case differs
    out = data.lower()
    for ch, low in folded.items():
        if low != ch:
            out = out.replace(ch.encode("utf-8"), low.encode("utf-8"))
    return out.decode("utf-8")


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
    if "<" in head or ("&" in head and _entity_within(body, raw_limit)):
        raw_limit = scan_chars * RAW_FACTOR + RAW_SLACK  # room for markup that cleaning removes
        head = body[:raw_limit]
        collapse = True  # removed tags leave runs of spaces: not worth speculating
    if not collapse:
        cleaned_body, folded_body = _clean_stripped(head, collapse=False)  # no markup: strip_html(head) == head
        tail = cleaned_body[max(0, scan_chars - 1):]  # from the window's last character: a run may straddle
        # Every character of DIRTY but the space is a control character: tail.isprintable() rules them out.
        if (len(body) <= raw_limit or len(cleaned_body) >= scan_chars + RAW_EDGE) and "\n" not in cleaned_body \
                and "  " not in tail and tail.isprintable():
            return _window(title, cleaned_body, folded_body, scan_chars, len(body) <= raw_limit, False)
        collapse = True
    while True:
        cleaned_body, folded_body, complete = _clean_prefix(strip_html(head), scan_chars)
        whole = len(body) <= raw_limit
        if whole or len(cleaned_body) >= scan_chars + RAW_EDGE or raw_limit >= MAX_RAW_FACTOR * (scan_chars + 1):
            break
        raw_limit *= 2
        head = body[:raw_limit]
    return _window(title, cleaned_body, folded_body, scan_chars, whole and complete, True)


# The longest text an entity that starts at an ampersand can read (``html.unescape``: a name of at most 32
# characters and a semicolon; a numeric reference that runs on changes the text wherever it is cut).
ENTITY_SPAN = 40


def _entity_within(body: str, end: int) -> bool:
    """Whether cleaning decodes an entity that starts in ``body[:end]``. A bare ampersand ("R&D", "Q&A",
    "AT&T") is text: such a body takes the markup-free path (a tenth of real articles hold one, and the
    markup path reads and cleans three times the window). Reading ``ENTITY_SPAN`` further sees each entity
    that starts in the slice whole; one that starts later lies beyond what the window reads."""
    near = body[:end + ENTITY_SPAN]
    return html.unescape(near) != near


def _clean_prefix(stripped: str, scan_chars: int) -> tuple[str, str, bool]:
    """Clean just enough of a markup-free text for the window, as the markup-free path reads the body: the
    first ``scan_chars + RAW_MARGIN`` characters when they clean to more than ``scan_chars`` (the rest cannot
    change those), else all of it. Markup makes the raw slice three times the window; its stripped text is
    mostly the window's own characters plus what follows, and cleaning all of it was two thirds of a marked-up
    article's time. The flag says whether all of ``stripped`` was cleaned (else its cleaned length is unknown)."""
    limit = scan_chars + RAW_MARGIN
    if len(stripped) > limit:
        cleaned, folded = _clean_stripped(stripped[:limit])
        if len(cleaned) >= scan_chars + RAW_EDGE:
            return cleaned, folded, False
    cleaned, folded = _clean_stripped(stripped)
    return cleaned, folded, True


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
