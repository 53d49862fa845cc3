"""The model registry on object storage through the S3 API: a real moto standalone server (its own process and
port, reached through s3fs/botocore as an operator's MinIO or AWS would be). The trainer's pipeline registers
and promotes to ``s3://``; the inference service, a separate process given only ``registry_uri`` and the AWS
SDK's variables, loads and serves that model, and hot-loads the next promotion."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from distillery.bus.broker import free_port
from distillery.filters import FilterCatalog
from distillery.runtime.supervisor import start_service

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "trainer"))
from helpers import write_filter, write_labels

pytestmark = pytest.mark.integration
pytest.importorskip("s3fs", reason="s3fs not installed (trainer/inference extras)")
pytest.importorskip("moto", reason="moto[server] not installed (dev extra)")
BUCKET = "models"


@pytest.fixture
def aws_env(s3_server, monkeypatch):
    for name, value in s3_server.items():
        monkeypatch.setenv(name, value)
    return s3_server


def _train(spec, tmp_path: Path, registry_uri: str, seed: int) -> dict:
    from distillery_services.trainer.request import TrainRequest
    from distillery_services.trainer.training import run_training

    labels = write_labels(tmp_path / f"labels-{seed}.jsonl", n=160, seed=seed)
    req = TrainRequest(kind="lexical", labels_path=str(labels), registry_root=registry_uri,
                       datasets_dir=str(tmp_path / "datasets"), promote=True, seed=seed)
    return run_training(spec, req)


def test_trainer_registers_to_s3_and_inference_serves_and_reloads_it(tmp_path, aws_env):
    from distillery.registry import ModelRegistry
    from distillery.v1 import article_pb2, scoring_pb2, scoring_pb2_grpc

    filters = write_filter(tmp_path / "filters")
    spec = FilterCatalog.load(filters).get("tiny")
    uri = f"s3://{BUCKET}/registry-{os.getpid()}"
    first = _train(spec, tmp_path, uri, seed=1)
    registry = ModelRegistry(uri)
    promoted = registry.promoted("tiny")
    assert promoted is not None and promoted.version_id == first["model_version"]
    assert promoted.uri.startswith(f"s3://{BUCKET}/")
    assert not (tmp_path / "registry").exists(), "nothing may be written to a local registry"

    state = tmp_path / "inference-state"
    svc = start_service("inference", args=["--filters-dir", str(filters), "--state-dir", str(state),
                                           "--reload-poll-seconds", "0.3", "--log-level", "WARNING"],
                        env={"DISTILLERY_INFERENCE_REGISTRY_URI": uri}, log_dir=tmp_path / "logs")
    try:
        with svc.channel() as channel:
            stub = scoring_pb2_grpc.ScoringServiceStub(channel)
            article = article_pb2.Article(id="a1", title="Solar co-op", text="A community solar co-op opened.")
            reply = stub.Score(scoring_pb2.ScoreRequest(article=article), timeout=30)
            assert reply.results[0].model_version == first["model_version"]
            # The next promotion, written by the trainer to S3, reaches the running service.
            second = _train(spec, tmp_path, uri, seed=2)
            deadline = time.monotonic() + 60
            while True:
                reply = stub.Score(scoring_pb2.ScoreRequest(article=article), timeout=30)
                if reply.results[0].model_version == second["model_version"]:
                    break
                assert time.monotonic() < deadline, f"not reloaded from S3:\n{svc.log_tail()}"
                time.sleep(0.3)
        assert not (state / "registry").exists(), "inference must not fall back to a local registry"
    finally:
        svc.stop()


def test_a_missing_bucket_or_unreachable_endpoint_stops_inference_naming_it(tmp_path, aws_env):
    filters = write_filter(tmp_path / "filters")
    cmd = [sys.executable, "-m", "distillery_services.inference", "--filters-dir", str(filters), "--state-dir",
           str(tmp_path / "state"), "--port", "0", "--metrics-port", "0"]
    env = {**os.environ, "DISTILLERY_INFERENCE_REGISTRY_URI": "s3://no-such-bucket/registry",
           "DISTILLERY_INFERENCE_STARTUP_RETRY_SECONDS": "1"}
    out = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 3, out.stderr
    assert "object store (model registry)" in out.stderr and "no-such-bucket" in out.stderr
    assert "Traceback" not in out.stderr
    env["AWS_ENDPOINT_URL_S3"] = f"http://127.0.0.1:{free_port()}"
    env["DISTILLERY_INFERENCE_REGISTRY_URI"] = f"s3://{BUCKET}/registry"
    out = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 3, out.stderr
    assert env["AWS_ENDPOINT_URL_S3"] in out.stderr and "Traceback" not in out.stderr


def test_an_s3_registry_keeps_hostile_names_inside_its_prefix(aws_env):
    """Traversal in a filter name or version never reaches another prefix of the bucket (keys, not paths)."""
    import fsspec

    from distillery.registry import ModelRegistry

    fs = fsspec.filesystem("s3")
    victim = f"{BUCKET}/victim-{os.getpid()}/tiny/promoted.json"
    fs.pipe(victim, b'{"version_id": "20260101T000000-abcdef", "history": []}')
    registry = ModelRegistry(f"s3://{BUCKET}/registry-hostile-{os.getpid()}")
    for name in [f"../victim-{os.getpid()}/tiny", "..", "a/b", "%2e%2e", "tiny\x00"]:
        with pytest.raises(ValueError, match="filter.name"):
            registry.promote(name, "20260101T000000-abcdef")
        with pytest.raises(ValueError, match="filter.name"):
            registry.list(name)
    for version in ["../../x", "20260101T000000-abcdef/..", "20260101T000000-ABCDEF"]:
        with pytest.raises(ValueError, match="version"):
            registry.promote("tiny", version)
    assert fs.cat(victim) == b'{"version_id": "20260101T000000-abcdef", "history": []}'
    assert not fs.exists(f"{BUCKET}/registry-hostile-{os.getpid()}/tiny/promoted.json")
