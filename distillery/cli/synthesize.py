"""``distillery synthesize``: an LLM writes articles aimed at a rare score profile; the oracle labels them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

console = Console()
err = Console(stderr=True)

EXIT_BUDGET = 3


def _fail(exc: BaseException) -> typer.Exit:
    err.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
    return typer.Exit(2)


def synthesize(
    filter_ref: Annotated[str, typer.Option("--filter", help="filter to write for: name or name/vN")],
    profile: Annotated[str, typer.Option("--profile", help="target levels, e.g. 'dim=high,dim2=low' (levels: "
                                         "low = bands 0-4, medium = 5-6, high = 7-10)")],
    count: Annotated[int, typer.Option("--count", help="how many articles to write")] = 10,
    oracle: Annotated[str, typer.Option("--oracle", help="oracle that labels the articles (default: config, then "
                                        "the filter's oracle.default; the writer when that is the synthetic "
                                        "oracle)")] = "",
    writer: Annotated[str, typer.Option("--writer", help="configured LLM oracle that writes the articles "
                                        "(default: the labelling oracle when it is an LLM, else the first LLM "
                                        "configured)")] = "",
    budget: Annotated[float, typer.Option("--budget", help="stop before this job would spend more USD, writing "
                                          "and labelling together (0: no job budget)")] = 0.0,
    out: Annotated[Path | None, typer.Option("--out", help="also write the labelled articles of this job as "
                                             "JSONL here")] = None,
    workers: Annotated[int | None, typer.Option("--workers", help="writer and labelling requests in flight "
                                                "(default: the writer's max_concurrency)")] = None,
    seed: Annotated[int, typer.Option("--seed", help="varies the writer prompts (a new seed is a new job)")] = 0,
    job_id: Annotated[str | None, typer.Option("--job-id", help="job id (default: derived from filter, profile, "
                                               "writer, oracle and seed, so a rerun resumes the job)")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="YAML config (oracle_gateway: section)")] = None,
    filters_dir: Annotated[Path | None, typer.Option("--filters-dir", help="folder of filter packages")] = None,
    store: Annotated[str | None, typer.Option("--store", help="label store URL (default from config)")] = None,
) -> None:
    """Write COUNT articles aimed at a score profile with an LLM, label them with the oracle, store them as
    synthetic (the intended profile is metadata, never a label). Killed and rerun, it resumes the job."""
    from distillery_services.oracle_gateway.jobs import JobProgress
    from distillery_services.oracle_gateway.synthesize import Writer, export_job, job_id_for

    engine, spec, wanted, labeller, writer_name, writer_cfg = _open_engine(
        filter_ref, profile, count, budget, oracle, writer, config, filters_dir, store)
    job = job_id or job_id_for(spec, wanted, writer_name, labeller.name, seed)
    progress = JobProgress(total=count)
    target = ", ".join(f"{d}={lvl}" for d, lvl in wanted.items())
    try:
        w = Writer(engine, spec, wanted, writer_name, job, seed)
        _run_with_bar(w, f"{spec.ref} [{target}] by {writer_name}, labels {labeller.name}", labeller.name, count,
                      budget, workers or writer_cfg.max_concurrency, progress)
        written = None
        if out is not None:
            written = export_job(engine, spec, job, labeller.name, out)
    except (FileNotFoundError, ValueError, OSError) as exc:
        raise _fail(exc) from None
    finally:
        engine.close()
    _report(job, w.progress, progress, written, out)


def _open_engine(filter_ref: str, profile: str, count: int, budget: float, oracle: str, writer: str,
                 config: Path | None, filters_dir: Path | None, store: str | None):
    """The oracle engine, filter spec, wanted profile, labelling oracle, writer name and writer config; a bad
    flag, config, filter, profile or oracle exits 2."""
    from distillery_services.oracle_gateway.config import OracleGatewaySettings
    from distillery_services.oracle_gateway.engine import OracleEngine
    from distillery_services.oracle_gateway.synthesize import SynthesisError, parse_profile, pick_writer

    from distillery.config import ConfigError
    from distillery.filters import FilterCatalog, FilterSpecError, UnknownFilterError

    engine = None
    try:
        if count < 0:
            raise ValueError("--count must be >= 0")
        if budget < 0:
            raise ValueError("--budget must be >= 0")
        settings = OracleGatewaySettings.load(config, filters_dir=filters_dir, label_store_url=store)
        catalog = FilterCatalog.load(settings.filters_dir)
        spec = catalog.resolve(filter_ref)
        wanted = parse_profile(spec, profile)
        engine = OracleEngine(settings, catalog)
        labeller = engine.resolve_oracle(oracle, spec)
        writer_name = pick_writer(engine, writer, labeller.name if labeller.cfg.kind != "synthetic" else "")
        if labeller.cfg.kind == "synthetic" and not oracle:
            labeller = engine.resolve_oracle(writer_name, spec)
        writer_cfg = engine.resolve_oracle(writer_name, spec).cfg
    except (ConfigError, FilterSpecError, UnknownFilterError, SynthesisError, ValueError, LookupError) as exc:
        if engine is not None:
            engine.close()
        raise _fail(exc) from None
    return engine, spec, wanted, labeller, writer_name, writer_cfg


def _run_with_bar(w, title: str, labeller_name: str, count: int, budget: float, workers: int, progress) -> None:
    """Write and label under a rich progress bar on stderr, refreshed every 0.25 s."""
    from distillery_services.oracle_gateway.synthesize import run_synthesis
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from distillery.cli.progress import refreshing

    columns = [TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
               TextColumn("written {task.fields[written]}"), TextColumn("{task.fields[rate]:.1f}/s"),
               TextColumn("${task.fields[cost]:.4f}"), TextColumn("errors {task.fields[errors]}"),
               TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=err, transient=False) as bar:
        task = bar.add_task(title, total=count, written=0, rate=0.0, cost=0.0, errors=0)

        def update() -> None:
            wp = w.progress
            bar.update(task, completed=progress.done + progress.invalid + wp.failed + wp.resumed,
                       written=wp.written, rate=progress.rate, cost=progress.cost_usd + wp.cost_usd,
                       errors=progress.failed + progress.invalid + wp.failed)

        refreshing(update, lambda: run_synthesis(w, labeller_name, count, budget, workers, progress))


def _report(job: str, wp, progress, written: int | None, out: Path | None) -> None:
    """Print the job's summary; a budget stop exits 3."""
    console.print(f"job {job}: wrote {wp.written:,} articles (writer ${wp.cost_usd:.4f}, {wp.failed:,} writer "
                  f"failures, {wp.resumed:,} already done), labelled {progress.labelled:,} (oracle "
                  f"${progress.cost_usd:.4f}), already labelled {progress.cached:,}, failed {progress.failed:,} "
                  f"(dead-lettered; rerun to retry); total ${wp.cost_usd + progress.cost_usd:.4f}")
    if written is not None:
        console.print(f"wrote {written:,} labelled synthetic articles to {out}")
    if progress.stopped_reason:
        err.print(f"[bold yellow]stopped:[/] {escape(progress.stopped_reason)}")
        raise typer.Exit(EXIT_BUDGET)


def register(app: typer.Typer) -> None:
    app.command("synthesize")(synthesize)
