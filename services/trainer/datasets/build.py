"""One filter's dataset: labels validated, merged over oracles, deduplicated, grouped and split.

A :class:`~distillery_services.trainer.datasets.io.Dataset` is built from labelled records (label store rows or a JSONL
file), and is versioned by a content hash of its examples, targets and split assignment. Its validation report
says what was kept, what was dropped and why, how labels are distributed and how much oracles disagree.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
from distillery_services.trainer.datasets.dedup import (
    UnionFind,
    assign_groups,
    check_action,
    near_duplicate_groups,
    representatives,
)
from distillery_services.trainer.datasets.io import Dataset, DatasetError, Example, LabelRecord
from distillery_services.trainer.datasets.report import dataset_hash, validation_report
from distillery_services.trainer.datasets.splits import FrozenSplit, assign_splits, split_by_overall

from distillery.articles import content_hash
from distillery.filters.spec import FilterSpec


@dataclass
class Validated:
    """One filter's labels after validation, oracle consensus and exact-duplicate removal (sorted by id)."""

    examples: list[Example]
    n_input: int
    dropped: Counter
    missing_dims: Counter
    noise_diffs: list[np.ndarray]


def validated_examples(spec: FilterSpec, records: Iterable[LabelRecord],
                        progress: Callable[[str], None] | None = None) -> Validated:
    dims = spec.dimension_names
    dropped: Counter[str] = Counter()
    missing_dims: Counter[str] = Counter()
    by_id: dict[str, list[LabelRecord]] = defaultdict(list)
    n_input = 0
    for rec in records:
        n_input += 1
        if not (rec.text or "").strip() or not (rec.title or rec.text).strip():
            dropped["empty_text"] += 1
            continue
        absent = [d for d in dims if rec.scores.get(d) is None]
        if absent:
            missing_dims.update(absent)
            dropped["missing_dimensions"] += 1
            continue
        try:
            values = [float(rec.scores[d]) for d in dims]
        except (TypeError, ValueError):
            dropped["non_numeric_score"] += 1
            continue
        if any(not (0.0 <= v <= 10.0) for v in values):  # NaN fails too
            dropped["out_of_range_score"] += 1
            continue
        by_id[rec.id].append(rec)
    if progress:
        progress(f"validated {n_input} labels")

    # consensus over oracles (same article id), then exact duplicates (same content)
    noise_diffs: list[np.ndarray] = []
    by_content: dict[str, list[list[LabelRecord]]] = defaultdict(list)
    for recs in by_id.values():
        by_content[content_hash(recs[0].title, recs[0].text)].append(recs)
    examples: list[Example] = []
    for groups in by_content.values():
        groups = sorted(groups, key=lambda g: g[0].id)
        recs = [r for g in groups for r in sorted(g, key=lambda r: r.oracle_model)]
        if len(groups) > 1:
            dropped["exact_duplicate"] += len(groups) - 1
        matrix = np.array([[float(r.scores[d]) for d in dims] for r in recs])
        oracles = sorted({r.oracle_model for r in recs if r.oracle_model})
        if len(recs) > 1 and len(oracles) > 1:
            per_oracle = {o: np.median(np.array([[float(r.scores[d]) for d in dims] for r in recs
                                                 if r.oracle_model == o]), axis=0) for o in oracles}
            values = list(per_oracle.values())
            for a in range(len(values)):
                for b in range(a + 1, len(values)):
                    noise_diffs.append(np.abs(values[a] - values[b]))
        first = recs[0]
        examples.append(Example(first.id, first.title, first.text, first.url,
                                [float(v) for v in np.median(matrix, axis=0)], oracles))

    examples.sort(key=lambda e: e.id)  # everything below is independent of the input order
    return Validated(examples, n_input, dropped, missing_dims, noise_diffs)


def build_dataset(spec: FilterSpec, records: Iterable[LabelRecord], seed: int = 0,
                  near_duplicate_threshold: float = 0.85, near_duplicate_action: str = "drop",
                  min_examples: int = 10, progress: Callable[[str], None] | None = None,
                  frozen: FrozenSplit | None = None) -> Dataset:
    """Validate, merge, deduplicate and split labelled records for ``spec``.

    With ``frozen`` (the filter's :class:`FrozenSplit`), frozen test articles stay in test, the frozen
    dataset's train/val articles keep their split and only new articles are split 80/10/10.
    """
    check_action(near_duplicate_action)
    validated = validated_examples(spec, records, progress)
    examples, dropped = validated.examples, validated.dropped
    uf, pairs = near_duplicate_groups(examples, near_duplicate_threshold)
    if near_duplicate_action == "drop":
        keep = representatives(examples, uf, set(frozen.test_ids) if frozen else set())
        dropped["near_duplicate"] += len(examples) - len(keep)
        examples = [examples[i] for i in keep]
        uf = UnionFind(len(examples))
    if progress:
        progress(f"deduplicated: {len(examples)} articles left ({len(pairs)} near-duplicate pairs)")
    if len(examples) < min_examples:
        raise DatasetError(f"only {len(examples)} usable labelled articles for {spec.ref} (need at least "
                           f"{min_examples}); dropped: {dict(dropped) or 'none'}")
    assign_groups(examples, uf)
    frozen_report = assign_splits(examples, frozen, lambda new: split_by_overall(spec, new, seed))
    dataset = finished_dataset(spec, examples, validated, dropped, seed, near_duplicate_threshold,
                               near_duplicate_action)
    if frozen_report is not None:
        dataset.report["frozen_test"] = frozen_report
    return dataset


def finished_dataset(spec: FilterSpec, examples: list[Example], validated: Validated, dropped: Counter,
                     seed: int, threshold: float, action: str) -> Dataset:
    """The dataset of split ``examples`` with its hash and validation report."""
    dataset = Dataset(spec.ref, spec.dimension_names, examples, {})
    dataset.hash = dataset_hash(dataset, seed)
    dataset.report = validation_report(spec, dataset, validated.n_input, dropped, validated.missing_dims,
                                       validated.noise_diffs, seed, threshold, action)
    return dataset
