"""Shared by the trainer tests: a small filter package written to a temp folder, and labelled JSONL."""

from __future__ import annotations

from pathlib import Path

import yaml

from distillery.articles import write_jsonl
from services.trainer.synthetic import generate

DIMS = ["climate", "evidence", "community"]
SCALE = {b: f"band {b}" for b in ("0-2", "3-4", "5-6", "7-8", "9-10")}


def write_filter(root: Path, name: str = "tiny", version: int = 1, kind: str = "lexical") -> Path:
    folder = root / name / f"v{version}"
    folder.mkdir(parents=True, exist_ok=True)
    spec = {
        "name": name, "version": version, "description": "a tiny test filter",
        "dimensions": [{"name": d, "weight": w, "description": d, "scale": SCALE}
                       for d, w in zip(DIMS, (0.5, 0.25, 0.25))],
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
