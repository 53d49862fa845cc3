"""The prefilter rule engine: every loaded filter's rules compiled once, evaluated in one pass per article.

All keywords of all filters (exclusions, exceptions, positives, topic gate, and literal triggers of
regexes) go into one Aho-Corasick automaton over the case-folded window; a single scan finds every
candidate, word boundaries are checked only at the candidates, and a regex runs only when one of its
required literals was seen (see ``literals.py``). The window is first built without collapsing whitespace (runs are rare
in real articles; that saves two passes over the text); the same scan reports any whitespace that
cleaning would have removed, and only then is the article cleaned fully and scanned again. The engine knows nothing of gRPC or Kafka: it takes
plain strings and returns :class:`Verdict` objects whose reasons say which rule fired and on what.

Rule order per filter (the first blocking rule decides; reasons keep the order the rules fired in):
``allowed_domain`` (pass) > ``domain`` > ``source_type`` > ``too_long`` > ``too_short`` > ``language`` >
exclusion categories in spec order (each cancelled by its exception keywords, its positive threshold,
or the filter's global rescue threshold) > topic gate (``require_any``, or ``topic_threshold``
positive matches) > ``passed``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import ahocorasick_rs
from distillery_services.prefilter.literals import (
    expand_literals,
    match_width,
    prefix_literals,
    required_literals,
    starts_with_boundary,
)
from distillery_services.prefilter.text import (
    DIRTY,
    Window,
    _composition_seconds,
    is_word_char,
    make_window,
    normalise_term,
    unspaced_script,
)

from distillery.filters import FilterSpecError, UnknownFilterError
from distillery.filters.spec import FilterSpec

# Keyword roles.
EXCL, EXC, POS, REQ = 0, 1, 2, 3
LANG_SAMPLE_CHARS = 240
_VERDICT_CACHE = 4096  # cached one-reason verdicts per filter
_HOST_CACHE = 65536  # hosts whose domain rules are remembered
_new = tuple.__new__  # builds a NamedTuple without the Python-level __new__ of the class


def _key(fi: int, role: int, ci: int) -> int:
    """The scan's accumulator key of (filter, role, category/pattern index): an int hashes for free."""
    return ((fi * 4 + role) << 24) | ci
_ASCII_WORD = frozenset(c for c in map(chr, range(128)) if c.isalnum() or c == "_")
# Per UTF-8 byte: 1 an ASCII word character, 0 another ASCII character, 2 part of a non-ASCII character.
_WORD_BYTE = bytes(1 if chr(b) in _ASCII_WORD else 0 for b in range(128)) + bytes([2] * 128)


def _word_before(data: bytes, pos: int) -> bool:
    """Whether the non-ASCII character that ends at byte ``pos`` of UTF-8 ``data`` is a word character."""
    lead = pos - 1
    while lead > 0 and data[lead] & 0xC0 == 0x80:
        lead -= 1
    return is_word_char(data[lead:pos].decode("utf-8", "surrogatepass"))


def _word_at(data: bytes, pos: int) -> bool:
    """Whether the non-ASCII character that starts at byte ``pos`` of UTF-8 ``data`` is a word character."""
    lead = data[pos]
    size = 2 if lead < 0xE0 else 3 if lead < 0xF0 else 4
    return is_word_char(data[pos:pos + size].decode("utf-8", "surrogatepass"))
_PLAIN = re.compile(r"[\w\s'’.&-]+")


class Reason(NamedTuple):
    """One rule that fired: a machine-readable code and the term or value it fired on."""

    code: str
    matched: str = ""


class Verdict(NamedTuple):
    """The decision for one (article, filter) pair; ``reasons[0]`` is the deciding rule."""

    filter: str
    version: int
    passed: bool
    reasons: tuple[Reason, ...]

    @property
    def ref(self) -> str:
        return f"{self.filter}/v{self.version}"


class CheckResult(NamedTuple):
    """All verdicts for one article, plus the language used by language rules ('' when not needed)."""

    language: str
    verdicts: list[Verdict]


@dataclass(slots=True)
class _Regex:
    fi: int
    role: int
    ci: int
    term: str  # what the reason shows when the match is empty (the pattern itself)
    compiled: re.Pattern
    folded: bool  # run on the case-folded window (case-insensitive rules) or on the original case
    triggers: tuple[int, ...] | None  # trigger ids; None: always run
    title_only: bool
    lead_boundary: bool  # the pattern's leading \b was removed from ``compiled`` and is checked here
    anchored: bool = False  # every match starts with a trigger: try ``match`` at the trigger positions only
    width: int = -1  # longest possible match (no lookarounds); >= 0: search only around trigger positions
    key: int = 0  # accumulator key (see _key)

    def __post_init__(self) -> None:
        self.key = _key(self.fi, self.role, self.ci)

    def near(self, s: str, endpos: int, positions: list[int]) -> re.Match | None:
        """First match at (anchored) or around (``width`` >= 0) the sorted trigger ``positions`` before ``endpos``."""
        if self.anchored:
            match = self.compiled.match
            for pos in positions:
                if pos >= endpos:
                    return None
                m = match(s, pos, endpos)
                if m is not None:
                    return m
            return None
        # The match contains a trigger, so it lies within ``width`` characters of one.
        width = self.width
        for pos in positions:
            if pos >= endpos:
                return None
            m = self.search(s, min(endpos, pos + width + 1), max(0, pos - width))
            if m is not None:
                return m
        return None

    def search(self, s: str, endpos: int, pos: int = 0) -> re.Match | None:
        if not self.lead_boundary:
            return self.compiled.search(s, pos, endpos)
        # Python's re only uses its fast literal-prefix scan when a pattern does not start with \b;
        # so search without it and check the boundary at each candidate.
        while True:
            m = self.compiled.search(s, pos, endpos)
            if m is None:
                return None
            st = m.start()
            if (st > 0 and is_word_char(s[st - 1])) != (st < len(s) and is_word_char(s[st])):
                return m
            pos = st + 1


_LOOKAROUND = re.compile(r"\(\?<?[=!]")
_UPPER_OUTSIDE_ESCAPE = re.compile(r"(?<!\\)[A-Z]")


def _compile_flags(pattern: str, folded: bool) -> int:
    """Case-insensitive rules run on case-folded text: without IGNORECASE when that is equivalent.

    IGNORECASE disables re's literal-prefix search and costs several times more. A pattern whose letters
    are all lower case (escapes such as \\W aside) matches folded text the same way without it.
    """
    if not folded:
        return 0
    return re.IGNORECASE if _UPPER_OUTSIDE_ESCAPE.search(pattern) else 0


@dataclass(slots=True)
class _Category:
    name: str
    title_only: bool
    positive_threshold: int
    fi: int = 0
    ci: int = 0
    excl_key: int = 0
    exc_key: int = 0
    excluded: str = ""  # reason codes, built once
    exception: str = ""
    positives: str = ""
    rescued: str = ""

    def __post_init__(self) -> None:
        self.excluded = f"excluded:{self.name}"
        self.exception = f"exception:{self.name}"
        self.positives = f"positives:{self.name}"
        self.rescued = f"rescued:{self.name}"
        self.excl_key = _key(self.fi, EXCL, self.ci)
        self.exc_key = _key(self.fi, EXC, self.ci)


@dataclass(slots=True)
class _Filter:
    spec: FilterSpec
    enabled: bool
    scan_chars: int
    min_length: int
    max_length: int
    languages: frozenset[str]
    blocked_source_types: frozenset[str]
    categories: list[_Category]
    rescue_threshold: int
    topic_threshold: int
    has_require: bool
    require_key: int = 0
    regexes: list[_Regex] = field(default_factory=list)
    # Verdicts that do not depend on the article, and caches of the common term-dependent ones
    # (verdicts are immutable tuples, so one object can be returned for many articles).
    name: str = ""
    version: int = 0
    v_disabled: Verdict | None = None
    v_passed: Verdict | None = None
    v_off_topic: Verdict | None = None
    v_too_long: Verdict | None = None
    cached: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.name, self.version = self.spec.name, self.spec.version
        self.v_disabled = Verdict(self.name, self.version, True, (Reason("passed", "prefilter disabled"),))
        self.v_passed = Verdict(self.name, self.version, True, (Reason("passed", ""),))
        self.v_off_topic = Verdict(self.name, self.version, False, (Reason("off_topic", "no topic keyword"),))


def _host_and_path(url: str) -> tuple[str, str]:
    """Lower-case host without ``www.`` and the path of a URL (scheme optional), without urllib's cost."""
    if not url:
        return "", ""
    rest = url.strip()
    scheme_end = rest.find("//")
    if scheme_end >= 0:
        rest = rest[scheme_end + 2:]
    host, sep, path = rest.partition("/")
    if "?" in host or "#" in host:
        host = host.partition("?")[0].partition("#")[0]
        path = ""
    if "@" in host:
        host = host.rpartition("@")[2]
    if ":" in host:
        host = host.partition(":")[0]
    host = host.lower().rstrip(".")
    if path and ("?" in path or "#" in path):
        path = path.partition("?")[0].partition("#")[0]
    return host.removeprefix("www."), (sep + path).lower()


def _language_of(code: str) -> str:
    return code.strip().lower().replace("_", "-").split("-", 1)[0]


_LANGUAGES: dict[str, str] = {}


def _language_code(code: str) -> str:
    """:func:`_language_of`, remembered (the stream carries a handful of distinct codes)."""
    lang = _language_of(code)
    if len(_LANGUAGES) < 1024:
        _LANGUAGES[code] = lang
    return lang


_CONTINUATION = bytes(range(0x80, 0xC0))


def _to_characters(data: bytes, triggers: dict[int, list[int]]) -> None:
    """Trigger positions from byte to character offsets of UTF-8 ``data``, in place (each byte decoded once)."""
    chars: dict[int, int] = {}
    count = previous = 0
    for b in sorted({b for positions in triggers.values() for b in positions}):
        count += len(data[previous:b].translate(None, _CONTINUATION))  # characters: bytes that start one
        chars[b], previous = count, b
    for positions in triggers.values():
        positions[:] = [chars[b] for b in positions]


class PrefilterEngine:
    """Compile the prefilter rules of ``specs`` once; :meth:`check` evaluates any subset in one pass."""

    def __init__(self, specs: Iterable[FilterSpec]):
        self.filters: list[_Filter] = []
        self._index: dict[tuple[str, int], int] = {}
        self._words: dict[str, list] = {}  # normalised string -> [length, bounded id, trigger id, lb, rb]
        self._uses: list[list[tuple[int, int, int, str, bool]]] = []  # bounded id -> uses
        self._n_triggers = 0
        self._gated: dict[int, list[_Regex]] = {}  # trigger id -> regexes it lets run
        self._always: list[_Regex] = []  # regexes without a usable literal
        self._domains: dict[str, list[tuple[int, bool, str, str]]] = {}  # host -> (fi, allowed, rule, path)
        self._host_rules: dict[str, tuple] = {}  # host -> its and its parents' domain rules
        for spec in specs:
            self._add_filter(spec)
        _composition_seconds()  # the text cleaner's Unicode table, built now rather than on a live article
        # Whitespace that cleaning removes: the scan of a speculative window reports it (see check).
        self._dirty = frozenset(self._trigger(d) for d in DIRTY)
        # Pattern i of the automaton is self._payloads[i]: (bounded id, trigger id, left/right boundary).
        self._payloads = [(bid, tid, lb, rb) for (_length, bid, tid, lb, rb) in self._words.values()]
        # Every keyword as UTF-8 bytes: the window is scanned as bytes (see _scan).
        self._automaton: ahocorasick_rs.BytesAhoCorasick | None = None
        if self._words:
            self._automaton = ahocorasick_rs.BytesAhoCorasick(
                [w.encode("utf-8", "surrogatepass") for w in self._words],
                implementation=ahocorasick_rs.Implementation.DFA,
            )
        # Flat per-pattern tables for the scan loop (indexed by automaton pattern id): the trigger id, and
        # (trigger id, left/right boundary, uses as (key, fi, is positive, term, title_only) or None).
        self._p_tid = [tid for (_bid, tid, _lb, _rb) in self._payloads]
        self._p_info: list[tuple] = [
            (tid, lb, rb, None if bid < 0 else tuple(
                (_key(fi, role, ci), fi, role == POS, term, title_only)
                for fi, role, ci, term, title_only in self._uses[bid]))
            for (bid, tid, lb, rb) in self._payloads
        ]
        self._max_scan = max((f.scan_chars for f in self.filters), default=0)
        self._all = list(range(len(self.filters)))
        self._all_wanted = [True] * len(self.filters)
        self._scan_chars = [f.scan_chars for f in self.filters]
        self._same_scan = len(set(self._scan_chars)) <= 1
        self._any_languages = any(f.languages for f in self.filters)
        self._newest: dict[str, int] = {}
        for i, f in enumerate(self.filters):
            best = self._newest.get(f.spec.name)
            if best is None or self.filters[best].spec.version < f.spec.version:
                self._newest[f.spec.name] = i

    # -- compilation ---------------------------------------------------------------------------------
    def _keyword(self, fi: int, role: int, ci: int, raw: str, title_only: bool, where: str) -> None:
        """A spec keyword: whole-word unless it starts/ends with ``*`` (prefix/suffix match)."""
        stripped = raw.strip()
        term = normalise_term(stripped.strip("*"))
        if not term:
            raise FilterSpecError(self.filters[fi].spec.ref, [f"{where}: empty keyword {raw!r}"])
        # Scripts written without spaces between words (Han, kana, Thai ...) have no word boundaries to check.
        lb = is_word_char(term[0]) and not stripped.startswith("*") and not unspaced_script(term[0])
        rb = is_word_char(term[-1]) and not stripped.endswith("*") and not unspaced_script(term[-1])
        self._literal(fi, role, ci, term, lb, rb, title_only, stripped, where)

    def _literal(self, fi, role, ci, term, lb, rb, title_only, label, where) -> None:
        slot = self._words.get(term)
        if slot is None:
            slot = self._words[term] = [len(term), -1, -1, False, False]
        if slot[1] >= 0 and (slot[3], slot[4]) != (lb, rb):
            # Rare: the same string used whole-word and as a prefix/suffix; the other form becomes a regex.
            pattern = ("\\b" if lb else "") + re.escape(term) + ("\\b" if rb else "")
            self._regex(fi, role, ci, pattern, folded=True, title_only=title_only, where=where, term=label,
                        expand=False)
            return
        if slot[1] < 0:
            slot[1] = len(self._uses)
            slot[3], slot[4] = lb, rb
            self._uses.append([])
        self._uses[slot[1]].append((fi, role, ci, label, title_only))

    def _trigger(self, literal: str) -> int:
        slot = self._words.get(literal)
        if slot is None:
            slot = self._words[literal] = [len(literal), -1, -1, False, False]
        if slot[2] < 0:
            slot[2] = self._n_triggers
            self._n_triggers += 1
        return slot[2]

    def _regex(self, fi, role, ci, pattern, *, folded, title_only, where, term="", expand=True) -> None:
        spec = self.filters[fi].spec
        flags = _compile_flags(pattern, folded)
        try:
            compiled = re.compile(pattern, flags | (re.IGNORECASE if folded else 0))
        except re.error as exc:
            raise FilterSpecError(spec.ref, [f"{where}: invalid regular expression {pattern!r}: {exc}"]) from None
        if folded and expand:
            # A finite alternation of literals (the common case) joins the automaton instead of running.
            literals = expand_literals(pattern, re.IGNORECASE)
            if literals is not None:
                for literal, lb, rb in literals:
                    self._literal(fi, role, ci, literal, lb, rb, title_only, literal, where)
                return
        if flags != compiled.flags & re.IGNORECASE:
            compiled = re.compile(pattern, flags)
        prefixes = prefix_literals(pattern, flags)
        if prefixes:
            # Matches start at a literal the automaton reports: match there instead of searching.
            triggers = tuple(sorted(self._trigger(lit) for lit in prefixes))
            rx = _Regex(fi, role, ci, term or pattern, compiled, folded, triggers, title_only, False, True)
        else:
            lead_boundary = pattern.startswith("\\b") and starts_with_boundary(pattern, flags)
            if lead_boundary:
                compiled = re.compile(pattern[2:], flags)
            literals = required_literals(pattern, flags)
            triggers = tuple(sorted(self._trigger(lit) for lit in literals)) if literals else None
            rx = _Regex(fi, role, ci, term or pattern, compiled, folded, triggers, title_only, lead_boundary)
            if triggers is not None and not _LOOKAROUND.search(pattern) and "^" not in pattern:
                width = match_width(pattern, flags)
                if width is not None and width < 500:
                    rx.width = width
        self.filters[fi].regexes.append(rx)
        if triggers is None:
            self._always.append(rx)
        else:
            for tid in triggers:
                self._gated.setdefault(tid, []).append(rx)

    def _add_filter(self, spec: FilterSpec) -> None:
        key = (spec.name, spec.version)
        if key in self._index:
            return
        rules = spec.prefilter
        fi = len(self.filters)
        self._index[key] = fi
        self.filters.append(
            _Filter(
                spec=spec,
                enabled=rules.enabled,
                scan_chars=rules.scan_chars,
                min_length=rules.min_length,
                max_length=rules.max_length,
                languages=frozenset(_language_of(x) for x in rules.languages),
                blocked_source_types=frozenset(s.strip().lower() for s in rules.blocked_source_types),
                categories=[_Category(c.name, c.title_only, c.positive_threshold, fi, ci)
                            for ci, c in enumerate(rules.exclusions)],
                rescue_threshold=rules.rescue_threshold,
                topic_threshold=rules.topic_threshold,
                has_require=bool(rules.require_any),
                require_key=_key(fi, REQ, 0),
            )
        )
        for allowed, rules_list in ((True, rules.allowed_domains), (False, rules.blocked_domains)):
            for rule in rules_list:
                rule = rule.strip().lower().removeprefix("www.")
                rule_host, _, rule_path = rule.partition("/")
                self._domains.setdefault(rule_host, []).append((fi, allowed, rule, rule_path))
        base = "prefilter"
        for ci, cat in enumerate(rules.exclusions):
            where = f"{base}.exclusions[{ci}] ({cat.name})"
            for raw in cat.keywords:
                self._keyword(fi, EXCL, ci, raw, cat.title_only, f"{where}.keywords")
            for j, pattern in enumerate(cat.patterns):
                self._regex(fi, EXCL, ci, pattern, folded=True, title_only=cat.title_only,
                            where=f"{where}.patterns[{j}]")
            for j, pattern in enumerate(cat.case_sensitive_patterns):
                self._regex(fi, EXCL, ci, pattern, folded=False, title_only=cat.title_only,
                            where=f"{where}.case_sensitive_patterns[{j}]")
            for raw in cat.exceptions:
                self._keyword(fi, EXC, ci, raw, False, f"{where}.exceptions")
        for pi, pattern in enumerate(rules.positive_patterns):
            if _PLAIN.fullmatch(pattern) or (pattern.endswith("*") and _PLAIN.fullmatch(pattern.rstrip("*"))):
                self._keyword(fi, POS, pi, pattern, False, f"{base}.positive_patterns[{pi}]")
            else:
                self._regex(fi, POS, pi, pattern, folded=True, title_only=False,
                            where=f"{base}.positive_patterns[{pi}]")
        for raw in rules.require_any:
            self._keyword(fi, REQ, 0, raw, False, f"{base}.require_any")

    # -- lookup ---------------------------------------------------------------------------------------
    def refs(self) -> list[tuple[str, int]]:
        return [(f.spec.name, f.spec.version) for f in self.filters]

    def select(self, refs: Sequence[tuple[str, int]] | None) -> list[int]:
        """Filter indices for ``(name, version)`` pairs (version 0: newest); empty or None: all filters."""
        if not refs:
            return self._all
        out: list[int] = []
        for name, version in refs:
            if version:
                idx = self._index.get((name, int(version)))
            else:
                idx = self._newest.get(name)
            if idx is None:
                loaded = ", ".join(f"{n}/v{v}" for n, v in self.refs()) or "none"
                want = f"{name}/v{version}" if version else name
                raise UnknownFilterError(f"unknown filter {want!r}; the prefilter has loaded: {loaded}")
            if idx not in out:
                out.append(idx)
        return out

    # -- evaluation -----------------------------------------------------------------------------------
    def check(
        self,
        title: str,
        text: str,
        url: str = "",
        source_type: str = "",
        language: str = "",
        filters: Sequence[int] | None = None,
        detect_language: bool = False,
        apply_length: bool = True,
    ) -> CheckResult:
        """Evaluate the selected filters (indices from :meth:`select`; None: all) on one article.

        The language is detected when ``language`` is empty and a selected filter has language rules,
        or always with ``detect_language`` (the stage fills it in for downstream stages).
        ``apply_length=False`` skips the length rules (evaluation of records kept as titles only).
        """
        selected = self._all if filters is None else filters
        if not selected:
            return CheckResult(language, [])
        # Speculative window first: whitespace not collapsed (runs are rare); the keyword scan reports any
        # whitespace that cleaning would have removed, and then the article is cleaned and scanned again.
        window = make_window(title, text, self._max_scan, collapse=False)
        scanned = self._scan(window, selected)
        if scanned is None:
            window = make_window(title, text, self._max_scan)
            scanned = self._scan(window, selected)
        acc, npos, first_pos = scanned
        lang = (_LANGUAGES.get(language) or _language_code(language)) if language else ""
        if not lang and (detect_language or (
                self._any_languages if selected is self._all else any(self.filters[fi].languages for fi in selected))):
            lang = guess_language(window.text[window.title_end + 1:window.title_end + 1 + LANG_SAMPLE_CHARS]
                                   or window.text)
        domains = self._domain_hits(url) if self._domains else None
        st = source_type.strip().lower()
        raw_len = len(text)
        clean_len = window.body_chars if window.body_chars >= 0 else raw_len
        if not apply_length:
            raw_len, clean_len = 0, 1 << 62
        verdicts = [self._decide(fi, acc, npos, first_pos, domains, st, raw_len, clean_len, lang) for fi in selected]
        return _new(CheckResult, (lang, verdicts))

    def _domain_hits(self, url: str) -> dict[int, tuple[bool, str, str]] | None:
        """Per filter, the domain rule the URL's host (or a parent domain) matches; allow rules win."""
        host, path = _host_and_path(url)
        if not host:
            return None
        rules = self._host_rules.get(host)
        if rules is None:
            # The rules of the host and its parent domains, in that order (hosts repeat: cached, bounded).
            labels = host.split(".")
            rules = tuple(r for k in range(len(labels)) for r in self._domains.get(".".join(labels[k:]), ()))
            if len(self._host_rules) < _HOST_CACHE:
                self._host_rules[host] = rules
        if not rules:
            return None
        hits: dict[int, tuple[bool, str, str]] = {}
        path = path.lstrip("/")
        for fi, allowed, rule, rule_path in rules:
            if rule_path and not path.startswith(rule_path):
                continue
            if fi not in hits or (allowed and not hits[fi][0]):
                hits[fi] = (allowed, rule, host)
        return hits

    def _scan(self, w: Window, selected: Sequence[int]):
        """Every rule hit of the selected filters in window ``w``: (hits by key, positive counts per filter,
        first positive term per filter), or None when a speculative window must be cleaned first."""
        folded = w.folded
        n = len(folded)
        nf = len(self.filters)
        base = w.title_end_folded + 1
        limits = [base + self._max_scan] * nf if self._same_scan else [base + sc for sc in self._scan_chars]
        if selected is self._all:
            wanted = self._all_wanted
        else:
            wanted = [False] * nf
            for fi in selected:
                wanted[fi] = True
        acc: dict[int, str] = {}
        npos = [0] * nf
        first_pos = [""] * nf
        triggers: dict[int, list[int]] = {}  # trigger id -> start positions in the folded window (bytes)
        # The automaton always scans UTF-8 bytes (its str search converts every offset to characters, a third
        # of its cost); on ASCII windows byte offsets are character offsets. Otherwise the keyword loop works
        # in bytes, and trigger positions are converted to characters only when a regex needs them.
        data = folded.encode("utf-8", "surrogatepass")
        if self._automaton is not None:
            self._keyword_hits(data, folded, w.title_end_folded, limits, wanted, acc, npos, first_pos, triggers)
        if not w.collapsed and not self._dirty.isdisjoint(triggers):
            return None  # the speculative window holds whitespace that cleaning removes: clean it first
        if triggers or self._always:
            self._regex_hits(w, data, n, limits, wanted, acc, npos, first_pos, triggers)
        return acc, npos, first_pos

    def _keyword_hits(self, data: bytes, folded: str, tef: int, limits: list[int], wanted: list[bool],
                      acc: dict, npos: list[int], first_pos: list[str], triggers: dict[int, list[int]]) -> None:
        """The automaton pass: whole-word checks at each candidate, uses recorded in ``acc``/``npos``, and the
        byte positions of regex triggers collected in ``triggers``. This is the engine's hot loop."""
        nb, n = len(data), len(folded)
        if nb == n:
            tef_b, limits_b = tef, limits
        else:  # title end and scan limits in bytes, each converted once
            tef_b = len(folded[:tef].encode("utf-8", "surrogatepass"))
            if self._same_scan:
                lim = limits[0]
                limits_b = [nb if lim >= n else len(folded[:lim].encode("utf-8", "surrogatepass"))] * len(limits)
            else:
                limits_b = [nb if lim >= n else len(folded[:lim].encode("utf-8", "surrogatepass")) for lim in limits]
        seen: set[int] = set()  # patterns whose whole-word check passed once (their uses are recorded)
        p_tid, p_info = self._p_tid, self._p_info
        word = _WORD_BYTE
        for pi, start, end in self._automaton.find_matches_as_indexes(data, overlapping=True):
            # About half the matches repeat a pattern already handled: skip those first.
            if pi in seen:
                tid = p_tid[pi]
                if tid >= 0:
                    triggers[tid].append(start)
                continue
            tid, lb, rb, pattern_uses = p_info[pi]
            if tid >= 0:
                positions = triggers.get(tid)
                if positions is None:
                    triggers[tid] = [start]
                else:
                    positions.append(start)
                if pattern_uses is None:
                    continue
            # Word characters as in is_word_char: a byte table for ASCII, str.isalnum beyond.
            if lb and start > 0 and ((b := word[data[start - 1]]) == 1 or (b == 2 and _word_before(data, start))):
                continue
            if rb and end < nb and ((b := word[data[end]]) == 1 or (b == 2 and _word_at(data, end))):
                continue
            seen.add(pi)
            for key, fi, is_pos, term, title_only in pattern_uses:
                if not wanted[fi] or start >= (tef_b if title_only else limits_b[fi]) or key in acc:
                    continue
                acc[key] = term
                if is_pos:
                    k = npos[fi] = npos[fi] + 1
                    if k == 1:
                        first_pos[fi] = term

    def _regex_hits(self, w: Window, data: bytes, n: int, limits: list[int], wanted: list[bool], acc: dict,
                    npos: list[int], first_pos: list[str], triggers: dict[int, list[int]]) -> None:
        """Run the regexes whose triggers were seen (and those without one) that could still add a hit."""
        candidates = list(self._always)
        if triggers:
            seen_rx: set[int] = set()
            for tid in triggers:
                for rx in self._gated.get(tid, ()):
                    if id(rx) not in seen_rx:
                        seen_rx.add(id(rx))
                        candidates.append(rx)
        folded, text, tet = w.folded, w.text, w.title_end
        same_len = len(folded) == len(text)
        in_chars = len(data) == n  # trigger positions are character offsets already
        for rx in candidates:
            fi = rx.fi
            if not wanted[fi] or rx.key in acc:
                continue
            if rx.folded:
                s, endpos = folded, w.title_end_folded if rx.title_only else limits[fi]
            else:
                s, endpos = text, tet if rx.title_only else tet + 1 + self.filters[fi].scan_chars
            if (rx.anchored or rx.width >= 0) and (rx.folded or same_len):
                if not in_chars:
                    _to_characters(data, triggers)
                    in_chars = True
                m = rx.near(s, endpos, sorted(p for t in rx.triggers for p in triggers.get(t, ())))
            else:
                m = rx.search(s, endpos)
            if m is None:
                continue
            term = m.group(0) or rx.term
            acc[rx.key] = term
            if rx.role == POS:
                npos[fi] += 1
                if npos[fi] == 1:
                    first_pos[fi] = term

    def _decide(self, fi, acc, npos, first_pos, domains, st, raw_len, clean_len, lang) -> Verdict:
        f = self.filters[fi]
        name, version = f.name, f.version
        if not f.enabled:
            return f.v_disabled
        if domains:
            hit = domains.get(fi)
            if hit is not None:
                allowed, rule, host = hit
                if allowed:
                    return Verdict(name, version, True, (Reason(f"allowed_domain:{rule}", host),))
                return Verdict(name, version, False, (Reason(f"domain:{rule}", host),))
        if st and st in f.blocked_source_types:
            return Verdict(name, version, False, (Reason(f"source_type:{st}", st),))
        if raw_len > f.max_length:
            return Verdict(name, version, False, (Reason("too_long", f"{raw_len} chars"),))
        if clean_len < f.min_length:
            return Verdict(name, version, False, (Reason("too_short", f"{clean_len} chars"),))
        if f.languages and lang not in f.languages:
            return Verdict(name, version, False, (Reason(f"language:{lang or 'unknown'}", lang),))
        notes: list[Reason] | None = None
        positives = npos[fi]
        for cat in f.categories:
            term = acc.get(cat.excl_key)
            if term is None:
                continue
            exception = acc.get(cat.exc_key)
            if exception is not None:
                note = _new(Reason, (cat.exception, exception))
            elif cat.positive_threshold and positives >= cat.positive_threshold:
                note = _new(Reason, (cat.positives, f"{positives} positive matches"))
            elif f.rescue_threshold and positives >= f.rescue_threshold:
                note = _new(Reason, (cat.rescued, first_pos[fi]))
            else:
                if notes:
                    return _new(Verdict, (name, version, False, (_new(Reason, (cat.excluded, term)), *notes)))
                return self._cached(f, cat.excluded, term, False)
            if notes is None:
                notes = [note]
            else:
                notes.append(note)
        if f.has_require:
            topic = acc.get(f.require_key)
            if topic is None:
                if f.topic_threshold and positives >= f.topic_threshold:
                    return _new(Verdict, (name, version, True, (
                        _new(Reason, ("passed", first_pos[fi])),
                        _new(Reason, ("topic_positives", f"{positives} positive matches")), *(notes or ()))))
                if notes:
                    return _new(Verdict, (name, version, False, (f.v_off_topic.reasons[0], *notes)))
                return f.v_off_topic
            if notes:
                return _new(Verdict, (name, version, True, (_new(Reason, ("passed", topic)), *notes)))
            return self._cached(f, "passed", topic, True)
        if notes:
            return _new(Verdict, (name, version, True, (f.v_passed.reasons[0], *notes)))
        return f.v_passed

    @staticmethod
    def _cached(f: _Filter, code: str, term: str, passed: bool) -> Verdict:
        """The one-reason verdict ``code`` on ``term``, built once per term (bounded cache)."""
        key = (code, term)
        v = f.cached.get(key)
        if v is None:
            v = _new(Verdict, (f.name, f.version, passed, (_new(Reason, key),)))
            if len(f.cached) < _VERDICT_CACHE:
                f.cached[key] = v
        return v


_IDENTIFIER = None


def guess_language(sample: str) -> str:
    """ISO 639-1 code of ``sample`` with py3langid (model shipped in the package; no download)."""
    global _IDENTIFIER
    if not sample.strip():
        return ""
    if _IDENTIFIER is None:
        from py3langid.langid import MODEL_FILE, LanguageIdentifier

        _IDENTIFIER = LanguageIdentifier.from_model_file(MODEL_FILE)
    return str(_IDENTIFIER.classify(sample)[0])
