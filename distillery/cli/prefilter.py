"""``distillery prefilter ...``: check articles against the rules and measure false negatives/positives."""

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

prefilter_app = typer.Typer(help="Run the prefilter rules offline and measure them against labels.",
                            no_args_is_help=True)


def _filters_dir(value: Path | None) -> Path:
    from distillery.cli.filters import default_filters_dir

    return value or default_filters_dir()


def _fail(message: str) -> typer.Exit:
    err.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    return typer.Exit(2)


def _load(filters_dir: Path, refs: list[str]):
    from distillery_services.prefilter.engine import PrefilterEngine

    from distillery.filters import FilterCatalog, FilterSpecError, UnknownFilterError

    try:
        catalog = FilterCatalog.load(filters_dir)
        specs = [catalog.resolve(r) for r in refs] if refs else list(catalog.specs.values())
    except (FilterSpecError, UnknownFilterError) as exc:
        raise _fail(str(exc)) from None
    except ValueError as exc:
        raise _fail(f"bad filter reference: {exc}") from None
    return PrefilterEngine(specs), specs


@prefilter_app.command("evaluate")
def evaluate_cmd(
    filter_ref: Annotated[str, typer.Option("--filter", "-f", help="Filter name or name/vN.")],
    labels: Annotated[list[Path] | None, typer.Option(
        "--labels", help="JSONL with oracle scores (or relevant/expected/human_label); repeatable.")] = None,
    positives: Annotated[list[Path] | None, typer.Option(
        "--positives", help="JSONL whose every record is relevant (should pass); repeatable.")] = None,
    negatives: Annotated[list[Path] | None, typer.Option(
        "--negatives", help="JSONL whose every record is irrelevant (should be blocked); repeatable.")] = None,
    threshold: Annotated[float, typer.Option(
        help="Oracle overall score at or above which an article is relevant.")] = 4.0,
    filters_dir: Annotated[Path | None, typer.Option(help="Folder of filter packages.")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the report as JSON here.")] = None,
    metrics_out: Annotated[Path | None, typer.Option(
        "--metrics-out", help="Write the rates as Prometheus gauges (textfile-collector format) here.")] = None,
    max_fn_rate: Annotated[float | None, typer.Option(
        help="Exit 1 when the false-negative rate is above this (a release gate).")] = None,
    max_fp_rate: Annotated[float | None, typer.Option(
        help="Exit 1 when the false-positive rate is above this.")] = None,
) -> None:
    """Compare prefilter decisions with labels: false negatives (relevant but blocked), false positives
    (irrelevant but passed), the reasons behind the false negatives."""
    from distillery_services.prefilter.evaluate import evaluate, export_gauges, write_json

    if not (labels or positives or negatives):
        raise _fail("give at least one of --labels, --positives, --negatives")
    engine, (spec,) = _load(_filters_dir(filters_dir), [filter_ref])
    items = _labelled_items(spec, threshold, labels, positives, negatives)
    report = evaluate(engine, (spec.name, spec.version), items, threshold)
    _print_evaluation(spec, threshold, report)
    if json_out:
        write_json([report], json_out)
    if metrics_out:
        export_gauges([report], metrics_out)
        console.print(f"gauges written to {metrics_out}")
    failed = (max_fn_rate is not None and report.false_negative_rate > max_fn_rate) or (
        max_fp_rate is not None and report.false_positive_rate > max_fp_rate)
    if failed:
        err.print("[bold red]evaluation gate failed[/]")
        raise typer.Exit(1)


def _labelled_items(spec, threshold: float, labels: list[Path] | None, positives: list[Path] | None,
                    negatives: list[Path] | None) -> list:
    """Every labelled article of the given files (scored labels, all-relevant files, all-irrelevant files)."""
    from distillery_services.prefilter.evaluate import LabelError, load_labels

    items = []
    try:
        for path in labels or []:
            items += load_labels(path, spec, threshold)
        for path in positives or []:
            items += load_labels(path, spec, threshold, relevant=True)
        for path in negatives or []:
            items += load_labels(path, spec, threshold, relevant=False)
    except (LabelError, FileNotFoundError) as exc:
        raise _fail(str(exc)) from None
    return items


def _print_evaluation(spec, threshold: float, report) -> None:
    """The rates table, the title-only note and the commonest reasons behind false negatives."""
    table = Table(title=f"prefilter {spec.ref} vs labels (relevant: overall >= {threshold:g})")
    table.add_column("measure")
    table.add_column("rate", justify="right")
    table.add_column("count", justify="right")
    table.add_row("false negatives (relevant, blocked)", f"{report.false_negative_rate:.1%}",
                  f"{report.false_negatives} / {report.positives}")
    table.add_row("false positives (irrelevant, passed)", f"{report.false_positive_rate:.1%}",
                  f"{report.false_positives} / {report.negatives}")
    table.add_row("relevant passed", f"{report.positives_passed_rate:.1%}",
                  f"{report.positives - report.false_negatives} / {report.positives}")
    table.add_row("irrelevant blocked", f"{report.negatives_blocked_rate:.1%}",
                  f"{report.negatives - report.false_positives} / {report.negatives}")
    table.add_row("pass rate (all)", f"{report.pass_rate:.1%}", f"{report.passed} / {report.articles}")
    console.print(table)
    if report.title_only_records:
        console.print(f"{report.title_only_records} records had no text: judged on their title, "
                      "without length rules")
    if report.top_false_negative_reasons:
        console.print("[bold]top blocking reasons among false negatives[/]")
        for reason, count in report.top_false_negative_reasons:
            console.print(f"  {count:6d}  {escape(reason)}")


@prefilter_app.command("check")
def check_cmd(
    articles: Annotated[Path, typer.Argument(help="JSONL of articles (title, text, url, source_type, language).")],
    filter_refs: Annotated[list[str] | None, typer.Option("--filter", "-f", help="Filter (repeatable); "
                                                                                "default: all loaded.")] = None,
    filters_dir: Annotated[Path | None, typer.Option(help="Folder of filter packages.")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write decisions as JSONL here "
                                                                 "(default: stdout).")] = None,
) -> None:
    """Run the prefilter on a JSONL file; one JSON decision per (article, filter)."""
    from distillery.articles import InvalidArticleError, read_jsonl
    from distillery.messages import from_record

    engine, _specs = _load(_filters_dir(filters_dir), filter_refs or [])
    if not articles.is_file():
        raise _fail(f"{articles} does not exist")
    sink = open(out, "w", encoding="utf-8") if out else None  # noqa: SIM115 - closed in the finally below
    counts = {"passed": 0, "blocked": 0}
    try:
        for i, record in enumerate(read_jsonl(articles), 1):
            try:
                article = from_record(record)
            except (TypeError, ValueError, InvalidArticleError) as exc:
                raise _fail(f"{articles}:{i}: {exc}") from None
            result = engine.check(article.title, article.text, article.url, article.source_type,
                                  article.language)
            for v in result.verdicts:
                counts["passed" if v.passed else "blocked"] += 1
                line = json.dumps({"article_id": article.id, "filter": v.ref, "passed": v.passed,
                                   "reasons": [{"code": r.code, "matched": r.matched} for r in v.reasons]},
                                  ensure_ascii=False)
                if sink:
                    sink.write(line + "\n")
                else:
                    print(line)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    finally:
        if sink:
            sink.close()
    err.print(f"{counts['passed']} passed, {counts['blocked']} blocked")


def register(app: typer.Typer) -> None:
    app.add_typer(prefilter_app, name="prefilter")
