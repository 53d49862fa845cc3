"""Where a training job may read labels: the label store, a saved dataset version, or a file under the data root.

A StartJob request names its data with a DatasetRef; this module turns one into what the pipeline reads (an
empty string for the label store, else the path of a JSONL file). Nothing outside the trainer's data root
(``data_root``) and its saved datasets (``datasets_dir``) can be named, and a refusal never says whether a
file outside exists: the same INVALID_ARGUMENT answers for a missing file and an existing one out there.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from distillery import identifiers
from distillery.errors import NotFoundError
from distillery.filters.spec import FilterSpec

LABEL_STORE = "label_store"
DATASET_VERSION = "dataset_version"
DATA_PATH = "data_path"
EXAMPLES_FILE = "examples.jsonl"
MAX_PATH_CHARS = 1024


@dataclass(frozen=True)
class DataSource:
    """One DatasetRef in plain terms: ``kind`` is label_store, dataset_version or data_path."""

    kind: str = LABEL_STORE
    value: str = ""


@dataclass(frozen=True)
class DataRoots:
    """The folders a job may read: files under ``data_root``; saved versions under ``datasets_dir``."""

    data_root: str
    datasets_dir: str


def resolve(spec: FilterSpec, source: DataSource, roots: DataRoots, field: str = "dataset") -> str:
    """The labels file a job for ``spec`` reads ('' for the label store); raise ValueError / NotFoundError."""
    if source.kind == LABEL_STORE:
        return ""
    if source.kind == DATASET_VERSION:
        version = identifiers.dataset_version(source.value, f"{field}.dataset_version")
        path = _inside(roots.datasets_dir, (spec.name, f"v{spec.version}", version, EXAMPLES_FILE),
                       f"{field}.dataset_version")
        if not path.is_file():
            raise NotFoundError(f"{field}.dataset_version: no saved dataset {version} for {spec.ref}")
        return str(path)
    if source.kind == DATA_PATH:
        return str(_data_file(source.value, roots.data_root, f"{field}.data_path"))
    raise ValueError(f"{field}: unknown source {source.kind!r}")


def _data_file(given: str, data_root: str, field: str) -> Path:
    if not given:
        raise ValueError(f"{field} is empty: name a JSONL file relative to the trainer's data root")
    if len(given) > MAX_PATH_CHARS or "\x00" in given:
        raise ValueError(f"{field} must be a path of at most {MAX_PATH_CHARS} characters without NUL")
    path = _inside(data_root, (given,), field)
    if not path.is_file():
        relative = path.relative_to(Path(data_root).resolve()).as_posix()
        raise NotFoundError(f"{field}: no file {identifiers.shown(relative)} under the trainer's data root")
    return path


def _inside(root: str, parts: tuple[str, ...], field: str) -> Path:
    try:
        return identifiers.contained_path(root, *parts)
    except identifiers.OutsideRootError:
        # One answer for every path outside, existing or not: a client learns nothing about the host.
        raise ValueError(f"{field} must name a file under the trainer's data root (a relative path without "
                         "'..' out of it)") from None
