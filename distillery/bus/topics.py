"""Topic names and their contracts (ARCHITECTURE.md section 4); the one place stages get them from."""

from __future__ import annotations

ARTICLES_RAW = "articles.raw"  # key: article id; value: Article
ARTICLES_CANDIDATES = "articles.candidates"  # key: article id; value: CandidateArticle (+ passed filters header)
ARTICLES_REJECTED = "articles.rejected"  # key: article id; value: Decision (one per blocked filter)
ORACLE_REQUESTS = "oracle.requests"  # key: article id + filter; value: LabelRequest
ORACLE_LABELS = "oracle.labels"  # key: article id + filter + prompt hash; value: OracleLabel
ARTICLES_SCORED = "articles.scored"  # key: article id; value: ScoredArticle
MODELS_EVENTS = "models.events"  # key: filter; value: ModelPromoted

TOPICS = (
    ARTICLES_RAW,
    ARTICLES_CANDIDATES,
    ARTICLES_REJECTED,
    ORACLE_REQUESTS,
    ORACLE_LABELS,
    ARTICLES_SCORED,
    MODELS_EVENTS,
)
DLQ_SUFFIX = ".dlq"


def dlq(topic: str) -> str:
    """The dead-letter topic of ``topic``: undecodable or unprocessable messages go there, never lost."""
    return topic + DLQ_SUFFIX


def with_prefix(topic: str, prefix: str = "") -> str:
    """Topic name under an optional namespace (tests and shared brokers use a prefix such as ``t123.``)."""
    return f"{prefix}{topic}" if prefix else topic
