"""`distillery synthesize` and `distillery score --source <topic>` as real processes (fake paid provider over
loopback HTTP, real Kafka broker)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from distillery.store import LabelStore

pytestmark = pytest.mark.integration
SECRET = "sk-synth-SECRET-abcdef0123456789"


@pytest.fixture()
def fake():
    from distillery.testing.fake_provider import FakeLLMConfig, FakeLLMServer

    with FakeLLMServer(FakeLLMConfig(api_key=SECRET)) as srv:
        yield srv


def _config(tmp_path, fake=None):
    oracles = {}
    if fake is not None:
        oracles["fake"] = {"kind": "openai", "model": "gpt-4o-mini", "base_url": fake.url + "/v1",
                           "api_key_env": "FAKE_KEY", "max_concurrency": 4}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"oracle_gateway": {"state_dir": str(tmp_path / "state"), "oracles": oracles}}))
    return path


def _cli(tmp_path, fake, *args):
    cmd = [sys.executable, "-m", "distillery.cli.main", *args, "--config", str(_config(tmp_path, fake))]
    env = {**os.environ, "FAKE_KEY": SECRET}
    env.pop("DISTILLERY_KAFKA_BOOTSTRAP", None)
    return subprocess.run(cmd, check=False, env=env, capture_output=True, text=True, timeout=120)


def test_synthesize_writes_labels_and_exports(tmp_path, fake, catalog):
    dims = catalog.get("uplifting").dimension_names
    out = tmp_path / "synth.jsonl"
    res = _cli(tmp_path, fake, "synthesize", "--filter", "uplifting/v1", "--count", "4",
               "--profile", f"{dims[0]}=high,{dims[2]}=low", "--out", str(out))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "wrote 4 articles" in res.stdout and "labelled 4" in res.stdout
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 4 and all(r["synthetic"] for r in records)
    assert all(json.loads(r["metadata"]["synthetic_profile"]) == {dims[0]: "high", dims[2]: "low"}
               for r in records)
    with LabelStore.open(tmp_path / "state" / "labels.sqlite") as store:
        assert store.count("uplifting") == 4 and store.count("uplifting", include_synthetic=False) == 0
        assert store.spent("uplifting") > 0
    assert SECRET not in res.stdout + res.stderr


def test_synthesize_refuses_without_an_llm_and_names_valid_choices(tmp_path, fake, catalog):
    dims = catalog.get("uplifting").dimension_names
    res = _cli(tmp_path, None, "synthesize", "--filter", "uplifting", "--profile", f"{dims[0]}=high")
    assert res.returncode == 2 and "synthesize needs an LLM writer; configure one" in res.stderr
    assert "Traceback" not in res.stderr
    res = _cli(tmp_path, fake, "synthesize", "--filter", "uplifting", "--profile", "joy=high")
    assert res.returncode == 2 and "unknown dimension 'joy'" in res.stderr and dims[0] in res.stderr
    res = _cli(tmp_path, fake, "synthesize", "--filter", "uplifting", "--profile", f"{dims[0]}=huge")
    assert res.returncode == 2 and "valid levels: low, medium, high" in res.stderr
    assert fake.stats["requests"] == 0


def test_score_reads_articles_from_a_kafka_topic(tmp_path, catalog, kafka_bootstrap, kafka_prefix):
    from distillery import synthetic
    from distillery.articles import validate
    from distillery.bus import ensure_topics, make_producer
    from distillery.messages import from_record

    topic = kafka_prefix + "articles.raw"
    ensure_topics(kafka_bootstrap, [topic])
    spec = catalog.get("uplifting")
    producer = make_producer(kafka_bootstrap)
    ids = []
    for record in synthetic.generate(spec, 6, seed=3):
        article = validate(from_record(record))
        ids.append(article.id)
        producer.send(topic, key=article.id.encode(), value=article.SerializeToString())
    producer.send(topic, key=b"junk", value=b"\xff\xfe not a protobuf")
    producer.flush()
    producer.close()
    res = _cli(tmp_path, None, "score", "--filter", "uplifting/v1", "--oracle", "synthetic", "--no-prefilter",
               "--source", topic, "--bootstrap", kafka_bootstrap, "--count", "5")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "labelled 5" in res.stdout
    with LabelStore.open(tmp_path / "state" / "labels.sqlite") as store:
        assert {r.id for r in store.iter_labelled("uplifting")} == set(ids[:5])
    res = _cli(tmp_path, None, "score", "--filter", "uplifting/v1", "--oracle", "synthetic", "--no-prefilter",
               "--source", topic, "--bootstrap", kafka_bootstrap, "--all")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "already labelled 5" in res.stdout and "labelled 1 " in res.stdout
    res = _cli(tmp_path, None, "score", "--filter", "uplifting/v1", "--oracle", "synthetic",
               "--source", kafka_prefix + "missing.topic", "--bootstrap", kafka_bootstrap, "--count", "2")
    assert res.returncode == 2 and "does not exist" in res.stderr and "Traceback" not in res.stderr
