"""Hyper-parameter checking shared by the student kinds: unknown keys are errors, strings are coerced."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


def _coerce(value: Any, default: Any) -> Any:
    if not isinstance(value, str) or isinstance(default, str) or default is None:
        return value
    if isinstance(default, bool):
        if value.lower() in {"1", "true", "yes", "on"}:
            return True
        if value.lower() in {"0", "false", "no", "off"}:
            return False
        raise ValueError(f"expected a boolean, got {value!r}")
    if isinstance(default, int):
        return int(value)
    if isinstance(default, float):
        return float(value)
    if isinstance(default, (list, tuple)):
        text = value.strip()
        items = json.loads(text) if text.startswith("[") else [v for v in text.split(",") if v.strip()]
        kind = type(default[0]) if default else str
        return [kind(v) if not isinstance(v, kind) else v for v in items]
    return value


def check_params(kind: str, defaults: Mapping[str, Any], given: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``given`` over ``defaults``; reject unknown keys and values of the wrong type."""
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ValueError(
            f"unknown {kind} student parameter(s) {', '.join(unknown)}; valid: {', '.join(sorted(defaults))}"
        )
    merged = dict(defaults)
    for key, value in given.items():
        try:
            merged[key] = _coerce(value, defaults[key])
        except (TypeError, ValueError, json.JSONDecodeError) as exc:
            raise ValueError(f"{kind} student parameter {key}={value!r} is invalid: {exc}") from None
    for key, value in merged.items():  # tuples become lists so that manifests round-trip through JSON
        if isinstance(value, tuple):
            merged[key] = list(value)
    return merged
