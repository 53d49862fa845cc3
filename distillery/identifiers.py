"""The grammar of every identifier that crosses a boundary (gRPC, Kafka, CLI, config), checked in one place.

Identifiers name things; they are never paths. Each check is a full match over an ASCII-only pattern (so
``..``, ``/``, ``\\``, ``%2e``, NUL, a trailing newline and Unicode look-alikes never pass) with a length
bound. A failed check raises :class:`InvalidIdentifierError` (a ``ValueError``: INVALID_ARGUMENT at the gRPC
edge, a dead letter on Kafka, exit code 2 at the CLI) whose message names the field and the grammar but never
repeats a value it could not print safely.

=================  =============================================  ==================================
identifier         grammar                                        examples
=================  =============================================  ==================================
filter name        ``[a-z][a-z0-9_]{0,63}``                       ``uplifting``, ``investment_risk``
filter version     integer 1..9999 (``vN`` in refs); 0 = newest   ``3``, ``uplifting/v3``
model version      ``YYYYMMDDTHHMMSS-xxxxxx`` (6 lower-case hex)  ``20261126T101500-3f2a9c``
job id             ``[A-Za-z0-9][A-Za-z0-9_-]{0,63}``             ``20261126T101500-3f2a9c1e``, ``job-1a2b``
oracle name        ``[a-z][a-z0-9_-]{0,63}``                      ``synthetic``, ``fake-openai``
dataset version    ``[0-9a-f]{8,64}`` (a dataset content hash)   ``9f2c4e1a0b3d5c7e``
=================  =============================================  ==================================

Storage paths are built only from checked identifiers, and :func:`contained_path` / :func:`contained_key`
confirm that the result stays inside its root (local folders and object-store keys alike).
"""

from __future__ import annotations

import os
import posixpath
import re
from pathlib import Path

MAX_LENGTH = 64
MAX_FILTER_VERSION = 9999

FILTER_NAME_PATTERN = r"[a-z][a-z0-9_]{0,63}"
MODEL_VERSION_PATTERN = r"[0-9]{8}T[0-9]{6}-[0-9a-f]{6}"
JOB_ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}"
ORACLE_NAME_PATTERN = r"[a-z][a-z0-9_-]{0,63}"
DATASET_VERSION_PATTERN = r"[0-9a-f]{8,64}"

_FILTER_NAME = re.compile(FILTER_NAME_PATTERN, re.ASCII)
_MODEL_VERSION = re.compile(MODEL_VERSION_PATTERN, re.ASCII)
_JOB_ID = re.compile(JOB_ID_PATTERN, re.ASCII)
_ORACLE_NAME = re.compile(ORACLE_NAME_PATTERN, re.ASCII)
_DATASET_VERSION = re.compile(DATASET_VERSION_PATTERN, re.ASCII)
_PRINTABLE = re.compile(r"[A-Za-z0-9_./:-]{0,80}", re.ASCII)


class InvalidIdentifierError(ValueError):
    """An identifier that does not follow its grammar; ``field`` names where it came from."""

    def __init__(self, field: str, value: object, grammar: str):
        self.field = field
        self.grammar = grammar
        super().__init__(f"{field}: {shown(value)} is not a valid {grammar}")


def shown(value: object) -> str:
    """The offending value when it is short plain ASCII, else only its kind and length (no control bytes,
    no look-alike characters and no megabytes echoed into logs and status details)."""
    text = value if isinstance(value, str) else str(value)
    if _PRINTABLE.fullmatch(text):
        return repr(text)
    return f"a {len(text)}-character value"


def _check(pattern: re.Pattern[str], value: object, field: str, grammar: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise InvalidIdentifierError(field, value, grammar)
    return value


def filter_name(value: object, field: str = "filter.name") -> str:
    """A filter name: lower-case letter, then up to 63 lower-case letters, digits or underscores."""
    return _check(_FILTER_NAME, value, field,
                  "filter name (lower-case letters, digits and underscores, starting with a letter, at most 64)")


def filter_version(value: object, field: str = "filter.version", allow_latest: bool = True) -> int:
    """A filter version 1..9999; 0 means "the newest loaded" where ``allow_latest``."""
    if isinstance(value, bool) or not isinstance(value, int) or not (
            (allow_latest and value == 0) or 1 <= value <= MAX_FILTER_VERSION):
        raise InvalidIdentifierError(field, value, f"filter version (1 to {MAX_FILTER_VERSION}"
                                                   f"{', or 0 for the newest' if allow_latest else ''})")
    return value


def filter_ref(value: object, field: str = "filter") -> tuple[str, int]:
    """``name`` or ``name/vN`` -> (name, N) with N = 0 for ``name`` alone."""
    if not isinstance(value, str):
        raise InvalidIdentifierError(field, value, "filter reference (name or name/vN)")
    name, sep, version = value.partition("/")
    filter_name(name, field)
    if not sep:
        return name, 0
    if not re.fullmatch(r"v[1-9][0-9]{0,3}", version, re.ASCII):
        raise InvalidIdentifierError(field, value, f"filter reference (name or name/vN, N from 1 to "
                                                   f"{MAX_FILTER_VERSION})")
    return name, int(version[1:])


def model_version(value: object, field: str = "version") -> str:
    """A model version id as the registry writes it (:func:`distillery.registry.new_version_id`)."""
    return _check(_MODEL_VERSION, value, field, "model version (YYYYMMDDTHHMMSS-xxxxxx, as the registry "
                                                "writes it)")


def job_id(value: object, field: str = "job_id") -> str:
    """A job id (training or labelling): ASCII letters, digits, '_' and '-', starting with a letter or digit."""
    return _check(_JOB_ID, value, field, "job id (letters, digits, '_' and '-', at most 64)")


def oracle_name(value: object, field: str = "oracle") -> str:
    """An oracle name as configured in the gateway: lower-case letters, digits, '_' and '-'."""
    return _check(_ORACLE_NAME, value, field, "oracle name (lower-case letters, digits, '_' and '-', starting "
                                              "with a letter, at most 64)")


def dataset_version(value: object, field: str = "dataset.dataset_version") -> str:
    """A registered dataset version: the content hash the trainer saved the dataset under."""
    return _check(_DATASET_VERSION, value, field, "dataset version (8 to 64 lower-case hex digits)")


def optional(check, value: object, field: str) -> object:
    """``check(value, field)`` unless ``value`` is empty (the proto3 default, meaning "not given")."""
    return value if value in ("", 0, None) else check(value, field)


class OutsideRootError(ValueError):
    """A storage path that would leave its root. The message never names either path."""

    def __init__(self, what: str = "path"):
        super().__init__(f"{what} is outside its storage root")


def contained_path(root: Path | str, *parts: str, what: str = "path") -> Path:
    """``root/parts...`` resolved (symbolic links followed), refused unless it stays inside ``root``.

    ``parts`` may be a relative path with several components (a data-root-relative file); absolute parts,
    ``..`` escapes and links pointing out of the root all raise :class:`OutsideRootError`.
    """
    base = Path(os.path.realpath(root))
    if any(not isinstance(p, str) or "\x00" in p for p in parts):
        raise OutsideRootError(what)
    target = Path(os.path.realpath(base.joinpath(*parts)))
    if target != base and base not in target.parents:
        raise OutsideRootError(what)
    return target


def contained_key(root: str, *segments: str, what: str = "key") -> str:
    """``root/segment/...`` for an object store or fsspec path, refused when a segment is not one plain name.

    Object stores do not resolve ``..`` themselves, but fsspec and the local filesystem fallback do, so each
    segment must be a single non-empty name without separators, NUL, or a dot-only name.
    """
    for segment in segments:
        if (not isinstance(segment, str) or not segment or segment in (".", "..") or "/" in segment
                or "\\" in segment or "\x00" in segment):
            raise OutsideRootError(what)
    root = root.rstrip("/")
    key = "/".join([root, *segments])
    normal = posixpath.normpath(key)
    if root and not (normal == posixpath.normpath(root) or normal.startswith(posixpath.normpath(root) + "/")):
        raise OutsideRootError(what)
    return key


# -- the identifier fields of request messages (duck-typed: any object with these attributes) ---------------
def check_filter_ref(ref, field: str = "filter", required: bool = True) -> None:
    """A FilterRef-like ``ref`` (``.name``, ``.version``); an empty name is allowed unless ``required``."""
    if not ref.name and not required:
        filter_version(ref.version, f"{field}.version")
        return
    filter_name(ref.name, f"{field}.name")
    filter_version(ref.version, f"{field}.version")


def check_filter_refs(refs, field: str = "filters") -> None:
    for i, ref in enumerate(refs):
        check_filter_ref(ref, f"{field}[{i}]")


def check_label_request(request) -> None:
    """A LabelRequest (gRPC Label/LabelStream, ``oracle.requests`` records, labelling jobs)."""
    check_filter_ref(request.filter)
    optional(oracle_name, request.oracle, "oracle")
    optional(job_id, request.job_id, "job_id")
