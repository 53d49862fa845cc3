"""Filter authoring commands: ``new-filter``, ``validate``, ``filters list`` and ``filters prompt``."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from distillery.filters import FilterSpec, FilterSpecError, UnknownFilterError

console = Console()
err = Console(stderr=True)

filters_app = typer.Typer(help="Inspect filter packages (list them, print their rendered oracle prompt).",
                          no_args_is_help=True)


def default_filters_dir() -> Path:
    """The first folder of the filter search path (``./filters``, configured folders, shipped examples)."""
    from distillery.filters.search import LOCAL_DIR, search_path

    folders = search_path()
    return folders[0] if folders else LOCAL_DIR


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
    from distillery.filters import load_filter

    candidate = Path(ref)
    if candidate.exists() and (candidate.is_file() or (candidate / "filter.yaml").is_file()):
        return load_filter(candidate)
    from distillery.filters.search import discover

    return discover([filters_dir]).resolve(ref)


def _validate_target(arg: str | None, filters_dir: Path | None) -> Path:
    """A path as given; a filter name/ref (no such path) -> its package folder on the search path."""
    from distillery.filters.search import discover

    if arg is None:
        return filters_dir or default_filters_dir()
    if Path(arg).exists() or not re.fullmatch(r"[a-z][a-z0-9_]*(/v\d+)?", arg):
        return Path(arg)
    catalog = discover([filters_dir])
    spec = catalog.resolve(arg)
    folder = catalog.origins[spec.name] / spec.name / f"v{spec.version}"
    return folder if folder.is_dir() else Path(arg)


_NEW_FILTER_HELP = ("Write a new filter package filters/<name>/v1/ (filter.yaml + prompt.md) "
                    "that `distillery validate` accepts; then replace its placeholder texts. Gatekeepers, content "
                    "caps and prefilter rules are added only when asked (otherwise as commented examples).")


def new_filter_cmd(
    name: str = typer.Option(..., "--name", help="Filter name: lower-case letters, digits, underscores"),
    dimensions: str | None = typer.Option(
        None, "--dimensions", help="Number of dimensions (1-16), or comma-separated dimension names "
        "[default: asked on a terminal, else 5]"
    ),
    dimension: list[str] = typer.Option([], "--dimension", help="A dimension name (repeat, in order)"),
    gatekeeper: list[str] = typer.Option([], "--gatekeeper", help="Add a gatekeeper on this dimension "
                                         "(repeatable): a low score there caps the overall score"),
    content_cap: bool = typer.Option(False, "--content-cap", help="Add an example content cap"),
    prefilter: bool = typer.Option(False, "--prefilter", help="Turn the prefilter on with example rules "
                                   "(minimum length, blocked source types, an exclusion category)"),
    directory: Annotated[Path, typer.Option("--dir", help="Folder of filter packages")] = Path("filters"),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing v1 package"),
) -> None:
    import sys

    from distillery.filters.scaffold import new_filter, suggest_name

    dims: str | list[str] = dimensions or "5"
    if dimension:
        if dimensions and (not dimensions.strip().isdigit() or int(dimensions) != len(dimension)):
            raise _fail(ValueError(f"--dimensions {dimensions} disagrees with the {len(dimension)} --dimension "
                                   "names; give one or the other"))
        dims = dimension
    elif dimensions is None and sys.stdin.isatty():
        dims = typer.prompt("Dimension names, comma-separated (or how many)", default="5")
    try:
        package = new_filter(name, dims, directory, force=force, gatekeepers=gatekeeper,
                             content_cap=content_cap, prefilter=prefilter)
    except (FilterSpecError, ValueError, FileExistsError) as exc:
        hint = ""
        if "filter name" in str(exc):
            hint = f" (try --name {suggest_name(name)})"
        err.print(f"[bold red]error:[/] {escape(str(exc))}{escape(hint)}", soft_wrap=True)
        raise typer.Exit(2) from None
    console.print(f"wrote {package}/filter.yaml and {package}/prompt.md", soft_wrap=True)
    # ./filters is on every command's search path; another --dir needs naming (or $DISTILLERY_FILTERS_DIR).
    target = f"{name}/v1" if directory == Path("filters") else str(package)
    console.print(f"next: edit them, then run [bold]distillery validate {target}[/]; label with "
                  f"[bold]distillery score --filter {name}/v1[/]"
                  + ("" if directory == Path("filters") else f" --filters-dir {directory}"), soft_wrap=True)


_VALIDATE_HELP = ("Validate a filter package folder, a filter.yaml, a whole filters folder, or a filter by "
                  "name (name or name/vN, found like every command finds filters: ./filters, configured folders, "
                  "shipped examples); print a summary of each package, or each problem (file and field) and exit 2.")


def validate(
    path: Annotated[
        str | None, typer.Argument(help="Package folder, filter.yaml, filters folder, or name/vN "
                                        "[default: the first folder of the search path]")
    ] = None,
    filters_dir: Annotated[Path | None, typer.Option("--filters-dir", help="Also search this folder of "
                                                      "filter packages (before the shipped examples)")] = None,
) -> None:
    from distillery.filters.loader import validate_path

    try:
        specs, errors = validate_path(_validate_target(path, filters_dir))
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
        Path | None, typer.Option("--dir", "--filters-dir", help="Also search this folder of filter packages "
                                  "(after ./filters, before the shipped examples)")
    ] = None,
) -> None:
    from distillery.filters import prompt_hash
    from distillery.filters.search import discover

    try:
        catalog = discover([directory])
    except FilterSpecError as exc:
        raise _fail(exc) from None
    if not catalog.specs:
        raise _fail(FilterSpecError(catalog.root, ["no filter packages found"]))
    table = Table(title=f"Filters in {', '.join(map(str, catalog.roots))}")
    table.add_column("from", no_wrap=True)
    for col in ("filter", "dims", "gatekeepers", "prompt hash"):
        table.add_column(col, no_wrap=True, min_width=len(col))
    table.add_column("tiers", overflow="fold", max_width=30)
    table.add_column("description", no_wrap=True, overflow="ellipsis", max_width=40)
    for (name, version), spec in sorted(catalog.specs.items()):
        table.add_row(
            str(catalog.origins.get(name, catalog.root)),
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
        Path | None, typer.Option("--dir", "--filters-dir", help="Also search this folder of filter packages")
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


def register(app: typer.Typer) -> None:
    app.command("new-filter", help=_NEW_FILTER_HELP)(new_filter_cmd)
    app.command(help=_VALIDATE_HELP)(validate)
    app.add_typer(filters_app, name="filters")
