"""``distillery score``: label articles with an oracle — prefilter, budget, progress bar, resumable."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

console = Console()
err = Console(stderr=True)

# Exit codes of `distillery score` (documented in its --help and docs/operations.md).
EXIT_OK = 0  # every article labelled (now or earlier), prefiltered out, or a dry run
EXIT_FAILED = 1  # some articles were dead-lettered or invalid (rerun to retry the dead-lettered ones)
EXIT_USAGE = 2  # bad flags, config, filter or source
EXIT_BUDGET = 3  # stopped by a budget
EXIT_AUTH = 4  # stopped because the provider rejected the API key


def _fail(exc: BaseException) -> typer.Exit:
    err.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
    return typer.Exit(EXIT_USAGE)


def score(
    filter_ref: Annotated[str, typer.Option("--filter", help="filter to label for: name or name/vN")],
    source: Annotated[str, typer.Option("--source", help="JSONL file of articles, 'synthetic' (the synthetic "
                                        "corpus of the filter), or a Kafka topic of Article messages (with "
                                        "--bootstrap; or kafka:<topic>)")] = "synthetic",
    count: Annotated[int | None, typer.Option("--count", help="how many articles to take from the source "
                                              "(positive; default 100)")] = None,
    take_all: Annotated[bool, typer.Option("--all", help="every article of the source (a file's lines, a "
                                           "topic's messages as of now) instead of --count")] = False,
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
    """Label N articles through the prefilter and an oracle; killed and rerun, it re-pays for nothing.

    Exit codes:
    0 every article labelled (or already labelled, or prefiltered out);
    1 some article dead-lettered or invalid (a rerun retries them);
    2 bad flags, config, filter or source;
    3 stopped by a budget;
    4 stopped because the provider rejected the API key.
    """
    from distillery_services.oracle_gateway.jobs import job_id_for

    from distillery.cli.sources import iter_source

    settings, engine, spec, oracle_name, n = _open_engine(filter_ref, count, take_all, articles, oracle, config,
                                                          filters_dir, store)
    job = job_id or job_id_for(spec, f"{source}:{seed}:{n}", oracle_name)
    try:
        source_iter = iter_source(source, spec, n, seed, bootstrap or settings.kafka_bootstrap)
        outcome = _label(engine, spec, oracle_name, job, n, source_iter, no_prefilter, dry_run, batch, workers,
                         budget)
    except (FileNotFoundError, ValueError, ConnectionError) as exc:
        raise _fail(exc) from None
    finally:
        engine.close()
    if outcome is not None:
        _report(job, *outcome, budget)


def _label(engine, spec, oracle_name: str, job: str, n: int, source_iter, no_prefilter: bool, dry_run: bool,
           batch: bool, workers: int | None, budget: float):
    """Label the source (or, on a dry run, print the estimate and return None): (progress, USD paid this run,
    USD the job has spent in all)."""
    from distillery_services.oracle_gateway.jobs import JobProgress
    from distillery_services.oracle_gateway.jobs import dry_run as estimate

    from distillery.cli.sources import prefilter_for

    passes = None if no_prefilter else prefilter_for(spec)
    if dry_run:
        est = estimate(engine, spec, (a for a in source_iter if passes is None or passes(a)), oracle_name)
        console.print(f"[bold]dry run[/] {spec.ref} with oracle {oracle_name}: {est['articles']:,} articles to "
                      f"label ({est['already_labelled']:,} already labelled), ~{est['input_tokens']:,} input + "
                      f"~{est['output_tokens']:,} output tokens, estimated ${est['cost_usd']:.4f}")
        return None
    cfg = engine.resolve_oracle(oracle_name, spec).cfg
    spent_before = engine.store.spent(None, job)
    progress = JobProgress(total=n)

    def label() -> None:
        if batch or cfg.batch:
            from distillery_services.oracle_gateway.batch import run_batch_job

            run_batch_job(engine, spec, source_iter, oracle_name, job, budget, passes=passes,
                          progress=progress)
        else:
            from distillery_services.oracle_gateway.jobs import run_job

            run_job(engine, spec, source_iter, oracle_name, job, workers or cfg.max_concurrency, budget,
                    passes, progress)

    _with_progress_bar(f"{spec.ref} via {oracle_name}", f"score {spec.ref}", n, progress, label)
    # Settled spend from the cost ledger (every billed call, also those of dead-lettered articles), read
    # after every request in flight has finished.
    paid = engine.store.spent(None, job) - spent_before
    return progress, paid, spent_before + paid


def _open_engine(filter_ref: str, count: int | None, take_all: bool, articles: int | None, oracle: str,
                 config: Path | None, filters_dir: Path | None, store: str | None):
    """Settings, oracle engine, filter spec, oracle name and article count (0: the whole source); a bad flag,
    config, filter or oracle exits 2."""
    from distillery_services.oracle_gateway.config import OracleGatewaySettings
    from distillery_services.oracle_gateway.engine import OracleEngine

    from distillery.config import DEFAULT_FILTERS_DIR, ConfigError
    from distillery.filters import FilterSpecError, UnknownFilterError
    from distillery.filters.search import discover

    n = count if count is not None else articles
    try:
        overrides = {"filters_dir": filters_dir, "label_store_url": store}
        settings = OracleGatewaySettings.load(config, **overrides)
        # ./filters, then --filters-dir (or a configured folder), then the shipped examples.
        configured = filters_dir or (settings.filters_dir if settings.filters_dir != DEFAULT_FILTERS_DIR else None)
        catalog = discover([configured])
        spec = catalog.resolve(filter_ref)
        if n is not None and n <= 0:
            raise ValueError(f"--count must be a positive number of articles, not {n} (--all takes every "
                             "article of the source)")
        if take_all and n is not None:
            raise ValueError("give either --count or --all, not both")
        n = 0 if take_all else (n if n is not None else 100)  # 0: no limit, for iter_source
        engine = OracleEngine(settings, catalog)
        oracle_name = engine.resolve_oracle(oracle, spec).name
    except (ConfigError, FilterSpecError, UnknownFilterError, ValueError, LookupError) as exc:
        raise _fail(exc) from None
    return settings, engine, spec, oracle_name, n


def _with_progress_bar(description: str, log_name: str, n: int, progress, work) -> None:
    """Run ``work()`` under a rich progress bar on stderr that a thread refreshes from ``progress`` every 0.25 s."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from distillery.cli.progress import LineProgress, refreshing

    columns = [TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}" if n else "{task.completed}"),
               TextColumn("{task.fields[rate]:.1f}/s"), TextColumn("${task.fields[cost]:.4f}"),
               TextColumn("cached {task.fields[cached]} errors {task.fields[errors]} "
                          "prefiltered {task.fields[prefiltered]}"),
               TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=err, transient=False) as bar:
        task = bar.add_task(description, total=n or None, rate=0.0, cost=0.0, cached=0, errors=0, prefiltered=0)

        # A log file (stderr not a terminal) sees rich's bar only at the end: a line every N s instead.
        lines = None if err.is_terminal else LineProgress(err, log_name)

        def update_bar() -> int:
            done = progress.done + progress.prefiltered + progress.invalid
            bar.update(task, completed=done,
                       rate=progress.rate, cost=progress.cost_usd, cached=progress.cached,
                       errors=progress.failed + progress.invalid, prefiltered=progress.prefiltered)
            return done

        def refresh() -> None:
            done = update_bar()
            if lines is not None:
                lines.update(done / n if n else 0.0,
                             f"labelling: {done:,}{f'/{n:,}' if n else ''} articles, {progress.rate:.1f}/s, "
                             f"${progress.cost_usd:.4f}, errors {progress.failed + progress.invalid}")

        refreshing(refresh, work, final=update_bar)


def _report(job: str, progress, paid: float, job_total: float, budget: float) -> None:
    """Print the job's summary; a stop (auth, budget) or a failed article becomes the documented exit code."""
    console.print(f"job {job}: labelled {progress.labelled:,} (paid ${paid:.4f} this run, job total "
                  f"${job_total:.4f}), already labelled {progress.cached:,}, prefiltered out {progress.prefiltered:,}, "
                  f"failed {progress.failed:,} (dead-lettered; rerun to retry), invalid {progress.invalid:,}")
    if progress.stop_kind == "auth":
        err.print(f"[bold red]stopped:[/] {escape(progress.stopped_reason)}", soft_wrap=True)
        raise typer.Exit(EXIT_AUTH)
    if progress.stopped_reason:
        limit = f" of ${budget:.4f}" if budget > 0 else ""
        err.print(f"[bold yellow]stopped:[/] {escape(progress.stopped_reason)}. Settled spend of job {job}: "
                  f"${job_total:.4f}{limit}", soft_wrap=True)
        raise typer.Exit(EXIT_BUDGET)
    if progress.failed or progress.invalid:
        raise typer.Exit(EXIT_FAILED)


def register(app: typer.Typer) -> None:
    app.command("score")(score)
