"""Generate the filter.yaml schema reference (markdown) from the pydantic models in :mod:`spec`.

``docs/filters.md`` holds the generated reference between two markers; a unit test fails when it is stale.
Regenerate with ``python -m distillery.filters.reference --write docs/filters.md``.
"""

from __future__ import annotations

import argparse
import sys
import typing
from pathlib import Path

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from distillery.filters.spec import (
    ContentCap,
    Dimension,
    ExclusionCategory,
    FilterSpec,
    Gatekeeper,
    OracleSettings,
    PrefilterRules,
    StudentSettings,
    Tier,
    Truncation,
)

BEGIN = "<!-- schema-reference:begin (generated from distillery/filters/spec.py; do not edit by hand) -->"
END = "<!-- schema-reference:end -->"

# Section order: the top level first, then each nested model where it is used.
MODELS: tuple[tuple[str, type[BaseModel]], ...] = (
    ("top level", FilterSpec),
    ("dimensions[]", Dimension),
    ("gatekeepers[]", Gatekeeper),
    ("content_caps[]", ContentCap),
    ("tiers[]", Tier),
    ("prefilter", PrefilterRules),
    ("prefilter.exclusions[]", ExclusionCategory),
    ("oracle", OracleSettings),
    ("student", StudentSettings),
    ("student.truncation", Truncation),
)
_SECTION = {model: title for title, model in MODELS}
HIDDEN_FIELDS = {"prompt_template"}  # filled from prompt.md by the loader


def _type_name(annotation: object) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Literal:
        return "one of " + ", ".join(f"`{a}`" for a in args)
    if origin is list:
        return f"list of {_type_name(args[0])}"
    if origin is dict:
        return f"mapping {_type_name(args[0])} → {_type_name(args[1])}"
    if args and type(None) in args:  # X | None
        inner = [a for a in args if a is not type(None)]
        return " or ".join(_type_name(a) for a in inner) + " or null"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return f"object ({_SECTION.get(annotation, annotation.__name__)})"
    return {str: "string", int: "integer", float: "number", bool: "boolean"}.get(annotation, str(annotation))


def _constraints(field) -> str:
    length = "min length" if field.annotation is str else "min items"
    parts = []
    for meta in field.metadata:
        for attr, symbol in (("gt", ">"), ("ge", "≥"), ("lt", "<"), ("le", "≤"), ("min_length", length)):
            value = getattr(meta, attr, None)
            if value is not None:
                parts.append(f"{symbol} {value}")
    return ", ".join(parts)


def _default(field) -> str:
    if field.default_factory is not None:
        value = field.default_factory()
        if isinstance(value, BaseModel):
            return "(all defaults)"
        return f"`{value!r}`"
    if field.default is PydanticUndefined:
        return "**required**"
    return f"`{field.default!r}`"


def schema_reference() -> str:
    """Markdown tables, one per model, listing every key with its type, default, constraint and meaning."""
    out: list[str] = []
    for title, model in MODELS:
        doc = (model.__doc__ or "").strip().splitlines()[0]
        out.append(f"### `{title}`\n\n{doc}\n")
        out.append("| key | type | default | constraint | meaning |")
        out.append("|---|---|---|---|---|")
        for name, field in model.model_fields.items():
            if name in HIDDEN_FIELDS:
                continue
            description = (field.description or "").replace("|", "\\|").replace("<", "&lt;")
            out.append(
                f"| `{name}` | {_type_name(field.annotation)} | {_default(field)} | {_constraints(field)} "
                f"| {description} |"
            )
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def undocumented_fields() -> list[str]:
    """``Model.field`` for every schema field without a description (the reference must explain each key)."""
    return [
        f"{model.__name__}.{name}"
        for _, model in MODELS
        for name, field in model.model_fields.items()
        if name not in HIDDEN_FIELDS and not field.description
    ]


def render_doc(text: str) -> str:
    """``text`` with the part between the markers replaced by the current reference."""
    if BEGIN not in text or END not in text:
        raise ValueError(f"the document lacks the markers {BEGIN!r} and {END!r}")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n\n{schema_reference()}\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("doc", type=Path, nargs="?", default=Path("docs/filters.md"))
    parser.add_argument("--write", action="store_true", help="Rewrite the reference section in place")
    args = parser.parse_args(argv)
    current = args.doc.read_text(encoding="utf-8")
    updated = render_doc(current)
    if args.write:
        args.doc.write_text(updated, encoding="utf-8")
        print(f"updated {args.doc}")
        return 0
    if updated != current:
        print(f"{args.doc} is stale: run python -m distillery.filters.reference --write {args.doc}", file=sys.stderr)
        return 1
    print(f"{args.doc} is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
