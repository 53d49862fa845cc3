"""``distillery score``: label articles with an oracle — prefilter, budget, progress bar, resumable."""

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


def score(
    filter_ref: Annotated[str, typer.Option("--filter", help="filter to label for: name or name/vN")],
    source: Annotated[str, typer.Option("--source", help="JSONL file of articles, 'synthetic' (the synthetic "
                                        "corpus of the filter), or a Kafka topic of Article messages (with "
                                        "--bootstrap; or kafka:<topic>)")] = "synthetic",
    count: Annotated[int | None, typer.Option("--count", help="how many articles to take from the source")] = None,
    articles: Annotated[int | None, typer.Option("--articles", help="same as --count (the first version's "
                                                 "flag)")] = None,
    oracle: Annotated[str, typer.Option("--oracle", help="configured oracle name (default: config, then the "
                                        "filter's oracle.default)")] = "",
    budget: Annotated[float, typer.Option("--budget", help="stop before this job would spend more USD (0: no "
                                          "job budget)")] = 0.0,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="estimate tokens and cost; call nothing")] = False,
    workers: Annotated[int | None, typer.Option("--workers", help="requests in flight (default: the oracle's "
                                                "max_concurrency)")] = None,
    job_id: Annotated[str | None, typer.Option("--job-id", help="job id (default: derived from filter, source "
                                               "and oracle, so a rerun resumes the same job)")] = None,
    no_prefilter: Annotated[bool, typer.Option("--no-prefilter", help="send every article to the oracle")] = False,
    batch: Annotated[bool, typer.Option("--batch", help="use the provider's batch API (OpenAI/Anthropic: half "
                                        "price, results within hours; also on when the oracle sets batch: true)")]
    = False,
    seed: Annotated[int, typer.Option("--seed", help="seed of the synthetic corpus")] = 0,
    config: Annotated[Path | None, typer.Option("--config", help="YAML config (oracle_gateway: section)")] = None,
    filters_dir: Annotated[Path | None, typer.Option("--filters-dir", help="folder of filter packages")] = None,
    store: Annotated[str | None, typer.Option("--store", help="label store URL (default from config)")] = None,
    bootstrap: Annotated[str, typer.Option("--bootstrap", envvar="DISTILLERY_KAFKA_BOOTSTRAP",
                                           help="Kafka bootstrap servers, to read --source as a topic (default: "
                                           "the gateway's kafka_bootstrap)")] = "",
) -> None:
    """Label N articles through the prefilter and an oracle; killed and rerun, it re-pays for nothing."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from distillery.config import ConfigError
    from distillery.filters import FilterCatalog, FilterSpecError, UnknownFilterError
    from services.oracle_gateway.config import OracleGatewaySettings
    from services.oracle_gateway.engine import OracleEngine
    from services.oracle_gateway.jobs import JobProgress, iter_source, job_id_for, prefilter_for, run_job
    from services.oracle_gateway.jobs import dry_run as estimate

    n = count if count is not None else articles
    try:
        overrides = {"filters_dir": filters_dir, "label_store": store}
        settings = OracleGatewaySettings.load(config, **overrides)
        catalog = FilterCatalog.load(settings.filters_dir)
        spec = catalog.resolve(filter_ref)
        n = n if n is not None else 100
        if n < 0:
            raise ValueError("--count must be >= 0")
        engine = OracleEngine(settings, catalog)
        oracle_name = engine.resolve_oracle(oracle, spec).name
    except (ConfigError, FilterSpecError, UnknownFilterError, ValueError, LookupError) as exc:
        raise _fail(exc) from None
    job = job_id or job_id_for(spec, f"{source}:{seed}:{n}", oracle_name)
    try:
        passes = None if no_prefilter else prefilter_for(spec)
        source_iter = iter_source(source, spec, n, seed, bootstrap or settings.kafka_bootstrap)
        if dry_run:
            est = estimate(engine, spec, (a for a in source_iter if passes is None or passes(a)), oracle_name)
            console.print(f"[bold]dry run[/] {spec.ref} with oracle {oracle_name}: {est['articles']:,} articles to "
                          f"label ({est['already_labelled']:,} already labelled), ~{est['input_tokens']:,} input + "
                          f"~{est['output_tokens']:,} output tokens, estimated ${est['cost_usd']:.4f}")
            return
        cfg = engine.resolve_oracle(oracle_name, spec).cfg
        progress = JobProgress(total=n)
        columns = [TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                   TextColumn("{task.fields[rate]:.1f}/s"), TextColumn("${task.fields[cost]:.4f}"),
                   TextColumn("cached {task.fields[cached]} errors {task.fields[errors]} "
                              "prefiltered {task.fields[prefiltered]}"),
                   TimeElapsedColumn(), TimeRemainingColumn()]
        import threading

        finished = threading.Event()
        with Progress(*columns, console=err, transient=False) as bar:
            task = bar.add_task(f"{spec.ref} via {oracle_name}", total=n, rate=0.0, cost=0.0, cached=0, errors=0,
                                prefiltered=0)

            def refresh() -> None:
                while not finished.wait(0.25):
                    bar.update(task, completed=progress.done + progress.prefiltered + progress.invalid,
                               rate=progress.rate, cost=progress.cost_usd, cached=progress.cached,
                               errors=progress.failed + progress.invalid, prefiltered=progress.prefiltered)

            ticker = threading.Thread(target=refresh, daemon=True)
            ticker.start()
            try:
                if batch or cfg.batch:
                    from services.oracle_gateway.batch import run_batch_job

                    run_batch_job(engine, spec, source_iter, oracle_name, job, budget, passes=passes,
                                  progress=progress)
                else:
                    run_job(engine, spec, source_iter, oracle_name, job, workers or cfg.max_concurrency, budget,
                            passes, progress)
            finally:
                finished.set()
                ticker.join()
                bar.update(task, completed=progress.done + progress.prefiltered + progress.invalid,
                           rate=progress.rate, cost=progress.cost_usd, cached=progress.cached,
                           errors=progress.failed + progress.invalid, prefiltered=progress.prefiltered)
    except (FileNotFoundError, ValueError, ConnectionError) as exc:
        raise _fail(exc) from None
    finally:
        engine.close()
    console.print(f"job {job}: labelled {progress.labelled:,} (paid ${progress.cost_usd:.4f}), "
                  f"already labelled {progress.cached:,}, prefiltered out {progress.prefiltered:,}, "
                  f"failed {progress.failed:,} (dead-lettered; rerun to retry), invalid {progress.invalid:,}")
    if progress.stopped_reason:
        err.print(f"[bold yellow]stopped:[/] {escape(progress.stopped_reason)}")
        raise typer.Exit(EXIT_BUDGET)


def register(app: typer.Typer) -> None:
    app.command("score")(score)
