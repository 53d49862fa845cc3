"""``distillery oracle ...``: costs, label-store import/export, dead letters, multi-oracle agreement."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

console = Console()
err = Console(stderr=True)

oracle_app = typer.Typer(help="Oracle gateway tools: spend, label store import/export, agreement between oracles.",
                         no_args_is_help=True)

ConfigOpt = Annotated[Path | None, typer.Option("--config", help="YAML config (oracle_gateway: section)")]
StoreOpt = Annotated[str | None, typer.Option("--store", help="label store: path, sqlite:///path or "
                                              "postgresql://... (default from config: <state_dir>/labels.sqlite)")]


def _fail(exc: BaseException) -> typer.Exit:
    err.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
    return typer.Exit(2)


def _settings(config: Path | None):
    from distillery_services.oracle_gateway.config import OracleGatewaySettings

    return OracleGatewaySettings.load(config)


def _store(config: Path | None, store: str | None):
    from distillery.store import LabelStore

    return LabelStore.open(store or _settings(config).resolved_label_store())


@oracle_app.command("costs")
def costs(
    filter_name: Annotated[str | None, typer.Option("--filter", help="only this filter")] = None,
    job: Annotated[str | None, typer.Option("--job", help="only this labelling job id")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
    config: ConfigOpt = None,
    store: StoreOpt = None,
) -> None:
    """Spend per filter, provider and model from the cost ledger: every billed call (labels, re-asks,
    dead-lettered articles, batch items, unused hedges), tokens and USD."""
    from distillery.config import ConfigError

    try:
        with _store(config, store) as s:
            rows = s.costs(filter_name.partition("/")[0] if filter_name else None, job)
    except (ConfigError, ValueError) as exc:
        raise _fail(exc) from None
    if as_json:
        console.print_json(json.dumps([r.__dict__ for r in rows]))
        return
    table = Table(title="Oracle spend")
    for col in ("filter", "provider", "model", "labels", "calls", "input tok", "cached tok", "output tok", "USD"):
        table.add_column(col, justify="right" if col not in ("filter", "provider", "model") else "left")
    for r in rows:
        table.add_row(r.filter_name, r.provider, r.oracle_model, f"{r.labels:,}", f"{r.calls:,}", f"{r.input_tokens:,}",
                      f"{r.cached_input_tokens:,}", f"{r.output_tokens:,}", f"{r.cost_usd:.4f}")
    table.add_row("total", "", "", f"{sum(r.labels for r in rows):,}", f"{sum(r.calls for r in rows):,}", "", "", "",
                  f"{sum(r.cost_usd for r in rows):.4f}", style="bold")
    console.print(table)


@oracle_app.command("import")
def import_labels(
    path: Annotated[Path, typer.Argument(help="JSONL with dimension_scores (the shared datasets shape)")],
    filter_ref: Annotated[str, typer.Option("--filter", help="name/vN the labels belong to")],
    model: Annotated[str | None, typer.Option("--model", help="oracle model id (default: the record's "
                                              "oracle_model_resolved)")] = None,
    config: ConfigOpt = None,
    store: StoreOpt = None,
) -> None:
    """Import oracle labels from JSONL into the label store (idempotent)."""
    if not path.is_file():
        raise _fail(FileNotFoundError(f"{path} does not exist"))
    try:
        with _store(config, store) as s:
            n = s.import_jsonl(path, filter_ref, oracle_model=model)
    except ValueError as exc:
        raise _fail(exc) from None
    console.print(f"imported {n:,} labels for {filter_ref}")


@oracle_app.command("export")
def export_labels(
    filter_ref: Annotated[str, typer.Option("--filter", help="name or name/vN")],
    out: Annotated[Path, typer.Option("--out", help="output file (.jsonl or .parquet)")],
    model: Annotated[str | None, typer.Option("--model", help="only this oracle model")] = None,
    config: ConfigOpt = None,
    store: StoreOpt = None,
) -> None:
    """Export labels with their articles to JSONL or Parquet."""
    try:
        with _store(config, store) as s:
            n = (s.export_parquet(out, filter_ref, model) if out.suffix == ".parquet"
                 else s.export_jsonl(out, filter_ref, model))
    except ValueError as exc:
        raise _fail(exc) from None
    console.print(f"wrote {n:,} labels to {out}")


@oracle_app.command("dead-letters")
def dead_letters(
    filter_name: Annotated[str | None, typer.Option("--filter", help="only this filter")] = None,
    config: ConfigOpt = None,
    store: StoreOpt = None,
) -> None:
    """Articles the oracle could not label after every retry (the next `distillery score` run retries them)."""
    with _store(config, store) as s:
        rows = s.dead_letters(filter_name)
    table = Table(title=f"Dead letters ({len(rows)})")
    for col in ("article", "filter", "oracle", "code", "attempts", "error"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["article_id"], f"{r['filter_name']}/v{r['filter_version']}", r["oracle"], r["error_code"],
                      str(r["attempts"]), escape(r["error"][:120]))
    console.print(table)


@oracle_app.command("agreement")
def agreement_cmd(
    filter_ref: Annotated[str, typer.Option("--filter", help="name or name/vN")],
    models: Annotated[list[str] | None, typer.Option("--model", help="compare only these models (repeatable)")] = None,
    write_consensus: Annotated[bool, typer.Option("--write-consensus", help="store the median labels as "
                                                  "oracle model 'consensus-median'")] = False,
    json_out: Annotated[Path | None, typer.Option("--json", help="also write the report as JSON here")] = None,
    config: ConfigOpt = None,
    store: StoreOpt = None,
) -> None:
    """Multi-oracle agreement: MAE and Pearson per dimension between oracles and against the median consensus."""
    from distillery_services.oracle_gateway.consensus import agreement

    name, _, version = filter_ref.partition("/")
    with _store(config, store) as s:
        report = agreement(s, name, int(version.lstrip("v")) if version else None, models or None, write_consensus)
    if len(report.models) < 2:
        raise _fail(ValueError(f"{filter_ref} has labels from {len(report.models)} oracle model(s); "
                               "agreement needs two or more"))
    console.print(report.markdown())
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(report.as_dict(), indent=1))


def register(app: typer.Typer) -> None:
    app.add_typer(oracle_app, name="oracle")
