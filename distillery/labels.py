"""Oracle labels as plain Python: what the oracle gateway's engine makes, the label store keeps and the trainer
reads.

The shapes follow the ``distillery.v1`` messages of the same names (field for field), so the edges translate
them one to one (:mod:`distillery.messages`) and code that reads a label reads either the same way.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from distillery.articles import Article


class LabelReason(enum.IntEnum):
    """Why a label was asked for (the values of ``distillery.v1.LabelReason``). Audit labels measure a student
    and must never train one."""

    UNSPECIFIED = 0
    TRAINING = 1
    UNCERTAIN = 2
    AUDIT = 3
    SYNTHETIC = 4

    @property
    def wire_name(self) -> str:
        """The enum's name in the contract (``LABEL_REASON_AUDIT``), as the label store records it."""
        return f"LABEL_REASON_{self.name}"

    @classmethod
    def of(cls, value: int) -> LabelReason:
        """The reason for a number from the wire; an unknown one (a newer contract) is UNSPECIFIED."""
        try:
            return cls(int(value))
        except ValueError:
            return cls.UNSPECIFIED

    @classmethod
    def from_wire_name(cls, name: str) -> LabelReason:
        return next((r for r in cls if r.wire_name == name), cls.UNSPECIFIED)


@dataclass(frozen=True)
class FilterRef:
    """A filter and its version; version 0 means "the newest loaded"."""

    name: str = ""
    version: int = 0


@dataclass
class Usage:
    """Tokens and the cost of the calls that made a label (zero for an answer from the store or the cache)."""

    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0


@dataclass(frozen=True)
class DimensionLabel:
    name: str
    score: float
    evidence: str = ""


@dataclass
class OracleLabel:
    """The oracle's scores of one article for one filter version and prompt."""

    article_id: str = ""
    filter: FilterRef = field(default_factory=FilterRef)
    prompt_hash: str = ""
    oracle_model: str = ""
    provider: str = ""
    dimensions: list[DimensionLabel] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    cached: bool = False
    temperature: float = 0.0
    latency_seconds: float = 0.0
    created_at: str = ""
    reason: LabelReason = LabelReason.UNSPECIFIED


@dataclass
class LabelRequest:
    """One article to label with one filter, optionally by a named oracle and within a job's budget."""

    article: Article = field(default_factory=Article)
    filter: FilterRef = field(default_factory=FilterRef)
    reason: LabelReason = LabelReason.UNSPECIFIED
    oracle: str = ""
    job_id: str = ""
