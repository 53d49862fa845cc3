"""The manifest every saved student carries, the factory that reads it, and the shared text composition."""

from __future__ import annotations

import importlib
import json
import platform
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from distillery.students.base import Student

MANIFEST = "manifest.json"
MANIFEST_SCHEMA = 1

# kind -> "module:Class"; heavy modules are imported only when that kind is used.
KINDS: dict[str, str] = {
    "lexical": "distillery.students.lexical:LexicalStudent",
    "probe": "distillery.students.probe:ProbeStudent",
    "ensemble": "distillery.students.ensemble:EnsembleStudent",
    "finetune": "distillery.students.finetune:FinetuneStudent",
    "multi": "distillery.students.multi:MultiStudent",
    "stack": "distillery.students.stack:StackStudent",
    "transfer": "distillery.students.transfer:TransferStudent",
}


class StudentLoadError(ValueError):
    """A student folder that cannot be read (no manifest, unknown kind, missing files)."""


def compose_text(title: str, text: str) -> str:
    """The one way an article becomes student input (training, evaluation and serving must agree)."""
    title = (title or "").strip()
    text = (text or "").strip()
    return f"{title}\n\n{text}" if title else text


def student_class(kind: str) -> type[Student]:
    if kind not in KINDS:
        raise StudentLoadError(f"unknown student kind {kind!r}; known: {', '.join(KINDS)}")
    module_name, _, cls_name = KINDS[kind].partition(":")
    return getattr(importlib.import_module(module_name), cls_name)


def make_student(kind: str, dimensions: list[str], **params: Any) -> Student:
    """Build an untrained student of ``kind``; unknown ``params`` raise ValueError naming the valid ones."""
    return student_class(kind)(dimensions, **params)


def library_versions() -> dict[str, str]:
    # Distribution metadata, not imports: importing torch/transformers/peft only for __version__ cost each
    # trainer job ~6 s.
    from importlib.metadata import PackageNotFoundError, version

    versions = {"python": platform.python_version()}
    for module, dist in (("numpy", "numpy"), ("sklearn", "scikit-learn"), ("torch", "torch"),
                         ("transformers", "transformers"), ("peft", "peft")):
        try:
            versions[module] = version(dist)
        except PackageNotFoundError:
            continue
    try:
        versions["llm-distillery"] = version("llm-distillery")
    except PackageNotFoundError:  # not installed as a distribution
        versions["llm-distillery"] = "unknown"
    return versions


def write_manifest(path: Path, student: Student, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Write ``manifest.json`` (kind, dimensions, filter, library versions) into a student folder."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    manifest = {
        "schema": MANIFEST_SCHEMA,
        "kind": student.kind,
        "dimensions": list(student.dimensions),
        "filter": getattr(student, "filter", "") or "",
        "params": getattr(student, "params", {}),
        "versions": library_versions(),
        "saved_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if extra:
        manifest.update(extra)
    (path / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str), encoding="utf-8")
    return manifest


def read_manifest(path: Path | str) -> dict[str, Any]:
    path = Path(path)
    file = path / MANIFEST
    if not file.is_file():
        raise StudentLoadError(f"{path} is not a saved student: {MANIFEST} is missing")
    try:
        manifest = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise StudentLoadError(f"{file} is not valid JSON: {exc}") from None
    for key in ("kind", "dimensions"):
        if key not in manifest:
            raise StudentLoadError(f"{file} lacks the field {key!r}")
    return manifest


def load_student(path: Path | str) -> Student:
    """Load any saved student: the manifest names its kind."""
    manifest = read_manifest(path)
    return student_class(manifest["kind"]).load(Path(path))
