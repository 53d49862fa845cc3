"""Write a new, valid filter package (``<root>/<name>/v1/``) for an author to fill in.

The scaffold is generated from the schema's own rules (equal weights that sum to 1, the five scale bands, a
lowest tier at 0, every placeholder the loader requires), then loaded back with :func:`load_filter`, so a
fresh package always validates. Authors then replace the placeholder texts.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import yaml

from distillery.filters.loader import PROMPT_FILE, SPEC_FILE, FilterSpecError, load_filter
from distillery.filters.spec import FilterSpec, check_name

MAX_DIMENSIONS = 16
_BAND_TEXT = {
    "0-2": "Absent: nothing in the article supports this dimension.",
    "3-4": "Weak: a small, local or unverified contribution.",
    "5-6": "Moderate: a clear contribution for a defined group, with some evidence.",
    "7-8": "Strong: a substantial, documented contribution at scale.",
    "9-10": "Exceptional: a transformative, well-documented contribution.",
}


def dimension_names(dimensions: int | str | list[str]) -> list[str]:
    """``5`` -> dimension_1..dimension_5; ``"impact,evidence"`` or a list -> those names (validated)."""
    if isinstance(dimensions, str):
        text = dimensions.strip()
        if text.isdigit():
            dimensions = int(text)
        else:
            dimensions = [part.strip() for part in text.split(",") if part.strip()]
    if isinstance(dimensions, int):
        if not 1 <= dimensions <= MAX_DIMENSIONS:
            raise ValueError(f"--dimensions must be between 1 and {MAX_DIMENSIONS}, got {dimensions}")
        return [f"dimension_{i}" for i in range(1, dimensions + 1)]
    names = [check_name(name, "dimension name") for name in dimensions]
    if not names or len(names) > MAX_DIMENSIONS:
        raise ValueError(f"give between 1 and {MAX_DIMENSIONS} dimension names, got {len(names)}")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"duplicate dimension names: {', '.join(dupes)}")
    return names


def equal_weights(n: int) -> list[float]:
    """``n`` weights with six decimals that sum to exactly 1 (the last one takes the rounding)."""
    share = round(1.0 / n, 6)
    weights = [share] * (n - 1)
    weights.append(round(1.0 - sum(weights), 6))
    return weights


def _gatekeeper(dim: str) -> dict:
    return {
        "name": f"{dim}_gatekeeper",
        "dimension": dim,
        "threshold": 3.0,
        "max_overall": 3.0,
        "reason": "Without evidence on this dimension the overall score stays low.",
    }


_CONTENT_CAP = {
    "name": "pure_speculation",
    "max_score": 3.0,
    "triggers": ["outcomes only promised or predicted, nothing achieved yet"],
    "exceptions": ["peer-reviewed results"],
}
_PREFILTER = {
    "enabled": True,
    "min_length": 300,
    "blocked_source_types": ["code_repo", "developer_aggregator", "firehose_aggregator"],
    "exclusions": [
        {
            "name": "product_deals",
            "keywords": ["black friday", "cyber monday", "discount code", "promo code"],
            "patterns": [r"\b\d{1,3}% off\b"],
        }
    ],
}


def _dump(doc: dict) -> str:
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=110)


def _commented(doc: dict, why: str) -> str:
    """``doc`` as a commented-out YAML example, introduced by ``why``."""
    body = "".join(f"# {line}\n" if line else "#\n" for line in _dump(doc).splitlines())
    return f"# {why}\n{body}"


def _spec_text(name: str, dims: list[str], gatekeepers: list[str] = (), content_cap: bool = False,
               prefilter: bool = False) -> str:
    doc = {
        "name": name,
        "version": 1,
        "description": f"What the {name} filter looks for (one sentence; replace me).",
        "role": f"You are an analyst who rates news articles for the {name} filter.",
        "scope": "What is in scope, and what is out of scope (out-of-scope articles score 0-2 everywhere).",
        "dimensions": [
            {
                "name": dim,
                "weight": weight,
                "description": f"What {dim} measures (replace me).",
                "critical_rules": [f"The article gives no evidence about {dim}."],
                "evidence_focus": "Which facts in the article count as evidence.",
                "scale": dict(_BAND_TEXT),
            }
            for dim, weight in zip(dims, equal_weights(len(dims)), strict=True)
        ],
        "tiers": [
            {"name": "high", "min_overall": 7.0, "description": "Worth featuring."},
            {"name": "medium", "min_overall": 4.0, "description": "Relevant but limited."},
            {"name": "low", "min_overall": 0.0, "description": "Not relevant or out of scope."},
        ],
        "oracle": FilterSpec.model_fields["oracle"].default_factory().model_dump(),
        "student": FilterSpec.model_fields["student"].default_factory().model_dump(),
    }
    header = (
        f"# {name} v1 - scaffolded by `distillery new-filter`. Replace every description, then run\n"
        f"# `distillery validate {name}/v1`. This file is the only place for the filter's constants:\n"
        "# the oracle prompt, the students' heads and the post-processing are all derived from it.\n"
    )
    parts = [header, _dump(doc)]
    if gatekeepers:
        parts.append(_dump({"gatekeepers": [_gatekeeper(d) for d in gatekeepers]}))
    else:
        parts.append(_commented({"gatekeepers": [_gatekeeper(dims[-1])]},
                                "Gatekeepers (none yet; `new-filter --gatekeeper DIM` adds one): a low score on "
                                "the dimension caps the overall score."))
    if content_cap:
        parts.append(_dump({"content_caps": [_CONTENT_CAP]}))
    else:
        parts.append(_commented({"content_caps": [_CONTENT_CAP]},
                                "Content caps (none yet; `--content-cap` adds this example): no dimension may "
                                "exceed max_score for such articles."))
    if prefilter:
        parts.append(_dump({"prefilter": _PREFILTER}))
    else:
        parts.append(_dump({"prefilter": {"enabled": False}}))
        parts.append(_commented({"prefilter": _PREFILTER},
                                "Prefilter rules (off: every article goes to the oracle; `--prefilter` adds "
                                "these examples): cheap rules that drop articles before any model call."))
    return "\n".join(parts)


def _prompt_text(name: str) -> str:
    return f"""# {name} analysis

You are an analyst who rates news articles for the **{name}** filter. Describe here what the filter
looks for and why. ORACLE OUTPUT: dimension scores only, never an overall score or a tier.

## Step 1 - Scope check

Ask yourself whether the article is in scope (list the questions here). If NO, the article is **out of
scope: score ALL dimensions 0-2** and stop.

## Anti-hallucination rule

Every `evidence` field must be an **exact quote** copied from the article, or the literal text
"No evidence in article". A dimension without evidence in the article scores 0-2.

## Step 2 - Score each dimension independently

{{{{dimensions}}}}

## Contrastive examples

Add one-line example articles here, showing how the dimensions vary independently (high / medium / low).

## Content-type caps

If one of these content types applies and none of its exceptions does, no dimension may exceed its cap:

{{{{content_caps}}}}

## Output format

{{{{output_schema}}}}

DO NOT include any text outside the JSON object.

## Article

{{{{article}}}}
"""


def new_filter(name: str, dimensions: int | str | list[str], root: Path | str, force: bool = False, *,
               gatekeepers: list[str] = (), content_cap: bool = False, prefilter: bool = False) -> Path:
    """Write ``<root>/<name>/v1/{filter.yaml,prompt.md}`` and return the package folder (validated).

    Gatekeepers (on the named dimensions), the example content cap and the example prefilter rules are added
    only when asked; otherwise the file carries them as commented examples."""
    check_name(name, "filter name")
    dims = dimension_names(dimensions)
    unknown = [g for g in gatekeepers if g not in dims]
    if unknown:
        raise ValueError(f"--gatekeeper {', '.join(unknown)}: not a dimension of this filter "
                         f"(dimensions: {', '.join(dims)})")
    package = Path(root) / name / "v1"
    if package.exists() and any(package.iterdir()) and not force:
        raise FileExistsError(f"{package} already exists; pick another name or pass --force to overwrite")
    package.mkdir(parents=True, exist_ok=True)
    (package / SPEC_FILE).write_text(_spec_text(name, dims, list(dict.fromkeys(gatekeepers)), content_cap,
                                                prefilter), encoding="utf-8")
    (package / PROMPT_FILE).write_text(_prompt_text(name), encoding="utf-8")
    try:
        load_filter(package)
    except FilterSpecError:
        # Never leave a broken package behind; this means the scaffold and the schema disagree.
        shutil.rmtree(package)
        raise
    return package


_SLUG = re.compile(r"[^a-z0-9_]+")


def suggest_name(text: str) -> str:
    """A valid filter/dimension name close to ``text`` (``"Nature-Recovery"`` -> ``nature_recovery``)."""
    slug = _SLUG.sub("_", text.strip().lower()).strip("_")
    if not slug or not slug[0].isalpha():
        slug = "f_" + slug
    return slug
