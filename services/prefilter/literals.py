"""Required literals of a regular expression, so that a regex only runs when its literal was seen.

The engine scans each article once with an Aho-Corasick automaton. A regex such as
``\\braised \\$?\\d+ ?(million|billion)\\b`` cannot match unless ``"raised "`` occurs in the text, so the
literal goes into the automaton as a trigger and the regex runs only on articles that contain it
(most articles contain none). A regex without a usable literal (shorter than ``MIN_LITERAL``) is
simply run on every article.
"""

from __future__ import annotations

import re

try:  # Python >= 3.11
    from re import _constants as _c  # type: ignore[attr-defined]
    from re import _parser as _p  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - Python 3.10
    import sre_constants as _c  # type: ignore[no-redef]
    import sre_parse as _p  # type: ignore[no-redef]

MIN_LITERAL = 2


def _score(lits: frozenset[str] | None) -> int:
    return min((len(x) for x in lits), default=0) if lits else 0


def _best(a: frozenset[str] | None, b: frozenset[str] | None) -> frozenset[str] | None:
    return b if _score(b) > _score(a) else a


def _sequence(items) -> frozenset[str] | None:
    """A set of literals one of which must occur wherever this sequence matches (None: no such set)."""
    best: frozenset[str] | None = None
    run: list[str] = []

    def flush() -> None:
        nonlocal best, run
        if run:
            best = _best(best, frozenset(["".join(run)]))
            run = []

    for op, av in items:
        if op is _c.LITERAL:
            run.append(chr(av))
            continue
        flush()
        if op is _c.SUBPATTERN:
            best = _best(best, _sequence(av[-1]))
        elif op is _c.BRANCH:
            alternatives = [_sequence(branch) for branch in av[1]]
            if all(_score(a) for a in alternatives):
                best = _best(best, frozenset().union(*alternatives))
        elif op in (_c.MAX_REPEAT, _c.MIN_REPEAT, getattr(_c, "POSSESSIVE_REPEAT", None)):
            low, _high, sub = av
            if low >= 1:
                best = _best(best, _sequence(sub))
        # AT (anchors, \b), IN (classes), ANY, NOT_LITERAL, GROUPREF, ASSERT...: break the run, add nothing.
    flush()
    return best


def required_literals(pattern: str, flags: int = 0) -> frozenset[str] | None:
    """Case-folded literals, one of which occurs in any text the pattern matches; None when unknown."""
    try:
        parsed = _p.parse(pattern, flags)
    except re.error:
        return None
    if parsed.state.flags & re.VERBOSE:
        return None  # be conservative with verbose patterns
    found = _sequence(list(parsed))
    if not found or _score(found) < MIN_LITERAL:
        return None
    return frozenset(x.casefold() for x in found)


_BOUNDARY = "\x01"
MAX_EXPANSIONS = 64
_SMALL_REPEAT = 3


def _expand(items, limit: int) -> list[str] | None:
    out = [""]
    for op, av in items:
        if op is _c.LITERAL:
            options = [chr(av)]
        elif op is _c.IN:
            options = []
            for kind, value in av:
                if kind is _c.LITERAL:
                    options.append(chr(value))
                elif kind is _c.RANGE and value[1] - value[0] < 4:
                    options.extend(chr(x) for x in range(value[0], value[1] + 1))
                else:
                    return None
        elif op is _c.SUBPATTERN:
            if av[1] or av[2]:
                return None  # local flag changes: leave to the regex engine
            options = _expand(av[-1], limit)
        elif op is _c.BRANCH:
            options = []
            for branch in av[1]:
                sub = _expand(branch, limit)
                if sub is None:
                    return None
                options.extend(sub)
        elif op in (_c.MAX_REPEAT, _c.MIN_REPEAT):
            low, high, sub_items = av
            if high > _SMALL_REPEAT:
                return None
            sub = _expand(sub_items, limit)
            if sub is None:
                return None
            options = []
            for k in range(low, high + 1):
                combos = [""]
                for _ in range(k):
                    combos = [c + s for c in combos for s in sub]
                options.extend(combos)
        elif op is _c.AT and av is _c.AT_BOUNDARY:
            options = [_BOUNDARY]
        else:
            return None
        if options is None:
            return None
        out = [a + b for a in out for b in options]
        if len(out) > limit:
            return None
    return out


def expand_literals(pattern: str, flags: int = 0, limit: int = MAX_EXPANSIONS):
    """The finite set of strings a simple pattern matches, as ``(literal, left_boundary, right_boundary)``.

    Handles literals, alternations, groups, small character classes and small repeats (``s?``), with
    ``\\b`` allowed only at the ends. Returns None for anything else (``\\d+``, ``.{0,40}``, anchors ...),
    which then stays a regex. Literals come back case-folded (they are matched on the folded window).
    """
    try:
        parsed = _p.parse(pattern, flags)
    except re.error:
        return None
    if parsed.state.flags & re.VERBOSE:
        return None
    strings = _expand(list(parsed), limit)
    if not strings:
        return None
    result = set()
    for s in strings:
        lb = s.startswith(_BOUNDARY)
        rb = s.endswith(_BOUNDARY)
        core = s.strip(_BOUNDARY)
        if not core or _BOUNDARY in core:
            return None
        # \b next to a non-word character means something else: keep such patterns as regexes.
        if (lb and not (core[0].isalnum() or core[0] == "_")) or (rb and not (core[-1].isalnum() or core[-1] == "_")):
            return None
        result.add((core.casefold(), lb, rb))
    return sorted(result)


def starts_with_boundary(pattern: str, flags: int = 0) -> bool:
    """True when the whole pattern starts with ``\\b`` (not only one branch of a top-level alternation)."""
    try:
        parsed = list(_p.parse(pattern, flags))
    except re.error:
        return False
    return len(parsed) > 1 and parsed[0] == (_c.AT, _c.AT_BOUNDARY)


def _leading(items) -> frozenset[str] | None:
    """Literals one of which every match of ``items`` starts with (after leading ``\\b``), else None."""
    items = list(items)
    while items and items[0] == (_c.AT, _c.AT_BOUNDARY):
        items = items[1:]
    if not items:
        return None
    op, av = items[0]
    if op is _c.LITERAL:
        run = []
        for op2, av2 in items:
            if op2 is not _c.LITERAL:
                break
            run.append(chr(av2))
        return frozenset(["".join(run)])
    if op is _c.SUBPATTERN:
        if av[1] or av[2]:
            return None
        inner = _leading(av[-1])
        # A group followed by more literals: the group's own leading literals are still a valid prefix set.
        return inner
    if op is _c.BRANCH:
        out: set[str] = set()
        for branch in av[1]:
            sub = _leading(branch)
            if not sub:
                return None
            out |= sub
        return frozenset(out)
    return None


def prefix_literals(pattern: str, flags: int = 0) -> frozenset[str] | None:
    """Case-folded literals one of which every match *starts* with (a leading ``\\b`` aside).

    With these, the engine runs ``pattern.match`` only at the positions where the automaton saw a
    prefix, instead of searching the whole window.
    """
    try:
        parsed = _p.parse(pattern, flags)
    except re.error:
        return None
    if parsed.state.flags & re.VERBOSE:
        return None
    found = _leading(list(parsed))
    if not found or min(len(x) for x in found) < MIN_LITERAL:
        return None
    return frozenset(x.casefold() for x in found)


def match_width(pattern: str, flags: int = 0) -> int | None:
    """The longest text the pattern can match, or None when unbounded or unknown."""
    try:
        _lo, hi = _p.parse(pattern, flags).getwidth()
    except (re.error, OverflowError):
        return None
    return hi if hi < _c.MAXREPEAT else None
