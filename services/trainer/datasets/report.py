"""What a dataset says about itself: its content hash and its validation report."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from typing import Any

import numpy as np
from distillery_services.trainer.datasets.io import Dataset
from distillery_services.trainer.datasets.splits import OVERALL_BINS, SPLITS
from distillery_services.trainer.evaluation import BANDS

from distillery.articles import content_hash
from distillery.filters.postprocess import overall_scores
from distillery.filters.spec import FilterSpec


def dataset_hash(dataset: Dataset, seed: int) -> str:
    h = hashlib.sha256()
    h.update(json.dumps({"filter": dataset.filter_ref, "dimensions": dataset.dimensions, "seed": seed}).encode())
    for e in sorted(dataset.examples, key=lambda x: x.id):
        h.update(json.dumps([e.id, content_hash(e.title, e.text), [round(t, 4) for t in e.targets],
                             e.split]).encode())
    return h.hexdigest()[:16]


def _dimension_stats(col: np.ndarray, missing: int) -> dict[str, Any]:
    return {
        "min": float(col.min()), "max": float(col.max()), "mean": float(col.mean()), "std": float(col.std()),
        "bands": {name: int(((col >= lo) & (col < hi)).sum()) for lo, hi, name in BANDS},
        "missing": missing,
    }


def validation_report(spec: FilterSpec, dataset: Dataset, n_input: int, dropped: Counter, missing: Counter,
                      noise_diffs: list[np.ndarray], seed: int, threshold: float, action: str) -> dict[str, Any]:
    dims = dataset.dimensions
    y = np.array([e.targets for e in dataset.examples])
    overall, _ = overall_scores(spec, y)
    per_dim = {d: _dimension_stats(y[:, j], int(missing.get(d, 0))) for j, d in enumerate(dims)}
    corr = np.corrcoef(y.T) if len(y) > 1 else np.eye(len(dims))
    splits = {}
    for name in SPLITS:
        mask = np.array([e.split == name for e in dataset.examples])
        splits[name] = {"n": int(mask.sum()),
                        "overall_mean": float(overall[mask].mean()) if mask.any() else 0.0,
                        "groups": len({e.group for e in dataset.examples if e.split == name})}
    noise = None
    if noise_diffs:
        diffs = np.stack(noise_diffs)
        noise = {"pairs": len(diffs),
                 "mean_abs_diff": {d: float(diffs[:, j].mean()) for j, d in enumerate(dims)},
                 "mean_abs_diff_all": float(diffs.mean())}
    return {
        "filter": dataset.filter_ref,
        "dimensions": dims,
        "dataset_hash": dataset.hash,
        "seed": seed,
        "n_input_labels": n_input,
        "n_examples": len(dataset.examples),
        "dropped": dict(dropped),
        "near_duplicates": {"threshold": threshold, "action": action},
        "multi_oracle_articles": sum(1 for e in dataset.examples if len(e.oracles) > 1),
        "label_noise": noise,
        "dimensions_stats": per_dim,
        "correlations": {a: {b: float(np.nan_to_num(corr[i, j])) for j, b in enumerate(dims)}
                         for i, a in enumerate(dims)},
        "overall": {"mean": float(overall.mean()), "std": float(overall.std()),
                    "bins": {str(k): int(v) for k, v in Counter(np.digitize(overall, OVERALL_BINS).tolist()).items()}},
        "splits": splits,
    }
