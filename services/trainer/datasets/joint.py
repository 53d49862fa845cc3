"""Joint datasets: several filters' labels joined by article id, deduplicated and split once over the union
(for one multi student that serves them all)."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from distillery_services.trainer.datasets.build import Validated, finished_dataset, validated_examples
from distillery_services.trainer.datasets.dedup import (
    UnionFind,
    assign_groups,
    check_action,
    near_duplicate_groups,
    representatives,
)
from distillery_services.trainer.datasets.io import (
    Dataset,
    DatasetError,
    Example,
    LabelRecord,
    split_arrays,
    split_of,
)
from distillery_services.trainer.datasets.splits import (
    SPLITS,
    FrozenSplit,
    assign_splits,
    merged_frozen,
    split_groups,
)

from distillery.articles import content_hash
from distillery.filters.postprocess import overall_scores
from distillery.filters.spec import FilterSpec


@dataclass
class JointDataset:
    """Several filters' labels joined by article id, deduplicated and split once over the union.

    ``examples`` carry one target per column (``<filter_ref>:<dimension>``, NaN where the article has no
    label for that filter); no article (or near-duplicate/URL group) is in two splits for any filter.
    ``datasets`` are the per-filter views (that filter's labelled articles with the joint split), saved
    and frozen like any one-filter dataset so that evaluation and retraining see ordinary datasets.
    """

    filters: list[str]
    columns: list[str]
    examples: list[Example]
    datasets: dict[str, Dataset]
    report: dict[str, Any]
    hash: str = ""

    def split(self, name: str) -> list[Example]:
        return split_of(self.examples, name)

    def arrays(self, name: str) -> tuple[list[str], np.ndarray]:
        return split_arrays(self.examples, name, len(self.columns))


class _Columns:
    """Where each filter's dimensions sit in a joint example's targets."""

    def __init__(self, specs: list[FilterSpec]):
        self.refs = [s.ref for s in specs]
        self.names = [f"{s.ref}:{d}" for s in specs for d in s.dimension_names]
        self.offsets: dict[str, tuple[int, int]] = {}
        start = 0
        for s in specs:
            self.offsets[s.ref] = (start, start + len(s.dimension_names))
            start += len(s.dimension_names)

    def labelled(self, e: Example, ref: str) -> bool:
        lo, hi = self.offsets[ref]
        return not np.isnan(e.targets[lo]) if hi > lo else False


def build_joint_dataset(specs: list[FilterSpec], records: Mapping[str, Iterable[LabelRecord]], seed: int = 0,
                        near_duplicate_threshold: float = 0.85, near_duplicate_action: str = "drop",
                        min_examples: int = 10, progress: Callable[[str], None] | None = None,
                        frozen: Mapping[str, FrozenSplit | None] | None = None) -> JointDataset:
    """Validate each filter's labels (``records`` by filter ref), join them by article id, then deduplicate,
    group and split the union once (respecting every filter's frozen split)."""
    check_action(near_duplicate_action)
    frozen = dict(frozen or {})
    cols = _Columns(specs)
    validated = _validated_per_filter(specs, records, min_examples)
    if progress:
        progress("validated " + ", ".join(f"{r}: {validated[r].n_input} labels" for r in cols.refs))
    examples = _joined(cols, validated)
    dropped = {ref: Counter(validated[ref].dropped) for ref in cols.refs}
    uf, pairs = near_duplicate_groups(examples, near_duplicate_threshold)
    if near_duplicate_action == "drop":
        frozen_test = {i for f in frozen.values() if f is not None for i in f.test_ids}
        examples = _merged_near_duplicates(cols, examples, representatives(examples, uf, frozen_test), dropped)
        uf = UnionFind(len(examples))
    for ref in cols.refs:
        n = sum(1 for e in examples if cols.labelled(e, ref))
        if n < min_examples:
            raise DatasetError(f"only {n} usable labelled articles for {ref} after deduplication (need at "
                               f"least {min_examples}); dropped: {dict(dropped[ref]) or 'none'}")
    if progress:
        progress(f"joined and deduplicated: {len(examples)} articles ({len(pairs)} near-duplicate pairs)")
    assign_groups(examples, uf)
    frozen_report = assign_splits(examples, merged_frozen(frozen.get(r) for r in cols.refs),
                                  lambda new: _split_by_mean_overall(specs, cols, new, seed))
    datasets = {spec.ref: finished_dataset(spec, _view(cols, spec.ref, examples), validated[spec.ref],
                                           dropped[spec.ref], seed, near_duplicate_threshold, near_duplicate_action)
                for spec in specs}
    joint = JointDataset(cols.refs, cols.names, examples, datasets, {}, _joint_hash(cols, examples, seed))
    joint.report = _joint_report(cols, joint, seed, near_duplicate_threshold, near_duplicate_action, len(pairs))
    if frozen_report is not None:
        joint.report["frozen_test"] = frozen_report
    for ds in datasets.values():
        ds.report["joint"] = {"dataset_hash": joint.hash, "filters": cols.refs}
    return joint


def _validated_per_filter(specs: list[FilterSpec], records: Mapping[str, Iterable[LabelRecord]],
                          min_examples: int) -> dict[str, Validated]:
    validated: dict[str, Validated] = {}
    for spec in specs:
        v = validated_examples(spec, records.get(spec.ref, []))
        if len(v.examples) < min_examples:
            raise DatasetError(f"only {len(v.examples)} usable labelled articles for {spec.ref} (need at least "
                               f"{min_examples}; {v.n_input} labels read); dropped: {dict(v.dropped) or 'none'}")
        validated[spec.ref] = v
    return validated


def _joined(cols: _Columns, validated: Mapping[str, Validated]) -> list[Example]:
    """One example per article id; the first filter (in request order) that labelled it gives its text."""
    rows: dict[str, Example] = {}
    for ref in cols.refs:
        lo, hi = cols.offsets[ref]
        for e in validated[ref].examples:
            row = rows.get(e.id)
            if row is None:
                row = rows[e.id] = Example(e.id, e.title, e.text, e.url, [float("nan")] * len(cols.names))
            row.targets[lo:hi] = e.targets
            row.oracles = sorted(set(row.oracles) | set(e.oracles))
    return sorted(rows.values(), key=lambda e: e.id)


def _merged_near_duplicates(cols: _Columns, examples: list[Example], kept: Mapping[int, list[int]],
                            dropped: Mapping[str, Counter]) -> list[Example]:
    """Keep one article per near-duplicate group and give it the labels the others hold for filters it lacks,
    so that no filter loses an article needlessly."""
    for chosen, others in kept.items():
        rep = examples[chosen]
        for i in others:
            for ref in cols.refs:
                if not cols.labelled(examples[i], ref):
                    continue
                if cols.labelled(rep, ref):
                    dropped[ref]["near_duplicate"] += 1
                else:
                    lo, hi = cols.offsets[ref]
                    rep.targets[lo:hi] = examples[i].targets[lo:hi]
    return [examples[i] for i in kept]


def _split_by_mean_overall(specs: list[FilterSpec], cols: _Columns, new: list[Example], seed: int) -> None:
    """Stratify by the mean over the article's filters of each filter's overall score."""
    overall = np.full((len(new), len(specs)), np.nan)
    for j, spec in enumerate(specs):
        lo, hi = cols.offsets[spec.ref]
        rows_j = [k for k, e in enumerate(new) if cols.labelled(e, spec.ref)]
        if rows_j:
            overall[rows_j, j], _ = overall_scores(spec, np.array([new[k].targets[lo:hi] for k in rows_j]))
    split_groups(new, np.nanmean(overall, axis=1), seed)


def _view(cols: _Columns, ref: str, examples: list[Example]) -> list[Example]:
    """One filter's labelled articles of the joint examples, with its own targets and the joint split."""
    lo, hi = cols.offsets[ref]
    return [Example(e.id, e.title, e.text, e.url, list(e.targets[lo:hi]), list(e.oracles), e.group, e.split)
            for e in examples if cols.labelled(e, ref)]


def _joint_hash(cols: _Columns, examples: list[Example], seed: int) -> str:
    h = hashlib.sha256(json.dumps({"filters": cols.refs, "columns": cols.names, "seed": seed}).encode())
    for e in examples:
        h.update(json.dumps([e.id, content_hash(e.title, e.text),
                             [None if np.isnan(t) else round(t, 4) for t in e.targets], e.split]).encode())
    return h.hexdigest()[:16]


def _joint_report(cols: _Columns, joint: JointDataset, seed: int, threshold: float, action: str,
                  n_pairs: int) -> dict[str, Any]:
    refs, examples = cols.refs, joint.examples
    return {
        "filters": refs, "columns": cols.names, "dataset_hash": joint.hash, "seed": seed,
        "n_examples": len(examples),
        "labelled_for": {ref: sum(1 for e in examples if cols.labelled(e, ref)) for ref in refs},
        "labelled_for_all": sum(1 for e in examples if all(cols.labelled(e, r) for r in refs)),
        "near_duplicates": {"threshold": threshold, "action": action, "pairs": n_pairs},
        "splits": {name: {"n": sum(1 for e in examples if e.split == name),
                          **{ref: sum(1 for e in examples if e.split == name and cols.labelled(e, ref))
                             for ref in refs}}
                   for name in SPLITS},
        "datasets": {ref: ds.hash for ref, ds in joint.datasets.items()},
    }
