"""No function or method of ``distillery`` or ``services`` is longer than 60 lines (STYLE.md: small functions with
names that explain them): a long one is split into named steps. Generated code is not ours to shape; a function
that must stay whole (e.g. a compiled kernel whose speed needs one loop) is listed in ALLOWED with the reason."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("distillery", "services")
GENERATED = ("distillery/v1/",)  # protoc's output (make protos)
MAX_LINES = 60  # from the ``def`` line to the last line of the body, docstring included

# (path, qualified name) -> why the function must stay longer than MAX_LINES. Empty: even the numba tf-idf kernel
# of distillery/students/ngrams.py is split into jitted per-document functions at the same speed.
ALLOWED: dict[tuple[str, str], str] = {}


def long_functions(source: str, limit: int = MAX_LINES) -> dict[str, int]:
    """``{qualified name: lines}`` of the functions of ``source`` longer than ``limit`` lines (methods as
    ``Class.method``, nested functions as ``outer.<locals>.inner``)."""
    found: dict[str, int] = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                name = prefix + child.name
                lines = child.end_lineno - child.lineno + 1
                if lines > limit:
                    found[name] = lines
                visit(child, name + ".<locals>.")
            elif isinstance(child, ast.ClassDef):
                visit(child, prefix + child.name + ".")
            else:
                visit(child, prefix)

    visit(ast.parse(source), "")
    return found


def _scan() -> dict[tuple[str, str], int]:
    out: dict[tuple[str, str], int] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel.startswith(GENERATED):
                continue
            for name, lines in long_functions(path.read_text(encoding="utf-8")).items():
                out[(rel, name)] = lines
    return out


def test_no_function_is_longer_than_60_lines():
    too_long = {key: lines for key, lines in _scan().items() if key not in ALLOWED}
    assert not too_long, "split these into named steps (or, if they must stay whole, list them in ALLOWED with " \
        "the reason):\n" + "\n".join(f"  {path} {name}: {lines} lines" for (path, name), lines in sorted(too_long.items()))


def test_every_allowed_function_is_still_long():
    """An entry whose function was shortened or renamed is removed, so the list only names real exceptions."""
    scanned = _scan()
    assert not [key for key in ALLOWED if key not in scanned]


def test_the_scan_counts_methods_and_nested_functions():
    def body(statements: int, indent: str) -> str:
        return "".join(f"{indent}x{i} = {i}\n" for i in range(statements))

    source = ("def short():\n" + body(59, "    ")
              + "class C:\n    def method(self):\n" + body(60, "        ")
              + "def outer():\n    def inner():\n" + body(60, "        ") + "    return inner\n")
    assert long_functions(source) == {"C.method": 61, "outer": 63, "outer.<locals>.inner": 61}
