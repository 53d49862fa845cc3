"""Persistent state shared by services: the oracle label store."""

from distillery.store.labels import (
    IMPORTED_PROMPT_HASH,
    BilledCall,
    CostRow,
    LabelledArticle,
    LabelStore,
    parse_filter_ref,
)

__all__ = ["IMPORTED_PROMPT_HASH", "BilledCall", "CostRow", "LabelStore", "LabelledArticle", "parse_filter_ref"]
