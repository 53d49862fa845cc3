"""Typed results of the common calls (plain dataclasses, not protobuf messages) and their converters."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from distillery.v1 import article_pb2, common_pb2, oracle_pb2, prefilter_pb2, scoring_pb2, trainer_pb2

ArticleLike = Mapping[str, Any] | article_pb2.Article


def filter_ref(ref: str | common_pb2.FilterRef) -> common_pb2.FilterRef:
    """``"uplifting"`` or ``"uplifting/v2"`` -> FilterRef (version 0: the newest loaded)."""
    if isinstance(ref, common_pb2.FilterRef):
        return ref
    name, _, version = str(ref).partition("/")
    version = version.lstrip("v")
    if version and not version.isdigit():
        raise ValueError(f"filter reference {ref!r}: expected name or name/vN")
    return common_pb2.FilterRef(name=name, version=int(version or 0))


def ref_str(ref: common_pb2.FilterRef) -> str:
    return f"{ref.name}/v{ref.version}" if ref.version else ref.name


_ARTICLE_FIELDS = ("id", "title", "text", "url", "source", "source_type", "language", "published_at")


def article(value: ArticleLike) -> article_pb2.Article:
    """A dict (``title``, ``text``, optional ``id``, ``url``, ``source``..., ``metadata``) -> Article."""
    if isinstance(value, article_pb2.Article):
        return value
    unknown = set(value) - set(_ARTICLE_FIELDS) - {"metadata", "content"}
    if unknown:
        raise ValueError(f"unknown article field(s) {', '.join(sorted(unknown))}; known: "
                         f"{', '.join(_ARTICLE_FIELDS)}, metadata")
    kwargs = {k: str(value[k]) for k in _ARTICLE_FIELDS if value.get(k) is not None}
    if "text" not in kwargs and value.get("content") is not None:
        kwargs["text"] = str(value["content"])
    meta = value.get("metadata") or {}
    return article_pb2.Article(**kwargs, metadata={str(k): str(v) for k, v in meta.items()})


@dataclass(frozen=True)
class DimensionScore:
    name: str
    score: float  # calibrated 0-10
    lower: float
    upper: float
    raw: float
    spread: float = 0.0


@dataclass(frozen=True)
class Score:
    """One filter's score of one article."""

    article_id: str
    filter: str
    overall: float
    tier: str
    dimensions: dict[str, DimensionScore]
    uncertain: bool
    model_version: str
    stage: str
    gatekeepers_applied: list[str] = field(default_factory=list)
    latency_seconds: float = 0.0

    def __getitem__(self, dimension: str) -> float:
        return self.dimensions[dimension].score


@dataclass(frozen=True)
class ItemFailure:
    """A streamed item that failed (bad input, overload) while the stream went on."""

    article_id: str
    code: str
    message: str


def score_pb(result: scoring_pb2.ScoreResult) -> Score:
    dims = {d.name: DimensionScore(d.name, d.calibrated, d.lower, d.upper, d.raw, d.spread)
            for d in result.dimensions}
    stage = scoring_pb2.Stage.Name(result.stage).removeprefix("STAGE_").lower()
    return Score(result.article_id, ref_str(result.filter), result.overall, result.tier, dims, result.uncertain,
                 result.model_version, stage, list(result.gatekeepers_applied), result.timings.total_seconds)


def scores_pb(response: scoring_pb2.ScoreResponse) -> list[Score]:
    return [score_pb(r) for r in response.results]


@dataclass(frozen=True)
class Decision:
    """The prefilter's verdict on one article for one filter."""

    article_id: str
    filter: str
    passed: bool
    reasons: list[tuple[str, str]]  # (code, matched text)


def decision_pb(d: prefilter_pb2.Decision) -> Decision:
    return Decision(d.article_id, ref_str(d.filter), d.passed, [(r.code, r.matched) for r in d.reasons])


@dataclass(frozen=True)
class Label:
    """An oracle label: per-dimension scores with their evidence, and what it cost."""

    article_id: str
    filter: str
    scores: dict[str, float]
    evidence: dict[str, str]
    oracle_model: str
    provider: str
    prompt_hash: str
    cost_usd: float
    cached: bool


def label_pb(label: oracle_pb2.OracleLabel) -> Label:
    return Label(label.article_id, ref_str(label.filter), {d.name: d.score for d in label.dimensions},
                 {d.name: d.evidence for d in label.dimensions}, label.oracle_model, label.provider,
                 label.prompt_hash, label.usage.cost_usd, label.cached)


@dataclass(frozen=True)
class Budget:
    scope: str
    name: str
    limit_usd: float
    spent_usd: float
    remaining_usd: float


def budget_pb(b: oracle_pb2.Budget) -> Budget:
    return Budget(b.scope, b.name, b.limit_usd, b.spent_usd, b.remaining_usd)


@dataclass(frozen=True)
class Job:
    job_id: str
    filters: list[str]
    kind: str
    state: str  # PENDING, RUNNING, SUCCEEDED, FAILED, CANCELLED
    progress: float
    message: str
    model_version: str
    metrics: dict[str, float]
    error: str
    created_at: str
    updated_at: str

    @property
    def done(self) -> bool:
        return self.state in ("SUCCEEDED", "FAILED", "CANCELLED")


def _kind(value: int) -> str:
    return trainer_pb2.StudentKind.Name(value).removeprefix("STUDENT_KIND_").lower().replace("unspecified", "")


def job_pb(job: trainer_pb2.Job) -> Job:
    filters = [ref_str(f) for f in job.filters] or [ref_str(job.filter)]
    return Job(job.job_id, filters, _kind(job.student_kind), trainer_pb2.JobState.Name(job.state).removeprefix(
        "JOB_STATE_"), job.progress, job.message, job.model_version, dict(job.metrics), job.error, job.created_at,
        job.updated_at)


@dataclass(frozen=True)
class ModelVersion:
    filter: str
    version: str
    kind: str
    created_at: str
    metrics: dict[str, float]
    dataset_hash: str
    promoted: bool
    uri: str
    multi_model_id: str = ""


def model_pb(m: trainer_pb2.ModelVersion) -> ModelVersion:
    return ModelVersion(ref_str(m.filter), m.version, _kind(m.student_kind), m.created_at, dict(m.metrics),
                        m.dataset_hash, m.promoted, m.uri, m.multi_model_id)


KINDS = {"lexical": 1, "probe": 2, "finetune": 3, "multi": 4, "ensemble": 5, "stack": 6}


def student_kind(kind: str) -> int:
    if not kind:
        return 0
    if kind not in KINDS:
        raise ValueError(f"unknown student kind {kind!r}; choose one of {', '.join(KINDS)}")
    return KINDS[kind]
