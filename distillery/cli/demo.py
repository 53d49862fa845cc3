"""`distillery demo`: the main job on the embedded default, end to end through the real services."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

console = Console()


def _progress_bar() -> tuple[Progress, callable]:
    bar = Progress(TextColumn("[bold]{task.description:<44}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), console=console)
    tasks: dict[str, int] = {}

    def progress(step: str, done: int, total: int) -> None:
        key = step.split(" (")[0]
        if key not in tasks:
            tasks[key] = bar.add_task(step, total=total)
        bar.update(tasks[key], completed=done, total=total, description=step)

    return bar, progress


def _print_grpc(result) -> None:
    from distillery.demo import summary_rows

    table = Table(title=f"LLM Distillery demo (gRPC path) — {result.filter}")
    table.add_column("")
    table.add_column("value", justify="right")
    for key, value in summary_rows(result):
        table.add_row(key, value)
    console.print(table)
    dims = Table(title="Held-out MAE per dimension (student vs oracle; lower is better)")
    for col in ("dimension", "student", "mean predictor"):
        dims.add_column(col, justify="right" if col != "dimension" else "left")
    for d, m in result.dimension_mae.items():
        dims.add_row(d, f"{m:.3f}", f"{result.mean_predictor_mae[d]:.3f}")
    console.print(dims)


def _print_stream(result) -> None:
    from distillery.bus import topics as t

    table = Table(title=f"LLM Distillery demo (streaming) — {result.filter}")
    table.add_column("")
    table.add_column("value", justify="right")
    counts = result.topic_counts
    table.add_row("articles ingested (articles.raw)", str(counts.get(t.ARTICLES_RAW, 0)))
    table.add_row("prefilter pass rate", f"{result.pass_rate:.1%} ({counts.get(t.ARTICLES_CANDIDATES, 0)} candidates,"
                  f" {counts.get(t.ARTICLES_REJECTED, 0)} rejected)")
    table.add_row("articles.scored", str(counts.get(t.ARTICLES_SCORED, 0)))
    table.add_row("oracle.requests / oracle.labels",
                  f"{counts.get(t.ORACLE_REQUESTS, 0)} / {counts.get(t.ORACLE_LABELS, 0)}")
    table.add_row("labels by reason", ", ".join(f"{k} {v}" for k, v in sorted(result.labels_by_reason.items())))
    table.add_row("oracle cost", f"${result.cost_usd:.4f}")
    if result.student_scored:
        table.add_row("oracle calls saved by the students",
                      f"{result.oracle_calls_saved} of {result.student_scored} streamed articles "
                      f"({result.oracle_calls_saved / result.student_scored:.1%}); {result.sent_to_oracle} sent back "
                      "(uncertain + audit)")
    dlq = sum(v for k, v in counts.items() if k.endswith(".dlq"))
    table.add_row("dead letters", str(dlq))
    for i, r in enumerate(result.rounds, 1):
        detail = f"{r.version} test MAE {r.test_mae:.3f}" if r.test_mae is not None else r.version
        if r.compared_with is not None:
            detail += f" vs served {r.compared_with:.3f}"
        table.add_row(f"training round {i}", detail + (" [promoted]" if r.promoted else ""))
    before = sum(result.mae_before.values()) / len(result.mae_before)
    after = sum(result.mae_after.values()) / len(result.mae_after)
    table.add_row("held-out MAE before / after the round", f"{before:.3f} / {after:.3f}")
    table.add_row("held-out MAE, mean predictor", f"{result.mean_predictor_mae:.3f}")
    table.add_row("end to end (raw -> scored)", f"{result.articles_per_second:.1f} articles/s")
    table.add_row("end-to-end latency p50 / p99", f"{result.latency_p50_ms:.0f} / {result.latency_p99_ms:.0f} ms")
    console.print(table)
    dims = Table(title="Held-out MAE per dimension, before and after the active-learning round")
    for col in ("dimension", "before", "after"):
        dims.add_column(col, justify="right" if col != "dimension" else "left")
    for d in result.mae_before:
        dims.add_row(d, f"{result.mae_before[d]:.3f}", f"{result.mae_after[d]:.3f}")
    console.print(dims)


def register(app: typer.Typer) -> None:
    @app.command(help="Run the main job on the embedded default: broker + the four services as local processes, "
                 "a synthetic corpus streamed raw -> prefilter -> oracle -> trainer -> inference -> scored, and one "
                 "active-learning round. --grpc drives the services directly over gRPC instead of Kafka.")
    def demo(
        filter: str = typer.Option("uplifting", help="Filter to demonstrate (name or name/vN)"),
        articles: int = typer.Option(0, min=0, help="Synthetic articles to generate (0: 1200 streaming, 1000 gRPC)"),
        student: str = typer.Option("probe", help="Student kind: probe or lexical"),
        seed: int = typer.Option(7, help="Seed for the corpus, splits and training"),
        grpc: bool = typer.Option(False, "--grpc", help="The direct gRPC path (no broker) instead of streaming"),
        state_dir: Path = typer.Option(Path(".distillery/demo"), help="Where the demo keeps its state and logs"),
        json_out: Path = typer.Option(None, "--json", help="Also write the summary as JSON here"),
    ) -> None:
        started = time.perf_counter()
        bar, progress = _progress_bar()
        try:
            with bar:
                if grpc:
                    from distillery.demo import run_demo

                    result = run_demo(filter, articles or 1000, student_kind=student, seed=seed,
                                      state_dir=state_dir, progress=progress)
                else:
                    from distillery.stream_demo import run_stream_demo

                    result = run_stream_demo(filter, articles or 1200, seed=seed, student_kind=student,
                                             state_dir=state_dir, progress=progress)
        except (RuntimeError, TimeoutError) as exc:
            console.print(f"[bold red]demo failed:[/] {exc}\nlogs: {state_dir / 'logs'}")
            raise typer.Exit(1) from None
        (_print_grpc if grpc else _print_stream)(result)
        if json_out:
            import dataclasses
            import json

            json_out.write_text(json.dumps(dataclasses.asdict(result), indent=2, default=str))
        console.print(f"done in {time.perf_counter() - started:.0f} s; state and logs in {state_dir}")
