"""`distillery ingest` (publish articles to articles.raw) and `distillery tail` (print a topic decoded)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

console = Console()
BOOTSTRAP_ENV = "DISTILLERY_KAFKA_BOOTSTRAP"


def _bootstrap(value: str | None) -> str:
    bootstrap = value or os.environ.get(BOOTSTRAP_ENV)
    if not bootstrap:
        raise typer.BadParameter(f"no Kafka bootstrap: pass --bootstrap HOST:PORT or set {BOOTSTRAP_ENV}")
    # TLS/SASL from the shared settings (DISTILLERY_KAFKA_SECURITY_PROTOCOL, _SASL_*, _SSL_*), as the services.
    from distillery.bus.clients import configure_from
    from distillery.config import ServiceSettings

    configure_from(ServiceSettings.load(kafka_bootstrap=bootstrap))
    return bootstrap


def value_type(topic: str):
    """The protobuf class of a topic's values (ARCHITECTURE.md §4); None for dead-letter topics."""
    from distillery.bus import topics as t
    from distillery.v1 import article_pb2, events_pb2, oracle_pb2, prefilter_pb2

    base = topic.split("/")[-1]
    for name, cls in {
        t.ARTICLES_RAW: article_pb2.Article,
        t.ARTICLES_CANDIDATES: events_pb2.CandidateArticle,
        t.ARTICLES_REJECTED: prefilter_pb2.Decision,
        t.ORACLE_REQUESTS: oracle_pb2.LabelRequest,
        t.ORACLE_LABELS: oracle_pb2.OracleLabel,
        t.ARTICLES_SCORED: events_pb2.ScoredArticle,
        t.MODELS_EVENTS: events_pb2.ModelPromoted,
    }.items():
        if base == name or base.endswith("." + name):
            return cls
    return None


def iter_source_records(source: Path) -> Iterator[dict]:
    """JSONL records from a file, or from every ``*.jsonl`` file of a folder (sorted)."""
    from distillery.articles import read_jsonl

    if source.is_dir():
        files = sorted(source.glob("*.jsonl"))
        if not files:
            raise typer.BadParameter(f"{source} holds no .jsonl files")
    elif source.is_file():
        files = [source]
    else:
        raise typer.BadParameter(f"{source} does not exist")
    for path in files:
        yield from read_jsonl(path)


def _ingest_records(source: Path | None, synthetic_filter: str | None, count: int,
                    seed: int) -> tuple[Iterator[dict], int | None]:
    """The records to publish and their number when known (synthetic: ``count`` or 1000)."""
    if synthetic_filter:
        from distillery import synthetic
        from distillery.filters.search import discover

        spec = discover().resolve(synthetic_filter)
        return synthetic.generate(spec, count or 1000, seed=seed), count or 1000
    return iter_source_records(source), count or None


_INGEST_HELP = "Publish articles (JSONL file or folder; or a synthetic corpus) to articles.raw."


def ingest(
    source: Path = typer.Option(None, help="JSONL file or folder of JSONL files"),
    synthetic_filter: str = typer.Option(None, "--synthetic", help="Generate a synthetic corpus for FILTER"),
    count: int = typer.Option(0, min=0, help="Stop after N articles (0: all; synthetic default 1000)"),
    bootstrap: str = typer.Option(None, help=f"Kafka bootstrap servers (env {BOOTSTRAP_ENV})"),
    topic: str = typer.Option("articles.raw", help="Topic to publish to"),
    seed: int = typer.Option(0, help="Seed of the synthetic corpus"),
) -> None:
    from distillery.bus import ensure_topics, make_headers, make_producer
    from distillery.messages import from_record

    if bool(source) == bool(synthetic_filter):
        raise typer.BadParameter("give exactly one of --source PATH or --synthetic FILTER")
    servers = _bootstrap(bootstrap)
    records, total = _ingest_records(source, synthetic_filter, count, seed)
    ensure_topics(servers, [topic])
    producer = make_producer(servers, client_id="distillery-ingest")
    sent, skipped, futures = 0, 0, []
    started = time.perf_counter()
    with Progress(TextColumn("[bold]ingest"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.fields[rate]}"), console=console) as bar:
        task = bar.add_task("ingest", total=total, rate="")
        for record in records:
            if count and sent >= count:
                break
            article = from_record(record)
            if not article.title.strip() or not article.text.strip():
                skipped += 1
                continue
            futures.append(producer.send(topic, key=article.id.encode(), value=article.SerializeToString(),
                                         headers=make_headers()))
            sent += 1
            if sent % 200 == 0:
                elapsed = time.perf_counter() - started
                bar.update(task, completed=sent, rate=f"{sent / elapsed:,.0f} articles/s")
        producer.flush(60)
        for future in futures:
            future.get(timeout=60)  # raises if any article was not acknowledged
        bar.update(task, completed=sent, total=sent)
    producer.close()
    elapsed = time.perf_counter() - started
    console.print(f"published {sent} articles to {topic} in {elapsed:.1f} s"
                  + (f"; skipped {skipped} without title or text" if skipped else ""))


_TAIL_HELP = "Print a topic's records decoded (protobuf values as JSON; DLQ records with headers)."


def tail(
    topic: str = typer.Argument(..., help="Topic, e.g. articles.scored or articles.raw.dlq"),
    bootstrap: str = typer.Option(None, help=f"Kafka bootstrap servers (env {BOOTSTRAP_ENV})"),
    from_beginning: bool = typer.Option(True, help="Start at the earliest offset"),
    max_records: int = typer.Option(0, "--max", min=0, help="Stop after N records (0: follow)"),
    idle_seconds: float = typer.Option(0, help="Stop after this long without records (0: never)"),
) -> None:
    from google.protobuf.json_format import MessageToDict
    from kafka import KafkaConsumer

    servers = _bootstrap(bootstrap)
    cls = value_type(topic)
    consumer = KafkaConsumer(
        topic, bootstrap_servers=servers, group_id=None, enable_auto_commit=False,
        auto_offset_reset="earliest" if from_beginning else "latest", consumer_timeout_ms=500,
    )
    shown, last = 0, time.monotonic()
    try:
        while not max_records or shown < max_records:
            got = False
            for record in consumer:
                got = True
                out: dict = {"partition": record.partition, "offset": record.offset,
                             "key": (record.key or b"").decode("utf-8", "replace")}
                headers = {k: (v or b"").decode("utf-8", "replace") for k, v in record.headers or []}
                if headers:
                    out["headers"] = headers
                if cls is not None:
                    try:
                        out["value"] = MessageToDict(cls.FromString(record.value or b""))
                    except Exception as exc:  # noqa: BLE001 - show undecodable records instead of dying
                        out["undecodable"] = f"{type(exc).__name__}: {exc}"
                else:
                    out["value_bytes"] = len(record.value or b"")
                console.print_json(json.dumps(out, ensure_ascii=False))
                shown += 1
                if max_records and shown >= max_records:
                    break
            if got:
                last = time.monotonic()
            elif idle_seconds and time.monotonic() - last > idle_seconds:
                break
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()


def register(app: typer.Typer) -> None:
    app.command(help=_INGEST_HELP)(ingest)
    app.command(help=_TAIL_HELP)(tail)
