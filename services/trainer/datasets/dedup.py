"""Duplicates and groups: MinHash near-duplicate pairs, one article kept per near-duplicate group, and the
groups (near duplicates and same-URL articles) that a split never divides."""

from __future__ import annotations

import re
from collections import defaultdict
from urllib.parse import urlsplit

from distillery_services.trainer.datasets.io import Example

_WORD = re.compile(r"\w+", re.UNICODE)


class UnionFind:
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


def check_action(near_duplicate_action: str) -> None:
    if near_duplicate_action not in {"drop", "group"}:
        raise ValueError("near_duplicate_action must be 'drop' or 'group'")


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


def near_duplicate_groups(examples: list[Example], threshold: float) -> tuple[UnionFind, list[tuple[int, int]]]:
    """The near-duplicate pairs of ``examples`` (by position) and the union-find that joins them."""
    pairs = near_duplicate_pairs([e.input_text for e in examples], threshold) if examples else []
    uf = UnionFind(len(examples))
    for a, b in pairs:
        uf.union(a, b)
    return uf, pairs


def representatives(examples: list[Example], uf: UnionFind, frozen_test: set[str]) -> dict[int, list[int]]:
    """Per near-duplicate group, the article kept (a frozen test article when the group has one, else the first)
    mapped to the others of its group; ordered by position."""
    members: dict[int, list[int]] = defaultdict(list)
    for i in range(len(examples)):
        members[uf.find(i)].append(i)
    kept = {}
    for group in members.values():
        chosen = next((i for i in group if examples[i].id in frozen_test), group[0])
        kept[chosen] = [i for i in group if i != chosen]
    return dict(sorted(kept.items()))


def url_key(url: str) -> str:
    if not url:
        return ""
    parts = urlsplit(url.strip().lower())
    return f"{parts.netloc.removeprefix('www.')}{parts.path.rstrip('/')}"


def assign_groups(examples: list[Example], uf: UnionFind) -> None:
    """Same-URL articles join one group (with their near duplicates in ``uf``); set each example's group."""
    first_by_url: dict[str, int] = {}
    for i, e in enumerate(examples):
        key = url_key(e.url)
        if key:
            if key in first_by_url:
                uf.union(first_by_url[key], i)
            else:
                first_by_url[key] = i
    for i, e in enumerate(examples):
        e.group = uf.find(i)
