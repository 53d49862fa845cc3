"""`distillery topics ensure` (create/grow the pipeline's topics) and `distillery topics list`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

console = Console()
err = Console(stderr=True)

topics_app = typer.Typer(help="Kafka topics of the pipeline: provision them (partitions, replication, retention).",
                         no_args_is_help=True)


def _settings(config: Path | None, **overrides):
    from distillery.bus.provision import TopicsSettings

    return TopicsSettings.load(config, **overrides)


@topics_app.command("ensure")
def ensure_cmd(
    config: Annotated[Path | None, typer.Option(help="YAML config (section topics:, plus the kafka_* settings).")]
    = None,
    bootstrap: Annotated[str | None, typer.Option(help="Kafka bootstrap servers (or DISTILLERY_KAFKA_BOOTSTRAP).")]
    = None,
    partitions: Annotated[int | None, typer.Option(help="Partitions of the stream topics and their DLQs.")] = None,
    replication_factor: Annotated[int | None, typer.Option(help="Replicas of each partition.")] = None,
    retention_hours: Annotated[float | None, typer.Option(help="retention.ms of the topics, in hours.")] = None,
    prefix: Annotated[str | None, typer.Option(help="Namespace prepended to every topic name.")] = None,
) -> None:
    """Create the missing topics and grow those with fewer partitions than configured (idempotent; never
    shrinks or deletes). Exits non-zero, naming the topic, when one cannot be brought to its shape."""
    from distillery.bus.clients import configure_from
    from distillery.bus.provision import ProvisionError, ensure_from_settings

    settings = _settings(config, kafka_bootstrap=bootstrap, partitions=partitions,
                         replication_factor=replication_factor, retention_hours=retention_hours, prefix=prefix)
    configure_from(settings)
    try:
        report = ensure_from_settings(settings)
    except (ProvisionError, ConnectionError) as exc:
        err.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(3) from None
    for name in report.created:
        console.print(f"created   {name}")
    for name, (before, after) in report.grown.items():
        console.print(f"grown     {name} ({before} -> {after} partitions)")
    console.print(f"{len(report.created)} created, {len(report.grown)} grown, {len(report.unchanged)} unchanged "
                  f"on {settings.kafka_bootstrap}")


@topics_app.command("list")
def list_cmd(
    config: Annotated[Path | None, typer.Option(help="YAML config (section topics:).")] = None,
    bootstrap: Annotated[str | None, typer.Option(help="Kafka bootstrap servers.")] = None,
) -> None:
    """The pipeline's topics with their partitions on the broker (missing ones marked)."""
    from distillery.bus.clients import configure_from
    from distillery.bus.provision import admin_client, partition_counts, planned_topics

    settings = _settings(config, kafka_bootstrap=bootstrap)
    configure_from(settings)
    if not settings.kafka_bootstrap:
        raise typer.BadParameter("no Kafka bootstrap: pass --bootstrap or set DISTILLERY_KAFKA_BOOTSTRAP")
    try:
        admin = admin_client(settings.kafka_bootstrap, timeout=settings.startup_retry_seconds)
    except ConnectionError as exc:
        err.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(3) from None
    try:
        specs = planned_topics(settings)
        counts = partition_counts(admin, [s.name for s in specs])
    finally:
        admin.close()
    for spec in specs:
        have = counts.get(spec.name)
        state = "missing" if have is None else f"{have} partitions"
        console.print(f"{spec.name:32} {state:16} (configured {spec.partitions})")


def register(app: typer.Typer) -> None:
    app.add_typer(topics_app, name="topics")
