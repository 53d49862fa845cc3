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

MIN_LITERAL = 3


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
