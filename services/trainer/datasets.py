"""Training datasets: validation, multi-oracle consensus, duplicate removal, grouped stratified splits.

A :class:`Dataset` is built from labelled records (label store rows or a JSONL file), and is versioned by
a content hash of its examples, targets and split assignment. Its validation report says what was kept,
what was dropped and why, how labels are distributed and how much oracles disagree.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from distillery.articles import content_hash, derive_id, read_jsonl, write_jsonl
from distillery.filters.postprocess import overall_scores
from distillery.filters.spec import FilterSpec
from distillery.students import compose_text

SPLITS = ("train", "val", "test")
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)
OVERALL_BINS = (2.0, 4.0, 6.0, 8.0)
BANDS = ((0, 2.5), (2.5, 4.5), (4.5, 6.5), (6.5, 8.5), (8.5, 10.01))
BAND_NAMES = ("0-2", "3-4", "5-6", "7-8", "9-10")


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


# -- reading ------------------------------------------------------------------------------------------
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


# -- the frozen test split ------------------------------------------------------------------------------
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
                   sorted({k for k in (_url_key(e.url) for e in test) if k}),
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


# -- building -----------------------------------------------------------------------------------------
class _UnionFind:
    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


_WORD = re.compile(r"\w+", re.UNICODE)


def near_duplicate_pairs(texts: list[str], threshold: float = 0.85, num_perm: int = 64,
                         shingle: int = 3, max_words: int = 1500) -> list[tuple[int, int]]:
    """Pairs of texts whose word-shingle Jaccard similarity is (likely) above ``threshold`` (MinHash LSH)."""
    from datasketch import MinHash, MinHashLSH

    sets = []
    for text in texts:
        words = _WORD.findall(text.lower())[:max_words]
        grams = {" ".join(words[i: i + shingle]) for i in range(max(1, len(words) - shingle + 1))}
        sets.append([g.encode("utf-8") for g in grams if g])
    hashes = MinHash.bulk(sets, num_perm=num_perm, seed=1)
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    pairs = []
    for i, mh in enumerate(hashes):
        for j in lsh.query(mh):
            if mh.jaccard(hashes[j]) >= threshold:
                pairs.append((int(j), i))
        lsh.insert(i, mh)
    return pairs


def _url_key(url: str) -> str:
    if not url:
        return ""
    parts = urlsplit(url.strip().lower())
    return f"{parts.netloc.removeprefix('www.')}{parts.path.rstrip('/')}"


@dataclass
class _Validated:
    """One filter's labels after validation, oracle consensus and exact-duplicate removal (sorted by id)."""

    examples: list[Example]
    n_input: int
    dropped: Counter
    missing_dims: Counter
    noise_diffs: list[np.ndarray]


def _validated_examples(spec: FilterSpec, records: Iterable[LabelRecord],
                        progress: Callable[[str], None] | None = None) -> _Validated:
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
    return _Validated(examples, n_input, dropped, missing_dims, noise_diffs)


def build_dataset(spec: FilterSpec, records: Iterable[LabelRecord], seed: int = 0,
                  near_duplicate_threshold: float = 0.85, near_duplicate_action: str = "drop",
                  min_examples: int = 10, progress: Callable[[str], None] | None = None,
                  frozen: FrozenSplit | None = None) -> Dataset:
    """Validate, merge, deduplicate and split labelled records for ``spec``.

    With ``frozen`` (the filter's :class:`FrozenSplit`), frozen test articles stay in test, the frozen
    dataset's train/val articles keep their split and only new articles are split 80/10/10.
    """
    if near_duplicate_action not in {"drop", "group"}:
        raise ValueError("near_duplicate_action must be 'drop' or 'group'")
    dims = spec.dimension_names
    validated = _validated_examples(spec, records, progress)
    examples, n_input, dropped = validated.examples, validated.n_input, validated.dropped
    missing_dims, noise_diffs = validated.missing_dims, validated.noise_diffs
    # near duplicates
    pairs = near_duplicate_pairs([e.input_text for e in examples], near_duplicate_threshold) if examples else []
    uf = _UnionFind(len(examples))
    for a, b in pairs:
        uf.union(a, b)
    frozen_test = set(frozen.test_ids) if frozen else set()
    if near_duplicate_action == "drop":
        # keep one article per group: a frozen test article when the group has one, else the first
        chosen: dict[int, int] = {}
        for i, e in enumerate(examples):
            root = uf.find(i)
            if root not in chosen or (e.id in frozen_test and examples[chosen[root]].id not in frozen_test):
                chosen[root] = i
        keep = sorted(chosen.values())
        dropped["near_duplicate"] += len(examples) - len(keep)
        examples = [examples[i] for i in keep]
        uf = _UnionFind(len(examples))
    if progress:
        progress(f"deduplicated: {len(examples)} articles left ({len(pairs)} near-duplicate pairs)")
    if len(examples) < min_examples:
        raise DatasetError(f"only {len(examples)} usable labelled articles for {spec.ref} (need at least "
                           f"{min_examples}); dropped: {dict(dropped) or 'none'}")
    # same-URL articles share a group
    first_by_url: dict[str, int] = {}
    for i, e in enumerate(examples):
        key = _url_key(e.url)
        if key:
            if key in first_by_url:
                uf.union(first_by_url[key], i)
            else:
                first_by_url[key] = i
    for i, e in enumerate(examples):
        e.group = uf.find(i)
    frozen_report = None
    if frozen is None:
        _assign_splits(spec, examples, seed)
    else:
        frozen_report = _assign_with_frozen(examples, frozen, lambda new: _assign_splits(spec, new, seed))
    dataset = Dataset(spec.ref, dims, examples, {})
    dataset.hash = dataset_hash(dataset, seed)
    dataset.report = validation_report(spec, dataset, n_input, dropped, missing_dims, noise_diffs, seed,
                                       near_duplicate_threshold, near_duplicate_action)
    if frozen_report is not None:
        dataset.report["frozen_test"] = frozen_report
    return dataset


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
        if any(e.id in test_ids or (_url_key(e.url) and _url_key(e.url) in test_urls) for e in members):
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


def _assign_splits(spec: FilterSpec, examples: list[Example], seed: int) -> None:
    """80/10/10 over groups, stratified by the group's overall-score bin, seeded."""
    targets = np.array([e.targets for e in examples])
    overall, _ = overall_scores(spec, targets)
    _split_groups(examples, overall, seed)


def _split_groups(examples: list[Example], overall: np.ndarray, seed: int) -> None:
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


def dataset_hash(dataset: Dataset, seed: int) -> str:
    h = hashlib.sha256()
    h.update(json.dumps({"filter": dataset.filter_ref, "dimensions": dataset.dimensions, "seed": seed}).encode())
    for e in sorted(dataset.examples, key=lambda x: x.id):
        h.update(json.dumps([e.id, content_hash(e.title, e.text), [round(t, 4) for t in e.targets],
                             e.split]).encode())
    return h.hexdigest()[:16]


def validation_report(spec: FilterSpec, dataset: Dataset, n_input: int, dropped: Counter, missing: Counter,
                      noise_diffs: list[np.ndarray], seed: int, threshold: float, action: str) -> dict[str, Any]:
    dims = dataset.dimensions
    y = np.array([e.targets for e in dataset.examples])
    overall, _ = overall_scores(spec, y)
    per_dim = {}
    for j, d in enumerate(dims):
        col = y[:, j]
        per_dim[d] = {
            "min": float(col.min()), "max": float(col.max()), "mean": float(col.mean()), "std": float(col.std()),
            "bands": {name: int(((col >= lo) & (col < hi)).sum()) for name, (lo, hi) in zip(BAND_NAMES, BANDS)},
            "missing": int(missing.get(d, 0)),
        }
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


# -- joint datasets (one multi student for several filters) ------------------------------------------------
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


def build_joint_dataset(specs: list[FilterSpec], records: Mapping[str, Iterable[LabelRecord]], seed: int = 0,
                        near_duplicate_threshold: float = 0.85, near_duplicate_action: str = "drop",
                        min_examples: int = 10, progress: Callable[[str], None] | None = None,
                        frozen: Mapping[str, FrozenSplit | None] | None = None) -> JointDataset:
    """Validate each filter's labels (``records`` by filter ref), join them by article id, then deduplicate,
    group and split the union once (respecting every filter's frozen split)."""
    if near_duplicate_action not in {"drop", "group"}:
        raise ValueError("near_duplicate_action must be 'drop' or 'group'")
    frozen = dict(frozen or {})
    refs = [s.ref for s in specs]
    columns = [f"{s.ref}:{d}" for s in specs for d in s.dimension_names]
    offsets, start = {}, 0
    for s in specs:
        offsets[s.ref] = (start, start + len(s.dimension_names))
        start += len(s.dimension_names)
    validated: dict[str, _Validated] = {}
    for spec in specs:
        v = _validated_examples(spec, records.get(spec.ref, []))
        if len(v.examples) < min_examples:
            raise DatasetError(f"only {len(v.examples)} usable labelled articles for {spec.ref} (need at least "
                               f"{min_examples}; {v.n_input} labels read); dropped: {dict(v.dropped) or 'none'}")
        validated[spec.ref] = v
    if progress:
        progress("validated " + ", ".join(f"{r}: {validated[r].n_input} labels" for r in refs))

    # join by article id: the first filter (in request order) that labelled an article gives its text
    rows: dict[str, Example] = {}
    for ref in refs:
        lo, hi = offsets[ref]
        for e in validated[ref].examples:
            row = rows.get(e.id)
            if row is None:
                row = rows[e.id] = Example(e.id, e.title, e.text, e.url, [float("nan")] * len(columns))
            row.targets[lo:hi] = e.targets
            row.oracles = sorted(set(row.oracles) | set(e.oracles))
    examples = sorted(rows.values(), key=lambda e: e.id)

    def labelled(e: Example, ref: str) -> bool:
        lo, hi = offsets[ref]
        return not np.isnan(e.targets[lo]) if hi > lo else False

    dropped = {ref: Counter(validated[ref].dropped) for ref in refs}
    pairs = near_duplicate_pairs([e.input_text for e in examples], near_duplicate_threshold) if examples else []
    uf = _UnionFind(len(examples))
    for a, b in pairs:
        uf.union(a, b)
    frozen_test = {i for f in frozen.values() if f is not None for i in f.test_ids}
    if near_duplicate_action == "drop":
        # keep one article per group (a frozen test article when the group has one, else the first) and give
        # it the labels the others hold for filters it lacks, so that no filter loses an article needlessly
        members: dict[int, list[int]] = defaultdict(list)
        for i in range(len(examples)):
            members[uf.find(i)].append(i)
        keep = []
        for group in members.values():
            chosen = next((i for i in group if examples[i].id in frozen_test), group[0])
            rep = examples[chosen]
            for i in group:
                if i == chosen:
                    continue
                for ref in refs:
                    if not labelled(examples[i], ref):
                        continue
                    if labelled(rep, ref):
                        dropped[ref]["near_duplicate"] += 1
                    else:
                        lo, hi = offsets[ref]
                        rep.targets[lo:hi] = examples[i].targets[lo:hi]
            keep.append(chosen)
        examples = [examples[i] for i in sorted(keep)]
        uf = _UnionFind(len(examples))
    for ref in refs:
        n = sum(1 for e in examples if labelled(e, ref))
        if n < min_examples:
            raise DatasetError(f"only {n} usable labelled articles for {ref} after deduplication (need at "
                               f"least {min_examples}); dropped: {dict(dropped[ref]) or 'none'}")
    if progress:
        progress(f"joined and deduplicated: {len(examples)} articles ({len(pairs)} near-duplicate pairs)")
    first_by_url: dict[str, int] = {}
    for i, e in enumerate(examples):
        key = _url_key(e.url)
        if key:
            if key in first_by_url:
                uf.union(first_by_url[key], i)
            else:
                first_by_url[key] = i
    for i, e in enumerate(examples):
        e.group = uf.find(i)

    def assign(new: list[Example]) -> None:
        # stratify by the mean over the article's filters of each filter's overall score
        overall = np.full((len(new), len(specs)), np.nan)
        for j, spec in enumerate(specs):
            lo, hi = offsets[spec.ref]
            rows_j = [k for k, e in enumerate(new) if labelled(e, spec.ref)]
            if rows_j:
                overall[rows_j, j], _ = overall_scores(spec, np.array([new[k].targets[lo:hi] for k in rows_j]))
        _split_groups(new, np.nanmean(overall, axis=1), seed)

    union_frozen = merged_frozen(frozen.get(r) for r in refs)
    frozen_report = _assign_with_frozen(examples, union_frozen, assign) if union_frozen else None

    if union_frozen is None:
        assign(examples)
    datasets: dict[str, Dataset] = {}
    for spec in specs:
        lo, hi = offsets[spec.ref]
        own = [Example(e.id, e.title, e.text, e.url, list(e.targets[lo:hi]), list(e.oracles), e.group, e.split)
               for e in examples if labelled(e, spec.ref)]
        ds = Dataset(spec.ref, spec.dimension_names, own, {})
        ds.hash = dataset_hash(ds, seed)
        v = validated[spec.ref]
        ds.report = validation_report(spec, ds, v.n_input, dropped[spec.ref], v.missing_dims, v.noise_diffs, seed,
                                      near_duplicate_threshold, near_duplicate_action)
        datasets[spec.ref] = ds
    joint = JointDataset(refs, columns, examples, datasets, {})
    h = hashlib.sha256(json.dumps({"filters": refs, "columns": columns, "seed": seed}).encode())
    for e in examples:
        h.update(json.dumps([e.id, content_hash(e.title, e.text),
                             [None if np.isnan(t) else round(t, 4) for t in e.targets], e.split]).encode())
    joint.hash = h.hexdigest()[:16]
    joint.report = {
        "filters": refs, "columns": columns, "dataset_hash": joint.hash, "seed": seed,
        "n_examples": len(examples),
        "labelled_for": {ref: sum(1 for e in examples if labelled(e, ref)) for ref in refs},
        "labelled_for_all": sum(1 for e in examples if all(labelled(e, r) for r in refs)),
        "near_duplicates": {"threshold": near_duplicate_threshold, "action": near_duplicate_action,
                            "pairs": len(pairs)},
        "splits": {name: {"n": sum(1 for e in examples if e.split == name),
                          **{ref: sum(1 for e in examples if e.split == name and labelled(e, ref)) for ref in refs}}
                   for name in SPLITS},
        "datasets": {ref: ds.hash for ref, ds in datasets.items()},
    }
    if frozen_report is not None:
        joint.report["frozen_test"] = frozen_report
    for ref, ds in datasets.items():
        ds.report["joint"] = {"dataset_hash": joint.hash, "filters": refs}
    return joint
