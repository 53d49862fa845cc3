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

from distillery import identifiers

NAME_PATTERN = r"^[a-z][a-z0-9_]*$"
_NAME_RE = re.compile(NAME_PATTERN)
# The bands of the 0-10 scale with their upper edges, declared once: a score falls in the first band whose edge
# it does not exceed (as Prometheus ``le`` buckets, which are inclusive). Drift shares (distillery.drift), the
# inference score histogram buckets, dataset stratification and report bands derive from it; a test checks the
# recording rules' ``le`` selectors against it (tests/deploy/test_band_edges.py).
SCORE_BANDS: tuple[tuple[str, float], ...] = (("0-2", 2.0), ("3-4", 4.0), ("5-6", 6.0), ("7-8", 8.0), ("9-10", 10.0))
SCALE_BANDS = tuple(name for name, _ in SCORE_BANDS)
BAND_EDGES = tuple(edge for _, edge in SCORE_BANDS[:-1])  # the inner edges: 2, 4, 6, 8


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

    name: str = Field(description="Identifier: lower-case letters, digits and underscores (never hyphens).")
    weight: float = Field(gt=0, le=1, description="Share of the overall score; all weights sum to 1.")
    description: str = Field(min_length=1, description="One-line definition shown to the oracle.")
    scale: dict[str, str] = Field(description="What each band 0-2/3-4/5-6/7-8/9-10 means.")
    critical_rules: list[str] = Field(default_factory=list, description='"Score 0-2 if ..." rules.')
    evidence_focus: str = Field(default="", description="What in the article counts as evidence (shown to the oracle).")

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

    name: str = Field(description="Identifier (underscores only); reported when the cap lowers a score.")
    dimension: str = Field(description="The dimension it watches; must be one of `dimensions`.")
    threshold: float = Field(ge=0, le=10, description="The cap applies when the dimension is below this.")
    max_overall: float = Field(ge=0, le=10, description="The overall score is capped at this value.")
    reason: str = Field(default="", description="Why the cap exists (documentation).")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_name(v, "gatekeeper name")


class ContentCap(_Strict):
    """A content type whose overall score the oracle caps (e.g. corporate finance <= 2), with exceptions."""

    name: str = Field(description="Identifier (underscores only).")
    max_score: float = Field(ge=0, le=10, description="No dimension may exceed this when the cap applies.")
    triggers: list[str] = Field(
        default_factory=list, min_length=1, description="What makes an article this content type (for the oracle)."
    )
    exceptions: list[str] = Field(default_factory=list, description="Named cases the cap does not apply to.")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_name(v, "content cap name")


class Tier(_Strict):
    """A named band of the overall score: the highest tier whose ``min_overall`` is reached wins."""

    name: str = Field(description="Identifier (underscores only).")
    min_overall: float = Field(ge=0, le=10, description="Lowest overall score in this tier; one tier must have 0.")
    description: str = Field(default="", description="What the tier means to a reader.")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_name(v, "tier name")


class ExclusionCategory(_Strict):
    """Block an article when these keywords/patterns match, unless an exception or enough positives match."""

    name: str = Field(description="Identifier (underscores only); the block reason is `excluded:<name>`.")
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

    enabled: bool = Field(default=True, description="false: every article passes this filter's prefilter.")
    min_length: int = Field(default=300, ge=0, description="Minimum characters of text.")
    max_length: int = Field(default=1_000_000, gt=0, description="Maximum characters of text.")
    scan_chars: int = Field(default=2000, gt=0, description="Scan title + the first N characters of text.")
    languages: list[str] = Field(default_factory=list, description="Allowed ISO 639-1 codes; empty: any.")
    blocked_domains: list[str] = Field(
        default_factory=list, description="Block these hosts and their subdomains (`host` or `host/path`)."
    )
    allowed_domains: list[str] = Field(default_factory=list, description="Always pass (checked first).")
    blocked_source_types: list[str] = Field(
        default_factory=list, description="Block these source types (e.g. code_repo, firehose_aggregator)."
    )
    exclusions: list[ExclusionCategory] = Field(
        default_factory=list, description="Exclusion categories, each with its own exceptions and thresholds."
    )
    positive_patterns: list[str] = Field(
        default_factory=list, description="Keywords/regexes that count towards rescue thresholds."
    )
    rescue_threshold: int = Field(
        default=0, ge=0, description="Rescue any excluded article with at least this many positive matches."
    )
    require_any: list[str] = Field(
        default_factory=list, description="If set, block unless one of these keywords appears (topic gate)."
    )
    topic_threshold: int = Field(
        default=0, ge=0,
        description="Also pass the topic gate with at least this many positive matches (0: keywords only).",
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

    head_tokens: int = Field(default=256, ge=0, description="Tokens kept from the beginning.")
    tail_tokens: int = Field(default=256, ge=0, description="Tokens kept from the end.")
    separator: str = Field(default=" [...] ", description="Text placed between head and tail.")

    @property
    def max_tokens(self) -> int:
        return self.head_tokens + self.tail_tokens


class OracleSettings(_Strict):
    """Which oracle labels this filter by default, and how."""

    default: str = Field(default="synthetic", description="Oracle name from the gateway config.")

    @field_validator("default")
    @classmethod
    def _oracle_name(cls, v: str) -> str:
        return identifiers.oracle_name(v, "oracle.default")
    temperature: float = Field(default=0.0, ge=0, le=2, description="Sampling temperature (0: most repeatable).")
    max_output_tokens: int = Field(default=1024, gt=0, description="Cap on the oracle's answer length.")
    max_article_chars: int = Field(default=8000, gt=0, description="Head+tail cut of the article in the prompt.")


class StudentSettings(_Strict):
    """Default student for this filter and its serving thresholds."""

    kind: Literal["lexical", "probe", "finetune", "multi", "ensemble", "stack"] = Field(
        default="probe", description="Default student kind trained for this filter."
    )
    encoder: str = Field(default="all-MiniLM-L6-v2", description="Encoder for probe students.")
    base_model: str = Field(default="Qwen/Qwen2.5-0.5B", description="Backbone for finetune students.")
    truncation: Truncation = Field(default_factory=Truncation, description="Head + tail cut of long texts.")
    uncertain_share: float | None = Field(
        default=0.1, ge=0, le=1,
        description="Flag this share of articles uncertain: those with the highest expected error (the error model "
        "fitted at training time on held-out predictions; its held-out distribution sets the threshold). "
        "None: use uncertain_max_error, or else the interval-width and member-spread rules.",
    )
    uncertain_max_error: float | None = Field(
        default=None, gt=0, le=10,
        description="Flag a prediction uncertain when its expected mean absolute error (0-10 scale) exceeds this; "
        "overrides uncertain_share. None: flag by share.",
    )
    uncertain_interval_width: float = Field(
        default=4.0, gt=0, description="Models without an error model (trained before it existed), or with "
        "uncertain_share and uncertain_max_error both None: flag a prediction uncertain when an interval is "
        "wider than this."
    )
    uncertain_member_spread: float | None = Field(
        default=None, gt=0, le=10,
        description="Students with members (ensemble, stack), with the interval-width rule: flag a prediction uncertain when "
        "the members' standard deviation of any dimension's raw score (0-10 scale) exceeds this. None: members' "
        "disagreement is not used (the error model uses it either way).",
    )
    transfer_from: list[str] = Field(
        default_factory=list,
        description="Related filters (names) whose promoted students warm-start this filter's student: their "
        "predictions are a prior the new student learns the residual of, or features (`transfer_mode`). "
        "For a new filter with a few hundred labels; `distillery train --transfer-from` overrides it.",
    )
    transfer_mode: Literal["prior", "features"] = Field(
        default="features", description="How the transfer_from students are used (docs/students.md#transfer)."
    )
    cascade_threshold: float | None = Field(
        default=None, ge=0, le=10, description="Run the expensive stage only when the cheap overall >= this."
    )
    target_mae: float = Field(default=1.0, gt=0, description="Alert when live student-vs-oracle MAE exceeds it.")


class FilterSpec(_Strict):
    """A whole filter package: spec plus (after loading) its oracle prompt template."""

    name: str = Field(description="Filter name; must equal the package's folder name (underscores only).")
    version: int = Field(ge=1, description="Integer version; must equal the package's v<N> folder.")
    description: str = Field(min_length=1, description="One or two sentences: what the filter looks for.")
    role: str = Field(default="", description="The oracle's role line (e.g. 'You are an impact analyst').")
    scope: str = Field(default="", description="What is in scope; out-of-scope articles score 0-2 everywhere.")
    dimensions: list[Dimension] = Field(min_length=1, description="The scored dimensions; weights sum to 1.")
    gatekeepers: list[Gatekeeper] = Field(default_factory=list, description="Caps on the overall score.")
    content_caps: list[ContentCap] = Field(
        default_factory=list, description="Content-type caps the oracle applies (rendered into the prompt)."
    )
    tiers: list[Tier] = Field(min_length=1, description="Named bands of the overall score (presentation only).")
    prefilter: PrefilterRules = Field(default_factory=PrefilterRules, description="Cheap rules run before any model.")
    oracle: OracleSettings = Field(default_factory=OracleSettings, description="How the oracle labels this filter.")
    student: StudentSettings = Field(default_factory=StudentSettings, description="Student defaults and serving.")
    # Filled by the loader from prompt.md, never written in filter.yaml.
    prompt_template: str = Field(default="", exclude=True)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return identifiers.filter_name(check_name(v, "filter name"), "name")

    @model_validator(mode="after")
    def _consistent(self) -> FilterSpec:
        # Cross-field checks. Each problem starts with the field path it is about, one problem per line, so
        # the loader can report them all at once ("gatekeepers[0] (x).dimension: ...").
        problems: list[str] = []
        names = [d.name for d in self.dimensions]
        for i, name in enumerate(names):
            if name in names[:i]:
                problems.append(f"dimensions[{i}] ({name}).name: duplicate dimension {name!r}")
        total = sum(d.weight for d in self.dimensions)
        if not math.isclose(total, 1.0, abs_tol=1e-6):
            listing = ", ".join(f"{d.name}={d.weight:g}" for d in self.dimensions)
            problems.append(f"dimensions.weight: dimension weights must sum to 1.0, they sum to {total:.4f} ({listing})")
        for kind, items in (("gatekeepers", self.gatekeepers), ("content_caps", self.content_caps),
                            ("tiers", self.tiers)):
            seen: list[str] = []
            for i, item in enumerate(items):
                if item.name in seen:
                    problems.append(f"{kind}[{i}] ({item.name}).name: duplicate name {item.name!r}")
                seen.append(item.name)
        for i, g in enumerate(self.gatekeepers):
            if g.dimension not in names:
                problems.append(
                    f"gatekeepers[{i}] ({g.name}).dimension: refers to unknown dimension {g.dimension!r}; "
                    f"known: {', '.join(names)}"
                )
        thresholds: list[float] = []
        for i, t in enumerate(self.tiers):
            if t.min_overall in thresholds:
                problems.append(f"tiers[{i}] ({t.name}).min_overall: {t.min_overall:g} is used by another tier")
            thresholds.append(t.min_overall)
        if self.tiers and min(t.min_overall for t in self.tiers) != 0:
            problems.append("tiers: the lowest tier must have min_overall: 0 so that every score has a tier")
        if problems:
            raise ValueError("\n".join(problems))
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
