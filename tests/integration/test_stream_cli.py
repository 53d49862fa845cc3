"""`distillery ingest` and `distillery tail` against a real Kafka-protocol broker."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from distillery.cli.main import app

pytestmark = pytest.mark.integration


def _count_with_confluent(bootstrap: str, topic: str, expected: int) -> dict[bytes, bytes]:
    """Read the topic with an independent client (librdkafka), not the project's consumer code."""
    import time

    from confluent_kafka import Consumer

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": topic + ".check",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    seen: dict[bytes, bytes] = {}
    deadline = time.monotonic() + 30
    try:
        while len(seen) < expected and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and not msg.error():
                seen[msg.key()] = msg.value()
    finally:
        consumer.close()
    return seen


def test_ingest_synthetic_then_tail_decodes_articles(kafka_bootstrap, kafka_prefix):
    topic = f"{kafka_prefix}articles.raw"
    runner = CliRunner()
    result = runner.invoke(app, ["ingest", "--synthetic", "uplifting", "--count", "40", "--seed", "2",
                                 "--bootstrap", kafka_bootstrap, "--topic", topic])
    assert result.exit_code == 0, result.output
    assert "published 40 articles" in result.output

    seen = _count_with_confluent(kafka_bootstrap, topic, 40)
    assert len(seen) == 40

    result = runner.invoke(app, ["tail", topic, "--bootstrap", kafka_bootstrap, "--max", "3"])
    assert result.exit_code == 0, result.output
    assert result.output.count('"title"') == 3 and '"synthetic"' in result.output


def test_ingest_jsonl_file_skips_articles_without_text(kafka_bootstrap, kafka_prefix, tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in [
        {"title": "A", "text": "body a", "url": "https://x/a"},
        {"title": "B", "text": ""},
        {"title": "C", "content": "body c"},
    ]) + "\n")
    topic = f"{kafka_prefix}articles.raw"
    result = CliRunner().invoke(app, ["ingest", "--source", str(src), "--bootstrap", kafka_bootstrap,
                                      "--topic", topic])
    assert result.exit_code == 0, result.output
    assert "published 2 articles" in result.output and "skipped 1" in result.output


def test_ingest_errors_are_clear(tmp_path, monkeypatch):
    monkeypatch.delenv("DISTILLERY_KAFKA_BOOTSTRAP", raising=False)
    runner = CliRunner()
    result = runner.invoke(app, ["ingest", "--source", str(tmp_path / "nope.jsonl")])
    assert result.exit_code == 2 and "bootstrap" in result.output
    result = runner.invoke(app, ["ingest", "--bootstrap", "127.0.0.1:1"])
    assert result.exit_code == 2 and "exactly one of" in result.output
