"""Multi-oracle consensus (median per dimension) and agreement reports.

For the articles of a filter labelled by two or more oracle models, the report gives, per pair of
oracles and per oracle against the consensus: the number of shared articles, MAE per dimension and
averaged, Pearson correlation per dimension and averaged (dimensions with no variance are left out of
the average), and the mean shift (b - a).
"""

from __future__ import annotations

import itertools
import statistics
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from distillery.labels import DimensionLabel, FilterRef, OracleLabel
from distillery.store import LabelStore
from distillery.store.labels import utc_now

CONSENSUS_MODEL = "consensus-median"


@dataclass
class PairStats:
    a: str
    b: str
    n: int
    mae_per_dim: dict[str, float]
    pearson_per_dim: dict[str, float | None]
    mae_mean: float
    pearson_mean: float | None
    mean_shift_b_minus_a: float
    pearson_of_dimension_means: float | None = None

    def as_dict(self) -> dict:
        return self.__dict__.copy()


@dataclass
class AgreementReport:
    filter_ref: str
    models: list[str]
    articles_with_two_or_more: int
    pairs: list[PairStats] = field(default_factory=list)
    vs_consensus: list[PairStats] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"filter": self.filter_ref, "models": self.models,
                "articles_with_two_or_more": self.articles_with_two_or_more,
                "pairs": [p.as_dict() for p in self.pairs], "vs_consensus": [p.as_dict() for p in self.vs_consensus]}

    def markdown(self) -> str:
        lines = [(f"### {self.filter_ref}: {len(self.models)} oracles, {self.articles_with_two_or_more} articles "
                  "labelled by 2+"), "",
                 "| a | b | n | MAE (mean of dims) | Pearson (mean of dims) | Pearson of dim means | shift b-a |",
                 "|---|---|---|---|---|---|---|"]
        for p in self.pairs + self.vs_consensus:
            pearson = "n/a" if p.pearson_mean is None else f"{p.pearson_mean:.3f}"
            r_means = "n/a" if p.pearson_of_dimension_means is None else f"{p.pearson_of_dimension_means:.3f}"
            lines.append(f"| {p.a} | {p.b} | {p.n} | {p.mae_mean:.3f} | {pearson} | {r_means} | "
                         f"{p.mean_shift_b_minus_a:+.3f} |")
        return "\n".join(lines)


def _pearson(x: np.ndarray, y: np.ndarray) -> float | None:
    if len(x) < 3 or x.std() == 0 or y.std() == 0:
        return None
    return float(np.corrcoef(x, y)[0, 1])


def compare(a: str, b: str, rows_a: dict[str, dict[str, float]], rows_b: dict[str, dict[str, float]],
            dims: list[str]) -> PairStats | None:
    shared = sorted(set(rows_a) & set(rows_b))
    if not shared:
        return None
    mae, pearson, shifts = {}, {}, []
    for dim in dims:
        pairs = [(rows_a[i][dim], rows_b[i][dim]) for i in shared if dim in rows_a[i] and dim in rows_b[i]]
        if not pairs:
            continue
        x, y = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
        mae[dim] = round(float(np.abs(x - y).mean()), 4)
        r = _pearson(x, y)
        pearson[dim] = None if r is None else round(r, 4)
        shifts.append(float((y - x).mean()))
    valid = [v for v in pearson.values() if v is not None]
    # Pearson between the articles' unweighted means over dimensions (the first version's summary figure).
    means_a = np.array([statistics.fmean(rows_a[i][d] for d in dims if d in rows_a[i]) for i in shared])
    means_b = np.array([statistics.fmean(rows_b[i][d] for d in dims if d in rows_b[i]) for i in shared])
    r_means = _pearson(means_a, means_b)
    return PairStats(a, b, len(shared), mae, pearson, round(statistics.fmean(mae.values()), 4),
                     round(statistics.fmean(valid), 4) if valid else None, round(statistics.fmean(shifts), 4),
                     None if r_means is None else round(r_means, 4))


def agreement(store: LabelStore, filter_name: str, filter_version: int | None = None,
              models: list[str] | None = None, write_consensus: bool = False) -> AgreementReport:
    """Compare every oracle model that labelled this filter; optionally store the consensus labels."""
    by_model: dict[str, dict[str, dict[str, float]]] = defaultdict(dict)
    articles: dict[str, object] = {}
    for item in store.iter_labelled(filter_name, filter_version):
        if item.oracle_model == CONSENSUS_MODEL or (models and item.oracle_model not in models):
            continue
        by_model[item.oracle_model][item.id] = item.scores
        articles[item.id] = item
    names = sorted(by_model)
    dims = sorted({d for rows in by_model.values() for s in rows.values() for d in s})
    counts: dict[str, int] = defaultdict(int)
    for rows in by_model.values():
        for article_id in rows:
            counts[article_id] += 1
    multi = [i for i, c in counts.items() if c >= 2]
    consensus = {}
    for article_id in multi:
        consensus[article_id] = {
            dim: float(statistics.median([by_model[m][article_id][dim] for m in names
                                          if article_id in by_model[m] and dim in by_model[m][article_id]]))
            for dim in dims
        }
    ref = filter_name + (f"/v{filter_version}" if filter_version else "")
    report = AgreementReport(ref, names, len(multi))
    for a, b in itertools.combinations(names, 2):
        stats = compare(a, b, by_model[a], by_model[b], dims)
        if stats:
            report.pairs.append(stats)
    for m in names:
        stats = compare(m, CONSENSUS_MODEL, by_model[m], consensus, dims)
        if stats:
            report.vs_consensus.append(stats)
    if write_consensus:
        for article_id, scores in consensus.items():
            item = articles[article_id]
            label = OracleLabel(
                article_id=article_id, filter=FilterRef(name=item.filter_name, version=item.filter_version),
                prompt_hash=item.prompt_hash, oracle_model=CONSENSUS_MODEL, provider="consensus",
                dimensions=[DimensionLabel(name=d, score=s, evidence="median of " + ", ".join(names))
                            for d, s in scores.items()], created_at=utc_now())
            store.put(item.to_article(), label, oracle="consensus")
    return report
