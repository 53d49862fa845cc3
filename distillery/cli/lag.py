"""`distillery lag-exporter`: consumer lag of the stages' groups, read from the broker, on /metrics."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

err = Console(stderr=True)


def lag_exporter(
    config: Annotated[Path | None, typer.Option(help="YAML config (section lag_exporter:, plus kafka_* settings).")]
    = None,
    bootstrap: Annotated[str | None, typer.Option(help="Kafka bootstrap servers (or DISTILLERY_KAFKA_BOOTSTRAP).")]
    = None,
    metrics_port: Annotated[int | None, typer.Option(help="Prometheus /metrics port (default 9105).")] = None,
    host: Annotated[str | None, typer.Option(help="Interface of /metrics (0.0.0.0 in containers).")] = None,
    interval_seconds: Annotated[float | None, typer.Option(help="Seconds between two reads.")] = None,
) -> None:
    """Export distillery_trainer_consumer_group_lag_messages{group,topic,partition} (committed offsets against
    partition ends, from the broker) until SIGTERM. The HPAs scale the stages on it."""
    from prometheus_client import start_http_server

    from distillery import logs
    from distillery.bus.clients import configure_from
    from distillery.bus.lag import LagExporter, LagExporterSettings
    from distillery.rpc.dependencies import DependencyError, wait_for_dependencies

    settings = LagExporterSettings.load(config, kafka_bootstrap=bootstrap, metrics_port=metrics_port, host=host,
                                        interval_seconds=interval_seconds)
    if not settings.kafka_bootstrap:
        raise typer.BadParameter("no Kafka bootstrap: pass --bootstrap or set DISTILLERY_KAFKA_BOOTSTRAP")
    logs.configure("lag-exporter", settings.log_level, settings.log_json)
    configure_from(settings)
    try:
        wait_for_dependencies(settings, ("kafka",))
    except DependencyError as exc:
        err.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(3) from None
    httpd, _ = start_http_server(settings.metrics_port, addr=settings.host)
    exporter = LagExporter(settings).start()
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()
    exporter.stop()
    httpd.shutdown()


def register(app: typer.Typer) -> None:
    app.command("lag-exporter")(lag_exporter)
