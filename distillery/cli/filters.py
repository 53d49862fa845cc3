"""Filter authoring commands: ``new-filter``, ``validate``, ``filters list`` and ``filters prompt``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from distillery.config import DEFAULT_FILTERS_DIR
from distillery.filters import FilterSpec, FilterSpecError, UnknownFilterError

console = Console()
err = Console(stderr=True)

filters_app = typer.Typer(help="Inspect filter packages (list them, print their rendered oracle prompt).",
                          no_args_is_help=True)


def default_filters_dir() -> Path:
    """``$DISTILLERY_FILTERS_DIR``, else ``./filters`` when it exists, else the repository's filters folder."""
    env = os.environ.get("DISTILLERY_FILTERS_DIR")
    if env:
        return Path(env)
    local = Path("filters")
    return local if local.is_dir() else DEFAULT_FILTERS_DIR


def _fail(exc: BaseException) -> typer.Exit:
    """Print a user error (file, field, problem) without a traceback; the caller raises the returned Exit."""
    err.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
    return typer.Exit(2)


def _summary(spec: FilterSpec) -> None:
    from distillery.filters import prompt_hash

    gates = {g.dimension: g for g in spec.gatekeepers}
    console.print(f"[bold green]OK[/] [bold]{spec.ref}[/]  prompt hash [cyan]{prompt_hash(spec)}[/]")
    console.print(f"  {escape(spec.description)}")
    table = Table(show_edge=False, pad_edge=False)
    table.add_column("dimension")
    table.add_column("weight", justify="right")
    table.add_column("gatekeeper")
    for dim in spec.dimensions:
        gate = gates.get(dim.name)
        rule = f"{gate.name}: < {gate.threshold:g} caps overall at {gate.max_overall:g}" if gate else ""
        table.add_row(dim.name, f"{dim.weight:.3g}", rule)
    console.print(table)
    tiers = ", ".join(f"{t.name} >= {t.min_overall:g}" for t in spec.tiers_descending)
    console.print(f"  tiers: {escape(tiers)}")
    if spec.content_caps:
        caps = ", ".join(f"{c.name} <= {c.max_score:g}" for c in spec.content_caps)
        console.print(f"  content caps: {escape(caps)}")
    rules = spec.prefilter
    console.print(
        f"  prefilter: {'on' if rules.enabled else 'off'}, min length {rules.min_length}, "
        f"{len(rules.exclusions)} exclusion categories, {len(rules.positive_patterns)} positive patterns"
        + (f", rescue at {rules.rescue_threshold}" if rules.rescue_threshold else "")
    )
    console.print(
        f"  oracle: {escape(spec.oracle.default)}; student: {spec.student.kind} "
        f"(head {spec.student.truncation.head_tokens} + tail {spec.student.truncation.tail_tokens} tokens)"
    )


def _read_article(path: Path) -> dict:
    """A JSON object, the first record of a JSONL file, or plain text (first line = title)."""
    raw = path.read_text(encoding="utf-8")
    stripped = raw.strip()
    if not stripped:
        raise ValueError(f"{path}: the article file is empty")
    if stripped.startswith("{"):
        first = stripped if path.suffix == ".json" else stripped.splitlines()[0]
        try:
            record = json.loads(first)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
        text = record.get("text") or record.get("content") or ""
        if not record.get("title") or not text:
            raise ValueError(f"{path}: the article needs a non-empty 'title' and 'text' (or 'content')")
        return {
            "title": str(record["title"]),
            "text": str(text),
            "source": str(record.get("source") or ""),
            "published_at": str(record.get("published_at") or record.get("published_date") or ""),
        }
    title, _, text = stripped.partition("\n")
    if not text.strip():
        raise ValueError(f"{path}: a plain-text article needs a title line followed by its text")
    return {"title": title.strip(), "text": text.strip(), "source": "", "published_at": ""}


def _resolve(ref: str, filters_dir: Path | None) -> FilterSpec:
    """``name``, ``name/vN`` (looked up in the filters folder) or a path to a package."""
    from distillery.filters import FilterCatalog, load_filter

    candidate = Path(ref)
    if candidate.exists() and (candidate.is_file() or (candidate / "filter.yaml").is_file()):
        return load_filter(candidate)
    name = ref.partition("/")[0]
    catalog = FilterCatalog.load(filters_dir or default_filters_dir(), only=None)
    if name not in catalog.names():
        raise UnknownFilterError(
            f"unknown filter {ref!r} in {catalog.root}; known: {', '.join(catalog.names()) or 'none'}"
        )
    return catalog.resolve(ref)


def register(app: typer.Typer) -> None:
    @app.command("new-filter", help="Write a new filter package <dir>/<name>/v1/ (filter.yaml + prompt.md) "
                 "that `distillery validate` accepts; then replace its placeholder texts.")
    def new_filter_cmd(
        name: str = typer.Option(..., "--name", help="Filter name: lower-case letters, digits, underscores"),
        dimensions: str = typer.Option(
            "5", "--dimensions", help="Number of dimensions (1-16), or comma-separated dimension names"
        ),
        directory: Annotated[Path, typer.Option("--dir", help="Folder of filter packages")] = Path("filters"),
        force: bool = typer.Option(False, "--force", help="Overwrite an existing v1 package"),
    ) -> None:
        from distillery.filters.scaffold import new_filter, suggest_name

        try:
            package = new_filter(name, dimensions, directory, force=force)
        except (FilterSpecError, ValueError, FileExistsError) as exc:
            hint = ""
            if "filter name" in str(exc):
                hint = f" (try --name {suggest_name(name)})"
            err.print(f"[bold red]error:[/] {escape(str(exc))}{escape(hint)}", soft_wrap=True)
            raise typer.Exit(2) from None
        console.print(f"wrote {package}/filter.yaml and {package}/prompt.md", soft_wrap=True)
        console.print(f"next: edit them, then run [bold]distillery validate {package}[/]", soft_wrap=True)

    @app.command(help="Validate a filter package folder, a filter.yaml, or a whole filters folder; print a "
                 "summary of each package, or each problem (file and field) and exit 2.")
    def validate(
        path: Annotated[
            Path | None, typer.Argument(help="Package folder, filter.yaml or filters folder [default: filters]")
        ] = None,
    ) -> None:
        from distillery.filters.loader import validate_path

        try:
            specs, errors = validate_path(path or default_filters_dir())
        except FilterSpecError as exc:
            raise _fail(exc) from None
        for spec in specs:
            _summary(spec)
        for exc in errors:
            err.print(f"[bold red]INVALID[/] {escape(str(exc))}", soft_wrap=True)
        if errors:
            err.print(f"{len(errors)} invalid, {len(specs)} valid")
            raise typer.Exit(2)
        if len(specs) > 1:
            console.print(f"{len(specs)} filter packages valid")

    @filters_app.command("list", help="List the filter packages in a folder.")
    def list_cmd(
        directory: Annotated[
            Path | None, typer.Option("--dir", help="Folder of filter packages [default: filters]")
        ] = None,
    ) -> None:
        from distillery.filters import FilterCatalog, prompt_hash

        try:
            catalog = FilterCatalog.load(directory or default_filters_dir())
        except FilterSpecError as exc:
            raise _fail(exc) from None
        if not catalog.specs:
            raise _fail(FilterSpecError(catalog.root, ["no filter packages found"]))
        table = Table(title=f"Filters in {catalog.root}")
        for col in ("filter", "dims", "gatekeepers", "prompt hash"):
            table.add_column(col, no_wrap=True, min_width=len(col))
        table.add_column("tiers", overflow="fold", max_width=30)
        table.add_column("description", no_wrap=True, overflow="ellipsis", max_width=40)
        for (name, version), spec in sorted(catalog.specs.items()):
            table.add_row(
                f"{name}/v{version}",
                str(len(spec.dimensions)),
                ", ".join(g.name for g in spec.gatekeepers) or "-",
                prompt_hash(spec),
                ", ".join(t.name for t in spec.tiers_descending),
                escape(spec.description),
            )
        console.print(table)

    @filters_app.command("prompt", help="Print a filter's rendered oracle prompt (with an article if given).")
    def prompt_cmd(
        filter_ref: str = typer.Argument(..., metavar="FILTER", help="name, name/vN, or a package folder"),
        article: Annotated[Path | None, typer.Option(
            "--article", help="Article file: a JSON object, JSONL (first record), or text (title line first)"
        )] = None,
        directory: Annotated[
            Path | None, typer.Option("--dir", help="Folder of filter packages [default: filters]")
        ] = None,
    ) -> None:
        from distillery.filters import render_prompt, render_template

        try:
            spec = _resolve(filter_ref, directory)
            if article is None:
                text = render_template(spec)
            else:
                if not article.is_file():
                    raise FileNotFoundError(f"article file {article} does not exist")
                text = render_prompt(spec, **_read_article(article))
        except (FilterSpecError, UnknownFilterError, ValueError, FileNotFoundError, UnicodeDecodeError) as exc:
            raise _fail(exc) from None
        # Plain output: the prompt holds [brackets] that rich would treat as markup.
        typer.echo(text)

    app.add_typer(filters_app, name="filters")
