"""Splits: grouped, stratified 80/10/10 splits, and the frozen test split that later datasets keep."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from distillery_services.trainer.datasets.dedup import url_key
from distillery_services.trainer.datasets.io import Dataset, DatasetError, Example

from distillery.filters.postprocess import overall_scores
from distillery.filters.spec import BAND_EDGES, FilterSpec

SPLITS = ("train", "val", "test")
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)
OVERALL_BINS = BAND_EDGES  # splits are stratified by the band of the overall score
FROZEN_TEST_FILE = "frozen_test.json"


@dataclass
class FrozenSplit:
    """The split of the first dataset built for a filter version; its test articles stay test for good.

    Saved as ``<datasets_dir>/<filter>/v<N>/frozen_test.json``. Later datasets keep every frozen test
    article (when still labelled) in test, give the first dataset's train/val articles their old split and
    split only articles that are new since then; a new article that shares a URL or near-duplicate group
    with a frozen test article joins test. Model comparisons use the frozen test articles.
    """

    filter_ref: str
    dataset_hash: str
    test_ids: list[str]
    test_url_keys: list[str]
    train_ids: list[str] = field(default_factory=list)
    val_ids: list[str] = field(default_factory=list)
    created_at: str = ""

    @staticmethod
    def path(root: Path | str, filter_ref: str) -> Path:
        name, _, version = filter_ref.partition("/")
        return Path(root) / name / version / FROZEN_TEST_FILE

    @classmethod
    def from_dataset(cls, dataset: Dataset) -> FrozenSplit:
        from datetime import datetime, timezone

        test = sorted(dataset.split("test"), key=lambda e: e.id)
        return cls(dataset.filter_ref, dataset.hash, [e.id for e in test],
                   sorted({k for k in (url_key(e.url) for e in test) if k}),
                   sorted(e.id for e in dataset.split("train")), sorted(e.id for e in dataset.split("val")),
                   datetime.now(timezone.utc).isoformat(timespec="seconds"))

    def to_dict(self) -> dict[str, Any]:
        return {"filter": self.filter_ref, "dataset_hash": self.dataset_hash, "created_at": self.created_at,
                "test_ids": self.test_ids, "test_url_keys": self.test_url_keys, "train_ids": self.train_ids,
                "val_ids": self.val_ids}

    @classmethod
    def load(cls, root: Path | str, filter_ref: str) -> FrozenSplit | None:
        path = cls.path(root, filter_ref)
        if not path.is_file():
            return None
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            return cls(doc["filter"], doc.get("dataset_hash", ""), list(doc["test_ids"]),
                       list(doc.get("test_url_keys", [])), list(doc.get("train_ids", [])),
                       list(doc.get("val_ids", [])), doc.get("created_at", ""))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DatasetError(f"frozen test split {path} is unreadable ({exc}); restore it or delete it to "
                               "freeze a new one") from None

    def save_if_absent(self, root: Path | str) -> FrozenSplit:
        """Write the file unless one exists already (first writer wins); return the split now on disk."""
        import os
        import tempfile

        path = self.path(root, self.filter_ref)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{FROZEN_TEST_FILE}.")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(self.to_dict(), fh, indent=1)
        try:
            os.link(tmp, path)  # atomic, and fails when another dataset froze the split first
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
        return FrozenSplit.load(root, self.filter_ref) or self


def frozen_test_ids(dataset: Dataset, frozen: FrozenSplit | None) -> list[str]:
    """The frozen test articles present in ``dataset`` (its whole test split when nothing is frozen)."""
    if frozen is None:
        return [e.id for e in dataset.split("test")]
    keep = set(frozen.test_ids)
    return [e.id for e in dataset.split("test") if e.id in keep]


def merged_frozen(frozen: Iterable[FrozenSplit]) -> FrozenSplit | None:
    """One split honouring every filter's frozen split: test anywhere -> test, else val anywhere -> val."""
    frozen = [f for f in frozen if f is not None]
    if not frozen:
        return None
    test = {i for f in frozen for i in f.test_ids}
    val = {i for f in frozen for i in f.val_ids} - test
    train = {i for f in frozen for i in f.train_ids} - test - val
    return FrozenSplit("+".join(f.filter_ref for f in frozen), "+".join(f.dataset_hash for f in frozen),
                       sorted(test), sorted({k for f in frozen for k in f.test_url_keys}), sorted(train),
                       sorted(val))


def assign_splits(examples: list[Example], frozen: FrozenSplit | None,
                  assign_new: Callable[[list[Example]], None]) -> dict | None:
    """Split grouped ``examples``: all by ``assign_new`` when nothing is frozen, else under ``frozen``.
    Returns what the report records about the frozen split (None without one)."""
    if frozen is None:
        assign_new(examples)
        return None
    return _assign_with_frozen(examples, frozen, assign_new)


def _assign_with_frozen(examples: list[Example], frozen: FrozenSplit,
                        assign_new: Callable[[list[Example]], None]) -> dict:
    """Splits under a frozen split: frozen test (and what groups with it) -> test, old train/val kept,
    new groups split 80/10/10 as usual (``assign_new``). Returns what the report records about it."""
    test_ids, test_urls = set(frozen.test_ids), set(frozen.test_url_keys)
    old = {**{i: "train" for i in frozen.train_ids}, **{i: "val" for i in frozen.val_ids}}
    groups: dict[int, list[Example]] = defaultdict(list)
    for e in examples:
        groups[e.group].append(e)
    new_examples: list[Example] = []
    joined = 0
    for g in sorted(groups):
        members = groups[g]
        if any(e.id in test_ids or (url_key(e.url) and url_key(e.url) in test_urls) for e in members):
            joined += sum(1 for e in members if e.id not in test_ids)
            split = "test"
        else:
            olds = sorted((e.id, old[e.id]) for e in members if e.id in old)
            split = olds[0][1] if olds else ""
        if split:
            for e in members:
                e.split = split
        else:
            new_examples.extend(members)
    if new_examples:
        assign_new(new_examples)
    present = {e.id for e in examples}
    return {"frozen_from": frozen.dataset_hash, "frozen_test": len(test_ids),
            "frozen_test_present": len(test_ids & present), "joined_test": joined,
            "new_articles": len(new_examples)}


def split_by_overall(spec: FilterSpec, examples: list[Example], seed: int) -> None:
    """80/10/10 over groups, stratified by the group's overall-score bin, seeded."""
    targets = np.array([e.targets for e in examples])
    overall, _ = overall_scores(spec, targets)
    split_groups(examples, overall, seed)


def split_groups(examples: list[Example], overall: np.ndarray, seed: int) -> None:
    """80/10/10 over ``examples``' groups, stratified by the group's mean of ``overall``, seeded."""
    groups: dict[int, list[int]] = defaultdict(list)
    for i, e in enumerate(examples):
        groups[e.group].append(i)
    by_bin: dict[int, list[int]] = defaultdict(list)
    for g, members in groups.items():
        by_bin[int(np.digitize(overall[members].mean(), OVERALL_BINS))].append(g)
    rng = np.random.default_rng(seed)
    for b in sorted(by_bin):
        gids = sorted(by_bin[b])
        rng.shuffle(gids)
        total = sum(len(groups[g]) for g in gids)
        bounds = (SPLIT_FRACTIONS[0] * total, (SPLIT_FRACTIONS[0] + SPLIT_FRACTIONS[1]) * total)
        count = 0
        for g in gids:
            # assign by the running count's midpoint so that small bins still spread over the splits
            mid = count + len(groups[g]) / 2
            name = "train" if mid < bounds[0] else ("val" if mid < bounds[1] else "test")
            for i in groups[g]:
                examples[i].split = name
            count += len(groups[g])
