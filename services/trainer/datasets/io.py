"""Label records and datasets: their types, reading labels (JSONL files, the label store), saving datasets."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from distillery.articles import derive_id, read_jsonl, write_jsonl
from distillery.students import compose_text


class DatasetError(ValueError):
    """Labels that cannot make a dataset (file missing, no usable records, too few to split)."""


@dataclass
class LabelRecord:
    """One oracle label of one article."""

    id: str
    title: str
    text: str
    url: str
    scores: dict[str, float]
    oracle_model: str = ""


@dataclass
class Example:
    id: str
    title: str
    text: str
    url: str
    targets: list[float]
    oracles: list[str] = field(default_factory=list)
    group: int = -1
    split: str = ""

    @property
    def input_text(self) -> str:
        return compose_text(self.title, self.text)


def split_of(examples: Iterable[Example], name: str) -> list[Example]:
    return [e for e in examples if e.split == name]


def split_arrays(examples: Iterable[Example], name: str, width: int) -> tuple[list[str], np.ndarray]:
    """Texts and targets ``(n, width)`` of one split."""
    rows = split_of(examples, name)
    return [e.input_text for e in rows], np.array([e.targets for e in rows], dtype=np.float64).reshape(len(rows), width)


@dataclass
class Dataset:
    filter_ref: str
    dimensions: list[str]
    examples: list[Example]
    report: dict[str, Any]
    hash: str = ""

    def split(self, name: str) -> list[Example]:
        return split_of(self.examples, name)

    def arrays(self, name: str) -> tuple[list[str], np.ndarray]:
        return split_arrays(self.examples, name, len(self.dimensions))

    def save(self, root: Path | str) -> Path:
        """Write ``<root>/<filter>/v<N>/<hash>/{examples.jsonl,report.json}`` (idempotent)."""
        name, _, version = self.filter_ref.partition("/")
        folder = Path(root) / name / version / self.hash
        if (folder / "report.json").exists():
            return folder
        folder.mkdir(parents=True, exist_ok=True)
        write_jsonl(folder / "examples.jsonl", (
            {"id": e.id, "title": e.title, "text": e.text, "url": e.url, "split": e.split, "group": e.group,
             "oracles": e.oracles, "dimension_scores": dict(zip(self.dimensions, e.targets))}
            for e in self.examples))
        (folder / "report.json").write_text(json.dumps(self.report, indent=2, default=float), encoding="utf-8")
        return folder

    @classmethod
    def load(cls, folder: Path | str) -> Dataset:
        folder = Path(folder)
        if not (folder / "report.json").exists():
            raise DatasetError(f"{folder} is not a saved dataset (report.json missing)")
        report = json.loads((folder / "report.json").read_text(encoding="utf-8"))
        dims = report["dimensions"]
        examples = [Example(r["id"], r["title"], r["text"], r["url"], [r["dimension_scores"][d] for d in dims],
                            r.get("oracles", []), r.get("group", -1), r["split"])
                    for r in read_jsonl(folder / "examples.jsonl")]
        return cls(report["filter"], dims, examples, report, report["dataset_hash"])


def records_from_jsonl(path: Path | str) -> list[LabelRecord]:
    """Read the shared dataset shape: id, title, text, url, dimension_scores (or scores) {dim: score}."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"labels file {path} does not exist")
    out = []
    for rec in read_jsonl(path):
        scores = rec.get("dimension_scores") or rec.get("scores") or {}
        if isinstance(scores, Mapping):
            scores = {k: (v.get("score") if isinstance(v, Mapping) else v) for k, v in scores.items()}
        text = rec.get("text") or rec.get("content") or ""
        title = rec.get("title") or ""
        url = rec.get("url") or ""
        out.append(LabelRecord(str(rec.get("id") or derive_id(url, title, text)), title, text, url,
                               dict(scores), str(rec.get("oracle_model") or rec.get("oracle") or "")))
    return out


def records_from_store(url: str, filter_name: str, filter_version: int,
                       include_audit: bool = False) -> list[LabelRecord]:
    """Labels from the label store (``distillery.store.labels``).

    Audit labels (reason ``LABEL_REASON_AUDIT``) measure the live student and are left out unless
    ``include_audit`` (offline experiments only: training on them makes the live accuracy in-sample).
    """
    try:
        from distillery.store.labels import AUDIT_REASONS, LabelStore
    except ImportError as exc:
        raise DatasetError(f"the label store is not available in this installation ({exc})") from None
    store = LabelStore.open(url)
    try:
        return [LabelRecord(str(r.id), r.title, r.text, getattr(r, "url", "") or "", dict(r.scores),
                            getattr(r, "oracle_model", "") or "")
                for r in store.iter_labelled(filter_name, filter_version,
                                             exclude_reasons=() if include_audit else AUDIT_REASONS)]
    finally:
        close = getattr(store, "close", None)
        if close:
            close()
