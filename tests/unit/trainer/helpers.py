"""Shared by the trainer tests: a small filter package written to a temp folder, and labelled JSONL."""

from __future__ import annotations

from pathlib import Path

import yaml

from distillery.articles import write_jsonl
from distillery.testing.labelled import generate

DIMS = ["climate", "evidence", "community"]
SCALE = {b: f"band {b}" for b in ("0-2", "3-4", "5-6", "7-8", "9-10")}


def write_filter(root: Path, name: str = "tiny", version: int = 1, kind: str = "lexical",
                 dims: list[str] | None = None) -> Path:
    folder = root / name / f"v{version}"
    folder.mkdir(parents=True, exist_ok=True)
    dims = dims or DIMS
    weights = (0.5, 0.25, 0.25) if len(dims) == 3 else [1 / len(dims)] * len(dims)
    spec = {
        "name": name, "version": version, "description": "a tiny test filter",
        "dimensions": [{"name": d, "weight": w, "description": d, "scale": SCALE}
                       for d, w in zip(dims, weights)],
        "tiers": [{"name": "low", "min_overall": 0}, {"name": "medium", "min_overall": 4},
                  {"name": "high", "min_overall": 7}],
        "student": {"kind": kind, "truncation": {"head_tokens": 48, "tail_tokens": 16}},
    }
    (folder / "filter.yaml").write_text(yaml.safe_dump(spec), encoding="utf-8")
    (folder / "prompt.md").write_text("Rate it.\n{{dimensions}}\n{{output_schema}}\n{{article}}\n", encoding="utf-8")
    return root


def write_labels(path: Path, n: int = 200, seed: int = 0, **kwargs) -> Path:
    write_jsonl(path, generate(DIMS, n, seed=seed, **kwargs))
    return path


A_DIMS, B_DIMS = ["climate", "evidence"], ["community", "profit"]


def write_two_filters(root: Path, n: int = 240, seed: int = 0) -> tuple[Path, Path, Path]:
    """Filters ``a`` (climate, evidence) and ``b`` (community, profit) and their labels: one generated corpus,
    a labelled for its first 70% of articles and b for its last 70% (40% of the articles have both).
    Returns (filters root, a.jsonl, b.jsonl)."""
    filters = root / "filters"
    write_filter(filters, "a", dims=A_DIMS)
    write_filter(filters, "b", dims=B_DIMS)
    records = generate(A_DIMS + B_DIMS, n, seed=seed)
    cut = int(0.7 * n)

    def only(recs, dims):
        return [{**r, "dimension_scores": {d: r["dimension_scores"][d] for d in dims}} for r in recs]

    write_jsonl(root / "a.jsonl", only(records[:cut], A_DIMS))
    write_jsonl(root / "b.jsonl", only(records[n - cut:], B_DIMS))
    return filters, root / "a.jsonl", root / "b.jsonl"
