"""The metrics the services really export, found by a static scan of the Python sources.

Every ``Counter``/``Gauge``/``Histogram``/``Summary`` constructor under ``services/`` and ``distillery/`` is
read with :mod:`ast` (no service is imported, so no torch and no broker are needed). The catalog feeds
``docs/metrics.md`` and the checks that every dashboard query and alert rule names only metrics that exist.

Names are resolved from string literals, module-level string constants, ``namespace``/``subsystem``
keywords and f-strings. The shared interceptor's ``f"distillery_{service}_rpc_seconds"`` is expanded to
the four services; any other placeholder becomes a wildcard pattern (``[a-z0-9_]+``).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
SCAN_DIRS = ("services", "distillery")
SKIP_PARTS = {"v1", "__pycache__", "tests"}
SERVICES = ("prefilter", "oracle", "trainer", "inference")
KINDS = {"Counter": "counter", "Gauge": "gauge", "Histogram": "histogram", "Summary": "summary"}
NAME_RE = re.compile(r"^distillery_[a-z0-9_]+$")
# Suffixes each kind adds to the exposed sample names (prometheus_client conventions).
SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("_sum", "_count", "_created"),
}


@dataclass(frozen=True)
class MetricDef:
    """One metric family as declared in the code."""

    name: str  # family name as exposed (counters without ``_total``); may be a regex when ``pattern``
    kind: str
    labels: tuple[str, ...]
    help: str
    source: str  # path:line
    pattern: bool = False

    @property
    def service(self) -> str:
        parts = self.name.split("_")
        return parts[1] if len(parts) > 1 and parts[1] in SERVICES else "shared"

    def samples(self) -> list[str]:
        """Sample names Prometheus stores for this family (``_total``, ``_bucket`` ...)."""
        return [self.name + s for s in SUFFIXES[self.kind]]


@dataclass
class Catalog:
    metrics: list[MetricDef] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def sample_names(self) -> set[str]:
        return {s for m in self.metrics if not m.pattern for s in m.samples()}

    def patterns(self) -> list[re.Pattern[str]]:
        return [
            re.compile("^" + m.name + "(?:" + "|".join(re.escape(s) for s in SUFFIXES[m.kind]) + ")$")
            for m in self.metrics
            if m.pattern
        ]

    def exports(self, sample: str) -> bool:
        """True when ``sample`` (e.g. ``distillery_oracle_cost_usd_total``) is exported by some metric."""
        return sample in self.sample_names() or any(p.match(sample) for p in self.patterns())

    def by_name(self) -> dict[str, MetricDef]:
        return {m.name: m for m in self.metrics}


def _assignments(tree: ast.Module) -> dict[str, ast.AST]:
    """Names bound to string-valued expressions anywhere in the module (module constants and locals such
    as ``p = f"distillery_{service}_kafka"``); the last binding wins."""
    out: dict[str, ast.AST] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        else:
            continue
        if isinstance(value, (ast.Constant, ast.JoinedStr, ast.BinOp)) and not (
            isinstance(value, ast.Constant) and not isinstance(value.value, str)
        ):
            for target in targets:
                if isinstance(target, ast.Name):
                    out[target.id] = value
    return out


def _resolve(node: ast.AST | None, consts: dict[str, ast.AST], depth: int = 0) -> list[tuple[str, bool]]:
    """Possible values of a name expression: ``[(text, is_pattern)]``; empty when unknown.

    A pattern is a regular expression (placeholders that cannot be resolved become ``[a-z0-9_]+``).
    """
    if node is None or depth > 8:
        return []
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [(node.value, False)]
    if isinstance(node, ast.Name) and node.id in consts:
        return _resolve(consts[node.id], consts, depth + 1)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _resolve(node.left, consts, depth + 1), _resolve(node.right, consts, depth + 1)
        return [_join(a, pa, b, pb) for a, pa in left for b, pb in right]
    if isinstance(node, ast.JoinedStr):
        variants: list[tuple[str, bool]] = [("", False)]
        for part in node.values:
            if isinstance(part, ast.Constant):
                parts = [(str(part.value), False)]
            else:
                value = part.value if isinstance(part, ast.FormattedValue) else None
                if isinstance(value, ast.Name) and value.id == "service" and value.id not in consts:
                    parts = [(svc, False) for svc in SERVICES]
                else:
                    parts = _resolve(value, consts, depth + 1) or [("[a-z0-9_]+", True)]
                    parts = [(t, p) if not (p and t == "[a-z0-9_]+") else (t, True) for t, p in parts]
            variants = [_join(v, pv, t, pt) for v, pv in variants for t, pt in parts]
        return variants
    return []


def _join(a: str, a_pattern: bool, b: str, b_pattern: bool) -> tuple[str, bool]:
    """Concatenate two resolved pieces; once one is a regex, the literal parts get escaped."""
    if not a_pattern and not b_pattern:
        return a + b, False
    return (a if a_pattern else re.escape(a)) + (b if b_pattern else re.escape(b)), True


def _labels(node: ast.AST | None, consts: dict[str, ast.AST]) -> tuple[str, ...]:
    if isinstance(node, (ast.List, ast.Tuple)):
        out = []
        for elt in node.elts:
            vals = _resolve(elt, consts)
            out.append(vals[0][0] if vals else "?")
        return tuple(out)
    return ()


def _docs(node: ast.AST | None, consts: dict[str, ast.AST]) -> list[str]:
    out = []
    for text, is_pattern in _resolve(node, consts):
        out.append(re.sub(r"\[a-z0-9_\]\+", "<...>", text).replace("\\", "") if is_pattern else text)
    return out


def _ctor_kind(call: ast.Call) -> str | None:
    func = call.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
    return KINDS.get(name or "")


def scan_file(path: Path, root: Path = REPO_ROOT) -> tuple[list[MetricDef], list[str]]:
    text = path.read_text(encoding="utf-8", errors="replace")
    if not any(k + "(" in text for k in KINDS):
        return [], []
    try:
        tree = ast.parse(text)
    except SyntaxError as exc:
        return [], [f"{path}: cannot parse ({exc.msg})"]
    consts = _assignments(tree)
    rel = path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)
    found: list[MetricDef] = []
    problems: list[str] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        kind = _ctor_kind(node)
        if kind is None:
            continue
        kw = {k.arg: k.value for k in node.keywords if k.arg}
        args = list(node.args)
        name_node = args[0] if args else kw.get("name")
        doc_node = args[1] if len(args) > 1 else kw.get("documentation")
        label_node = args[2] if len(args) > 2 else kw.get("labelnames")
        names = _resolve(name_node, consts)
        if not names:
            # Not a metric constructor we can read (e.g. collections.Counter(iterable)); only report
            # when it looks like a metric (has documentation).
            if doc_node is not None and isinstance(name_node, (ast.Name, ast.JoinedStr, ast.Attribute)):
                problems.append(f"{rel}:{node.lineno}: {kind} name is not statically resolvable")
            continue
        prefix = "_".join(
            v[0][0] for v in (_resolve(kw.get("namespace"), consts), _resolve(kw.get("subsystem"), consts)) if v
        )
        docs = _docs(doc_node, consts)
        for i, (name, is_pattern) in enumerate(names):
            full = f"{prefix}_{name}" if prefix else name
            if kind == "counter" and full.endswith("_total"):
                full = full[: -len("_total")]
            if not is_pattern and not full.startswith("distillery_"):
                continue
            if is_pattern and not full.startswith("distillery_"):
                continue
            found.append(
                MetricDef(
                    name=full,
                    kind=kind,
                    labels=_labels(label_node, consts),
                    help=docs[i] if len(docs) == len(names) else (docs[0] if docs else ""),
                    source=f"{rel}:{node.lineno}",
                    pattern=is_pattern,
                )
            )
    return found, problems


def scan(root: Path = REPO_ROOT, dirs: Iterable[str] = SCAN_DIRS) -> Catalog:
    """Scan ``root/<dirs>`` for metric constructors; duplicates (same name) are kept once."""
    catalog = Catalog()
    seen: dict[str, MetricDef] = {}
    for d in dirs:
        base = root / d
        if not base.is_dir():
            continue
        for path in sorted(base.rglob("*.py")):
            if SKIP_PARTS & set(path.relative_to(root).parts[:-1]):
                continue
            found, problems = scan_file(path, root)
            catalog.problems.extend(problems)
            for m in found:
                if m.name in seen:
                    if seen[m.name].kind != m.kind:
                        catalog.problems.append(
                            f"{m.source}: {m.name} declared as {m.kind} and as {seen[m.name].kind} "
                            f"({seen[m.name].source})"
                        )
                    continue
                seen[m.name] = m
    catalog.metrics = sorted(seen.values(), key=lambda m: (SERVICES.index(m.service) if m.service in SERVICES
                                                          else len(SERVICES), m.name))
    return catalog


def naming_problems(catalog: Catalog) -> list[str]:
    """Violations of ``distillery_<service>_<what>_<unit>``: unknown service, missing unit suffix."""
    units = ("_seconds", "_bytes", "_usd", "_ratio", "_tokens", "_messages", "_articles", "_info", "_mae",
             "_psi", "_requests", "_score", "_items", "_size", "_depth", "_rate", "_count", "_timestamp_seconds",
             "_error")  # _error: an absolute error in score points (0-10 scale)
    out = []
    for m in catalog.metrics:
        if m.pattern:
            continue
        if not NAME_RE.match(m.name):
            out.append(f"{m.source}: {m.name} does not match {NAME_RE.pattern}")
        if m.service not in SERVICES:
            out.append(f"{m.source}: {m.name}: second word must be one of {', '.join(SERVICES)}")
        if m.kind in ("histogram", "summary") and not m.name.endswith(units):
            out.append(f"{m.source}: {m.name}: a {m.kind} name must end with a unit ({', '.join(units[:4])} ...)")
        for label in m.labels:
            if label in {"article_id", "article", "id", "url", "title"}:
                out.append(f"{m.source}: {m.name}: per-article label {label!r} is not allowed")
    return out
