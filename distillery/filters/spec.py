"""The typed schema of a filter package (``filters/<name>/v<N>/filter.yaml``).

A filter spec is the only place where a filter's dimensions, weights, gatekeepers, tiers, prefilter
rules and oracle/student settings live. The oracle prompt's dimension section and JSON schema, the
students' heads and the post-processing are all derived from it (the first version duplicated these
constants in Python and they drifted).
"""

from __future__ import annotations

import math
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

NAME_PATTERN = r"^[a-z][a-z0-9_]*$"
_NAME_RE = re.compile(NAME_PATTERN)
SCALE_BANDS = ("0-2", "3-4", "5-6", "7-8", "9-10")


def check_name(value: str, what: str) -> str:
    if not _NAME_RE.match(value):
        hint = " (use underscores, not hyphens)" if "-" in value else ""
        raise ValueError(
            f"{what} {value!r} must be lower-case letters, digits and underscores, starting with a letter{hint}"
        )
    return value


class _Strict(BaseModel):
    # Unknown keys are errors: a typo in a spec must not be silently ignored.
    model_config = ConfigDict(extra="forbid", frozen=True)


class Dimension(_Strict):
    """One 0-10 dimension the oracle scores and the students predict."""

    name: str
    weight: float = Field(gt=0, le=1, description="Share of the overall score; all weights sum to 1.")
    description: str = Field(min_length=1, description="One-line definition shown to the oracle.")
    scale: dict[str, str] = Field(description="What each band 0-2/3-4/5-6/7-8/9-10 means.")
    critical_rules: list[str] = Field(default_factory=list, description='"Score 0-2 if ..." rules.')
    evidence_focus: str = ""

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_name(v, "dimension name")

    @field_validator("scale")
    @classmethod
    def _scale(cls, v: dict[str, str]) -> dict[str, str]:
        missing = [b for b in SCALE_BANDS if b not in v]
        extra = [b for b in v if b not in SCALE_BANDS]
        if missing or extra:
            raise ValueError(
                f"scale must have exactly the bands {', '.join(SCALE_BANDS)}"
                + (f"; missing {missing}" if missing else "")
                + (f"; unknown {extra}" if extra else "")
            )
        return v


class Gatekeeper(_Strict):
    """If ``dimension`` is below ``threshold``, the overall score is capped at ``max_overall``."""

    name: str
    dimension: str
    threshold: float = Field(ge=0, le=10)
    max_overall: float = Field(ge=0, le=10)
    reason: str = ""

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_name(v, "gatekeeper name")


class ContentCap(_Strict):
    """A content type whose overall score the oracle caps (e.g. corporate finance <= 2), with exceptions."""

    name: str
    max_score: float = Field(ge=0, le=10)
    triggers: list[str] = Field(default_factory=list, min_length=1)
    exceptions: list[str] = Field(default_factory=list)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_name(v, "content cap name")


class Tier(_Strict):
    """A named band of the overall score: the highest tier whose ``min_overall`` is reached wins."""

    name: str
    min_overall: float = Field(ge=0, le=10)
    description: str = ""

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_name(v, "tier name")


class ExclusionCategory(_Strict):
    """Block an article when these keywords/patterns match, unless an exception or enough positives match."""

    name: str
    keywords: list[str] = Field(default_factory=list, description="Whole-word, case-insensitive keywords.")
    patterns: list[str] = Field(default_factory=list, description="Regular expressions (Python syntax).")
    case_sensitive_patterns: list[str] = Field(
        default_factory=list, description="Regexes matched on the original case (e.g. r'\\bRIP\\b')."
    )
    exceptions: list[str] = Field(default_factory=list, description="Keywords that cancel this category.")
    positive_threshold: int = Field(
        default=0, ge=0, description="Cancel when at least this many positive patterns match (0: off)."
    )
    title_only: bool = Field(default=False, description="Match the title only.")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_name(v, "exclusion category name")

    @model_validator(mode="after")
    def _has_rules(self) -> ExclusionCategory:
        if not (self.keywords or self.patterns or self.case_sensitive_patterns):
            raise ValueError(f"exclusion category {self.name!r} needs keywords or patterns")
        return self

    @field_validator("patterns", "case_sensitive_patterns")
    @classmethod
    def _regexes(cls, v: list[str]) -> list[str]:
        for pattern in v:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from None
        return v


class PrefilterRules(_Strict):
    """Cheap declarative rules evaluated before any model or oracle call."""

    enabled: bool = True
    min_length: int = Field(default=300, ge=0, description="Minimum characters of text.")
    max_length: int = Field(default=1_000_000, gt=0, description="Maximum characters of text.")
    scan_chars: int = Field(default=2000, gt=0, description="Scan title + the first N characters of text.")
    languages: list[str] = Field(default_factory=list, description="Allowed ISO 639-1 codes; empty: any.")
    blocked_domains: list[str] = Field(default_factory=list)
    allowed_domains: list[str] = Field(default_factory=list, description="Always pass (checked first).")
    blocked_source_types: list[str] = Field(default_factory=list)
    exclusions: list[ExclusionCategory] = Field(default_factory=list)
    positive_patterns: list[str] = Field(
        default_factory=list, description="Keywords/regexes that count towards rescue thresholds."
    )
    rescue_threshold: int = Field(
        default=0, ge=0, description="Rescue any excluded article with at least this many positive matches."
    )
    require_any: list[str] = Field(
        default_factory=list, description="If set, block unless one of these keywords appears (topic gate)."
    )

    @field_validator("positive_patterns")
    @classmethod
    def _regexes(cls, v: list[str]) -> list[str]:
        for pattern in v:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from None
        return v

    @model_validator(mode="after")
    def _lengths(self) -> PrefilterRules:
        if self.max_length <= self.min_length:
            raise ValueError(f"max_length ({self.max_length}) must be greater than min_length ({self.min_length})")
        names = [c.name for c in self.exclusions]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate exclusion categories: {dupes}")
        return self


class Truncation(_Strict):
    """Head + tail truncation: long texts keep their beginning and end (conclusions live there)."""

    head_tokens: int = Field(default=256, ge=0)
    tail_tokens: int = Field(default=256, ge=0)
    separator: str = " [...] "

    @property
    def max_tokens(self) -> int:
        return self.head_tokens + self.tail_tokens


class OracleSettings(_Strict):
    """Which oracle labels this filter by default, and how."""

    default: str = Field(default="synthetic", description="Oracle name from the gateway config.")
    temperature: float = Field(default=0.0, ge=0, le=2)
    max_output_tokens: int = Field(default=1024, gt=0)
    max_article_chars: int = Field(default=8000, gt=0, description="Head+tail cut of the article in the prompt.")


class StudentSettings(_Strict):
    """Default student for this filter and its serving thresholds."""

    kind: Literal["lexical", "probe", "finetune", "multi", "ensemble"] = "probe"
    encoder: str = Field(default="all-MiniLM-L6-v2", description="Encoder for probe students.")
    base_model: str = Field(default="Qwen/Qwen2.5-0.5B", description="Backbone for finetune students.")
    truncation: Truncation = Field(default_factory=Truncation)
    uncertain_interval_width: float = Field(
        default=4.0, gt=0, description="Flag a prediction uncertain when an interval is wider than this."
    )
    cascade_threshold: float | None = Field(
        default=None, ge=0, le=10, description="Run the expensive stage only when the cheap overall >= this."
    )
    target_mae: float = Field(default=1.0, gt=0, description="Alert when live student-vs-oracle MAE exceeds it.")


class FilterSpec(_Strict):
    """A whole filter package: spec plus (after loading) its oracle prompt template."""

    name: str
    version: int = Field(ge=1)
    description: str = Field(min_length=1)
    role: str = Field(default="", description="The oracle's role line (e.g. 'You are an impact analyst').")
    scope: str = Field(default="", description="What is in scope; out-of-scope articles score 0-2 everywhere.")
    dimensions: list[Dimension] = Field(min_length=1)
    gatekeepers: list[Gatekeeper] = Field(default_factory=list)
    content_caps: list[ContentCap] = Field(default_factory=list)
    tiers: list[Tier] = Field(min_length=1)
    prefilter: PrefilterRules = Field(default_factory=PrefilterRules)
    oracle: OracleSettings = Field(default_factory=OracleSettings)
    student: StudentSettings = Field(default_factory=StudentSettings)
    # Filled by the loader from prompt.md, never written in filter.yaml.
    prompt_template: str = Field(default="", exclude=True)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_name(v, "filter name")

    @model_validator(mode="after")
    def _consistent(self) -> FilterSpec:
        names = [d.name for d in self.dimensions]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate dimensions: {dupes}")
        total = sum(d.weight for d in self.dimensions)
        if not math.isclose(total, 1.0, abs_tol=1e-6):
            listing = ", ".join(f"{d.name}={d.weight:g}" for d in self.dimensions)
            raise ValueError(f"dimension weights must sum to 1.0, they sum to {total:.4f} ({listing})")
        for g in self.gatekeepers:
            if g.dimension not in names:
                raise ValueError(
                    f"gatekeeper {g.name!r} refers to unknown dimension {g.dimension!r}; known: {', '.join(names)}"
                )
        tier_names = [t.name for t in self.tiers]
        if len(set(tier_names)) != len(tier_names):
            raise ValueError(f"duplicate tier names: {tier_names}")
        if min(t.min_overall for t in self.tiers) != 0:
            raise ValueError("the lowest tier must have min_overall: 0 so that every score has a tier")
        return self

    # -- derived views -------------------------------------------------------------------------------
    @property
    def ref(self) -> str:
        """``name/vN``, the form used in CLIs and logs."""
        return f"{self.name}/v{self.version}"

    @property
    def dimension_names(self) -> list[str]:
        return [d.name for d in self.dimensions]

    @property
    def weights(self) -> list[float]:
        return [d.weight for d in self.dimensions]

    @property
    def tiers_descending(self) -> list[Tier]:
        return sorted(self.tiers, key=lambda t: t.min_overall, reverse=True)
