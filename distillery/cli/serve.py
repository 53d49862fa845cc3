"""`distillery serve SERVICE` and `distillery up`."""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from distillery.runtime.supervisor import SERVICES

console = Console()


def register(app: typer.Typer) -> None:
    @app.command(
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
        help="Run one service in the foreground: prefilter, oracle_gateway, trainer or inference. "
        "Flags after the name go to the service (try `distillery serve prefilter --help`).",
    )
    def serve(ctx: typer.Context, service: str = typer.Argument(..., help="Service to run")) -> None:
        name = service.replace("-", "_")
        if name == "oracle":
            name = "oracle_gateway"
        if name not in SERVICES:
            raise typer.BadParameter(f"unknown service {service!r}; choose one of {', '.join(SERVICES)}")
        # Replace this process: signals reach the service directly and exit codes pass through.
        os.execv(sys.executable, [sys.executable, "-m", SERVICES[name], *ctx.args])

    @app.command(help="Start all four services locally and keep them running until Ctrl-C.")
    def up(
        state_dir: Path = typer.Option(Path(".distillery/up"), help="Local state (SQLite label store, registry)"),
        filter: list[str] = typer.Option([], "--filter", help="Load only these filters (repeatable)"),
    ) -> None:
        from distillery.runtime.supervisor import Stack

        state_dir.mkdir(parents=True, exist_ok=True)
        args = ["--state-dir", str(state_dir)] + [a for f in filter for a in ("--filter", f)]
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        with Stack() as stack:
            for name in SERVICES:
                with console.status(f"starting {name}..."):
                    stack.start(name, args=args, log_dir=state_dir / "logs")
            table = Table(title="LLM Distillery is up")
            for col in ("service", "gRPC", "metrics", "log"):
                table.add_column(col)
            for name, svc in stack.services.items():
                table.add_row(name, svc.address, f"http://127.0.0.1:{svc.metrics_port}/metrics", str(svc.log_path))
            console.print(table)
            console.print("Ctrl-C stops everything.")
            try:
                while not stop.is_set():
                    for name, svc in stack.services.items():
                        if svc.process.poll() is not None:
                            console.print(f"[red]{name} exited ({svc.process.returncode}); see {svc.log_path}[/]")
                            stop.set()
                    stop.wait(1.0)
            except KeyboardInterrupt:
                pass
            console.print("stopping...")
