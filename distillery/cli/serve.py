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


_SERVE_HELP = ("Run one service in the foreground: prefilter, oracle_gateway, trainer or inference. "
               "Flags after the name go to the service (`distillery serve prefilter --help` lists them).")


def serve(ctx: typer.Context, service: str = typer.Argument("", help="Service to run")) -> None:
    if not service or service in ("--help", "-h"):
        typer.echo(ctx.get_help())
        typer.echo(f"\nservices: {', '.join(SERVICES)}")
        raise typer.Exit(0 if service else 2)
    name = service.replace("-", "_")
    if name == "oracle":
        name = "oracle_gateway"
    if name not in SERVICES:
        raise typer.BadParameter(f"unknown service {service!r}; choose one of {', '.join(SERVICES)}")
    # Replace this process: signals reach the service directly and exit codes pass through.
    os.execv(sys.executable, [sys.executable, "-m", SERVICES[name], *ctx.args])


_UP_HELP = ("Start the embedded broker and all four services locally, wired by Kafka topics, and keep "
            "them running until Ctrl-C (gRPC clients and `distillery ingest` can use them).")


def up(
    state_dir: Path = typer.Option(Path(".distillery/up"), help="Local state (SQLite label store, registry)"),
    filter: list[str] = typer.Option([], "--filter", help="Load only these filters (repeatable)"),
    kafka: bool = typer.Option(True, help="Start the embedded Kafka-protocol broker and the stages"),
    bootstrap: str = typer.Option("", help="Use this Kafka instead of the embedded broker"),
    auto_retrain: bool = typer.Option(True, help="Let the trainer train and promote as labels arrive"),
) -> None:
    from distillery.bus import EmbeddedBroker
    from distillery.runtime.supervisor import Stack

    (state_dir / "logs").mkdir(parents=True, exist_ok=True)
    broker = None
    if kafka and not bootstrap:
        with console.status("starting the embedded broker..."):
            broker = EmbeddedBroker(log_dir=state_dir / "logs").start()
        bootstrap = broker.bootstrap
    config = _write_config(state_dir, bootstrap, auto_retrain)
    args = ["--config", str(config), "--state-dir", str(state_dir)]
    args += [a for f in filter for a in ("--filter", f)]
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    # Ctrl-C must stop everything even when this process inherited SIGINT as ignored (a shell script's
    # background job does): without this, `up &` in a script could never be stopped with SIGINT.
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        with Stack() as stack:
            for name in SERVICES:
                with console.status(f"starting {name}..."):
                    stack.start(name, args=args, log_dir=state_dir / "logs")
            _print_stack(stack, bootstrap, broker)
            _watch(stack, broker, stop)
            console.print("stopping...")
    finally:
        if broker is not None:
            broker.stop()


def _write_config(state_dir: Path, bootstrap: str, auto_retrain: bool) -> Path:
    """One config file for the four services: the Kafka bootstrap for each, the trainer's retrain loop."""
    import yaml

    config = state_dir / "distillery.yaml"
    sections = {name: ({"kafka_bootstrap": bootstrap} if bootstrap else {}) for name in SERVICES}
    if auto_retrain:
        sections["trainer"]["retrain_enabled"] = True
    config.write_text(yaml.safe_dump(sections))
    return config


def _print_stack(stack, bootstrap: str, broker) -> None:
    """The table of what runs where (addresses, metrics, logs) and what to try next."""
    table = Table(title="LLM Distillery is up")
    for col in ("service", "gRPC", "metrics", "log"):
        table.add_column(col)
    for name, svc in stack.services.items():
        table.add_row(name, svc.address, f"http://127.0.0.1:{svc.metrics_port}/metrics", str(svc.log_path))
    if bootstrap:
        table.add_row("kafka", bootstrap, "", str(broker.log_path) if broker else "(external)")
    console.print(table)
    if bootstrap:
        console.print(f"try: distillery ingest --synthetic uplifting --bootstrap {bootstrap}")
    console.print("Ctrl-C stops everything. A service that exits is restarted (with backoff) on its "
                  "ports; the broker and its topics stay up.")


def _watch(stack, broker, stop: threading.Event) -> None:
    """Restart services that exit (the watchdog) once a second until ``stop`` is set or the broker dies."""
    from distillery.runtime.supervisor import Watchdog

    watchdog = Watchdog(stack)
    try:
        while not stop.is_set():
            for event in watchdog.check():
                console.print(f"[yellow]{event}[/]")
            if broker is not None and not broker.alive():
                console.print(f"[red]the embedded broker exited; see {broker.log_path}[/]")
                stop.set()
            stop.wait(1.0)
    except KeyboardInterrupt:
        pass


def register(app: typer.Typer) -> None:
    app.command(
        # --help is not typer's here: after a service name it must reach that service's own parser.
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
        add_help_option=False,
        help=_SERVE_HELP,
    )(serve)
    app.command(help=_UP_HELP)(up)
