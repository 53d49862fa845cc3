"""Filter packages: schema, loader, prompt rendering and post-processing."""

from distillery.filters.loader import (
    FilterCatalog,
    FilterSpecError,
    UnknownFilterError,
    load_filter,
    validate_path,
)
from distillery.filters.postprocess import Outcome, overall_scores, postprocess, tier_for
from distillery.filters.prompt import prompt_hash, render_prompt, render_template
from distillery.filters.spec import Dimension, FilterSpec, Gatekeeper, Tier

__all__ = [
    "Dimension",
    "FilterCatalog",
    "FilterSpec",
    "FilterSpecError",
    "Gatekeeper",
    "Outcome",
    "Tier",
    "UnknownFilterError",
    "load_filter",
    "overall_scores",
    "postprocess",
    "prompt_hash",
    "render_prompt",
    "render_template",
    "tier_for",
    "validate_path",
]
