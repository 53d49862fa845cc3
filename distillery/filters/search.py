"""Where the CLI finds filter packages: one search path for every command.

Order, first match of a filter *name* wins (all its versions come from that one folder):

1. ``./filters`` in the current folder (where ``distillery new-filter`` writes),
2. configured folders: ``--filters-dir`` when given, else ``$DISTILLERY_FILTERS_DIR`` (several folders
   separated by ``os.pathsep``), else the ``filters_dir`` of a config file when the command reads one,
3. the example filters shipped with the package (inside the installed wheel, or the source checkout's
   ``filters/``).

So ``distillery new-filter --name belonging`` followed by ``distillery score --filter belonging/v1`` works in
an empty folder, and a local ``uplifting`` package shadows the shipped example of that name.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from distillery.filters.loader import FilterCatalog, FilterSpecError

LOCAL_DIR = Path("filters")
ENV_VAR = "DISTILLERY_FILTERS_DIR"
_PACKAGE_ROOT = Path(__file__).resolve().parent.parent  # distillery/


def shipped_filters_dir() -> Path | None:
    """The example filters that come with the install: ``distillery/_shipped_filters`` in a wheel (copied
    there at build time), the checkout's ``filters/`` in a source or editable install; None if neither."""
    for candidate in (_PACKAGE_ROOT / "_shipped_filters", _PACKAGE_ROOT.parent / "filters"):
        if candidate.is_dir() and any(candidate.glob("*/v*/filter.yaml")):
            return candidate
    return None


def configured_dirs(explicit: Iterable[Path | str | None] = ()) -> list[Path]:
    """``explicit`` folders (a flag or a config file) when any, else those of ``$DISTILLERY_FILTERS_DIR``."""
    given = [Path(p) for p in explicit if p]
    if given:
        return given
    env = os.environ.get(ENV_VAR, "")
    return [Path(p) for p in env.split(os.pathsep) if p]


def search_path(explicit: Iterable[Path | str | None] = ()) -> list[Path]:
    """The folders searched, in order, without duplicates or folders that do not exist."""
    candidates = [LOCAL_DIR, *configured_dirs(explicit)]
    shipped = shipped_filters_dir()
    if shipped is not None:
        candidates.append(shipped)
    seen: set[Path] = set()
    out: list[Path] = []
    for folder in candidates:
        resolved = folder.resolve()
        if resolved in seen or not folder.is_dir():
            continue
        seen.add(resolved)
        out.append(folder)
    return out


def discover(explicit: Iterable[Path | str | None] = (), only: list[str] | None = None) -> FilterCatalog:
    """One catalog merged over :func:`search_path`; a name found in an earlier folder shadows later ones.

    ``explicit`` folders that do not exist are an error (a typo in ``--filters-dir`` must not silently fall
    back to the examples)."""
    explicit = [p for p in explicit if p]
    for folder in explicit:
        if not Path(folder).is_dir():
            raise FilterSpecError(Path(folder), ["filters folder does not exist"])
    folders = search_path(explicit)
    merged = FilterCatalog(root=folders[0] if folders else LOCAL_DIR, roots=folders)
    for folder in folders:
        catalog = FilterCatalog.load(folder)
        for (name, version), spec in catalog.specs.items():
            if merged.origins.get(name, folder) != folder:
                continue  # shadowed by a folder earlier in the search path
            merged.origins[name] = folder
            merged.specs[(name, version)] = spec
    if only:
        found = {s.name for s in merged.specs.values()} | {s.ref for s in merged.specs.values()}
        missing = [o for o in only if o not in found]
        if missing:
            searched = ", ".join(map(str, folders)) or "no folder"
            raise FilterSpecError(merged.root, [f"no filter package for {', '.join(missing)} in {searched}"])
        merged.specs = {k: s for k, s in merged.specs.items() if s.name in only or s.ref in only}
    return merged


def describe_search_path(explicit: Iterable[Path | str | None] = ()) -> str:
    """``filters, /etc/distillery/filters, <site-packages>/distillery/_shipped_filters`` for error messages."""
    return ", ".join(str(p) for p in search_path(explicit)) or "no filters folder"
