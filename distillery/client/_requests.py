"""Request builders shared by the sync and asyncio clients (one place for argument checks)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from distillery.client import types as t
from distillery.v1 import oracle_pb2, prefilter_pb2, scoring_pb2, trainer_pb2

_REASONS = {"training": 1, "uncertain": 2, "audit": 3, "synthetic": 4}


def refs(filters: Iterable[str] | str | None):
    if filters is None:
        return []
    if isinstance(filters, str):
        filters = [filters]
    return [t.filter_ref(f) for f in filters]


def score(article, filters) -> scoring_pb2.ScoreRequest:
    return scoring_pb2.ScoreRequest(article=t.article(article), filters=refs(filters))


def score_batch(articles, filters) -> scoring_pb2.ScoreBatchRequest:
    return scoring_pb2.ScoreBatchRequest(articles=[t.article(a) for a in articles], filters=refs(filters))


def check(articles, filters) -> prefilter_pb2.CheckRequest:
    return prefilter_pb2.CheckRequest(articles=[t.article(a) for a in articles], filters=refs(filters))


def label(article, filter: str, oracle: str, job_id: str, reason: str) -> oracle_pb2.LabelRequest:
    if reason not in _REASONS:
        raise ValueError(f"unknown label reason {reason!r}; choose one of {', '.join(_REASONS)}")
    return oracle_pb2.LabelRequest(article=t.article(article), filter=t.filter_ref(filter), oracle=oracle,
                                   job_id=job_id, reason=_REASONS[reason])


def set_budget(scope: str, name: str, usd: float) -> oracle_pb2.SetBudgetRequest:
    if scope not in ("filter", "job"):
        raise ValueError(f"budget scope must be 'filter' or 'job', not {scope!r}")
    if usd < 0:
        raise ValueError("a budget cannot be negative")
    return oracle_pb2.SetBudgetRequest(scope=scope, name=name, limit_usd=float(usd))


def start_job(filters, kind: str, labels_path: str, promote: bool, seed: int,
              params: Mapping[str, str] | None) -> trainer_pb2.StartJobRequest:
    refs_ = refs(filters)
    if not refs_:
        raise ValueError("name the filter to train")
    request = trainer_pb2.StartJobRequest(student_kind=t.student_kind(kind), labels_path=labels_path,
                                          promote=promote, seed=seed,
                                          params={str(k): str(v) for k, v in (params or {}).items()})
    if len(refs_) == 1:
        request.filter.CopyFrom(refs_[0])
    else:
        request.filters.extend(refs_)
    return request


def filter_only(filter: str | None) -> dict:
    return {"filter": t.filter_ref(filter)} if filter else {}
