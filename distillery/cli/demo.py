"""`distillery demo`: the main job on the embedded default, end to end through four real services."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

console = Console()


def register(app: typer.Typer) -> None:
    @app.command(help="Run the pipeline on a synthetic corpus through the four services as local processes: "
                 "prefilter -> oracle labels -> train -> promote -> score held-out articles.")
    def demo(
        filter: str = typer.Option("uplifting", help="Filter to demonstrate (name or name/vN)"),
        articles: int = typer.Option(1000, min=50, help="Synthetic articles to generate"),
        student: str = typer.Option("probe", help="Student kind: probe or lexical"),
        seed: int = typer.Option(7, help="Seed for the corpus, splits and training"),
        state_dir: Path = typer.Option(Path(".distillery/demo"), help="Where the demo keeps its state and logs"),
    ) -> None:
        from distillery.demo import DemoError, run_demo, summary_rows

        started = time.perf_counter()
        with Progress(
            TextColumn("[bold]{task.description:<34}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=console,
        ) as bar:
            tasks: dict[str, int] = {}

            def progress(step: str, done: int, total: int) -> None:
                key = step.split(" (")[0]
                if key not in tasks:
                    tasks[key] = bar.add_task(step, total=total)
                bar.update(tasks[key], completed=done, total=total, description=step)

            try:
                result = run_demo(filter, articles, student_kind=student, seed=seed, state_dir=state_dir,
                                  progress=progress)
            except DemoError as exc:
                console.print(f"[bold red]demo failed:[/] {exc}")
                raise typer.Exit(1) from None
        table = Table(title=f"LLM Distillery demo — {result.filter}")
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
        console.print(f"done in {time.perf_counter() - started:.0f} s; state and logs in {state_dir}")
