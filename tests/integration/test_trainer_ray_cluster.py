"""The trainer on a real two-node Ray cluster: ``ray start --head`` and ``ray start --address`` as separate processes
(each with its own temporary folder and one CPU), the trainer service over real gRPC with ``RAY_ADDRESS`` set to the
head's Ray Client address (``ray://``, as the chart sets it for a KubeRay cluster) and its registry on S3 (a moto
server). Ray's own state API says where the job's tasks ran; the worker node is killed
mid-job and the job must retry its parts or fail clearly, never hang; CancelJob cancels the job's Ray work.

Select these with ``pytest -m ray_cluster``. The Ray processes are stopped by pid (SIGTERM to the ``--block``
process, which stops what it started), never with ``ray stop``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
import pytest

from distillery.bus.broker import free_port
from distillery.runtime.supervisor import start_service
from distillery.v1 import common_pb2, trainer_pb2, trainer_pb2_grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "trainer"))
from helpers import write_filter, write_labels

pytestmark = [pytest.mark.integration, pytest.mark.ray_cluster, pytest.mark.slow]
pytest.importorskip("ray.dashboard", reason="ray[default] not installed (trainer extra)")
pytest.importorskip("s3fs", reason="s3fs not installed (trainer extra)")
pytest.importorskip("moto", reason="moto[server] not installed (dev extra)")

RAY = str(Path(sys.executable).with_name("ray"))
BUCKET = "models"
FINAL = {trainer_pb2.JOB_STATE_SUCCEEDED, trainer_pb2.JOB_STATE_FAILED, trainer_pb2.JOB_STATE_CANCELLED}
# the GCS declares a node dead after 3 missed 1 s health checks (default: 5 missed 3 s checks)
FAST_HEALTH = {"RAY_health_check_period_ms": "1000", "RAY_health_check_failure_threshold": "3",
               "RAY_health_check_timeout_ms": "1000"}
# the head's Ray Client proxy gives each client connection's server 30 s to start by default; a busy CI machine
# can need longer, and the trainer connects once per job
CLIENT_START = {"RAY_CLIENT_SERVER_CHECK_CHANNEL_TIMEOUT_S": "120"}
LOGS: dict[str, Path] = {}  # what a failure message quotes: the trainer's log, the head's log folder


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def diagnose() -> str:
    """The end of the trainer's log and of the head's Ray Client server logs, for a failure message (CI shows only
    the end of the output, so a failure must carry its own evidence)."""
    parts = [f"--- trainer log ---\n{_tail(LOGS['trainer'])}"] if "trainer" in LOGS else []
    for log in sorted(Path(LOGS.get("head", "/nonexistent")).glob("session_latest/logs/ray_client_server*")):
        if log.stat().st_size:
            parts.append(f"--- {log.name} ---\n{_tail(log, 8)}")
    return "\n".join(parts)


class RayNode:
    """One ``ray start --block`` process in its own session and temporary folder."""

    def __init__(self, args: list[str], log: Path, env: dict[str, str]):
        self.temp_dir = tempfile.mkdtemp(prefix="dray-")  # short: Ray's socket paths have a length limit
        with open(log, "wb") as fh:
            self.proc = subprocess.Popen([RAY, "start", "--block", "--num-cpus=1", "--node-ip-address=127.0.0.1",
                                          f"--temp-dir={self.temp_dir}", "--disable-usage-stats", *args],
                                         stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True)

    def kill(self) -> None:
        """Lose the node: every process of it dies at once (no draining)."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # --block: stops every Ray process this node started
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        try:  # whatever the node started and left behind in its session
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def _alive_nodes(address: str) -> list:
    from ray.util.state import list_nodes

    try:
        return [n for n in list_nodes(address=address, timeout=10) if n.state == "ALIVE"]
    except Exception:  # noqa: BLE001 - the head's API server may still be starting
        return []


@pytest.fixture(scope="module")
def s3(s3_server):
    return s3_server


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A head and a worker node; yields (GCS address, head, worker, {node id: "head"|"worker"}, Ray Client address)."""
    logs = tmp_path_factory.mktemp("ray")
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", **FAST_HEALTH, **CLIENT_START}
    env.pop("RAY_ADDRESS", None)
    port, dashboard, client = free_port(), free_port(), free_port()
    head = RayNode(["--head", f"--port={port}", "--include-dashboard=true", "--dashboard-host=127.0.0.1",
                    f"--dashboard-port={dashboard}", f"--ray-client-server-port={client}"], logs / "head.log", env)
    nodes = [head]
    LOGS["head"] = Path(head.temp_dir)
    try:
        address = f"127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while len(_alive_nodes(address)) < 1:
            if head.proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the Ray head did not start: {(logs / 'head.log').read_text()[-2000:]}")
            time.sleep(1)
        head_id = _alive_nodes(address)[0].node_id
        worker = RayNode([f"--address={address}"], logs / "worker.log", env)
        nodes.append(worker)
        while len(_alive_nodes(address)) < 2:
            if worker.proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the Ray worker did not join: {(logs / 'worker.log').read_text()[-2000:]}")
            time.sleep(1)
        roles = {n.node_id: ("head" if n.node_id == head_id else "worker") for n in _alive_nodes(address)}
        yield address, head, worker, roles, f"ray://127.0.0.1:{client}"
    finally:
        for node in reversed(nodes):
            node.stop()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("raytrainer")
    write_filter(root / "filters")
    write_labels(root / "labels.jsonl", n=200, seed=4)
    return root


@pytest.fixture(scope="module")
def trainer(cluster, s3, workdir):
    env = {"RAY_ADDRESS": cluster[4], "RAY_AUTH_MODE": "disabled", "DISTILLERY_TRAINER_DATA_ROOT": str(workdir),
           "DISTILLERY_REGISTRY_URI": f"s3://{BUCKET}/registry", **s3}
    svc = start_service("trainer", args=["--filters-dir", str(workdir / "filters"), "--state-dir",
                                         str(workdir / "state")], log_dir=workdir / "logs", env=env)
    LOGS["trainer"] = workdir / "logs" / "trainer.log"
    try:
        with svc.channel() as channel:
            yield trainer_pb2_grpc.TrainerServiceStub(channel)
    finally:
        svc.stop()


def _start_stack(stub, folds: int, seed: int = 5) -> trainer_pb2.Job:
    return stub.StartJob(trainer_pb2.StartJobRequest(
        filter=common_pb2.FilterRef(name="tiny", version=1), student_kind=trainer_pb2.STUDENT_KIND_STACK,
        dataset=trainer_pb2.DatasetRef(data_path="labels.jsonl"), seed=seed, params=_params(folds)),
        timeout=30)


def _params(folds: int) -> dict[str, str]:
    return {"folds": str(folds), "evaluation": "holdout"}  # one stack fit (cv would fit it 6 times)


def _wait_final(stub, job_id: str, limit_s: float) -> trainer_pb2.Job:
    """The job once final; fails the test when it is not final within ``limit_s`` (a hang)."""
    job = None
    try:
        for job in stub.WatchJob(trainer_pb2.GetJobRequest(job_id=job_id), timeout=limit_s):
            if job.state in FINAL:
                return job
    except grpc.RpcError as exc:
        if exc.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
            raise
    pytest.fail(f"job {job_id} not final within {limit_s:g} s: {job}\n{diagnose()}")


def _wait_stage(stub, job_id: str, stage: str, limit_s: float = 60) -> trainer_pb2.Job:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        job = stub.GetJob(trainer_pb2.GetJobRequest(job_id=job_id), timeout=10)
        if any(s.name == stage and s.done >= 1 for s in job.stages) or job.state in FINAL:
            return job
        time.sleep(0.3)
    pytest.fail(f"job {job_id} never reached stage {stage!r}\n{diagnose()}")


def _tasks(address: str, name: str) -> list:
    from ray.util.state import list_tasks

    return list_tasks(address=address, filters=[("name", "=", name)], limit=10_000, detail=True, timeout=30)


@pytest.mark.timeout(220)
def test_a_stack_job_spreads_its_parts_over_both_nodes(cluster, trainer, workdir, s3, monkeypatch):
    address, _, _, roles, client = cluster
    job = _wait_final(trainer, _start_stack(trainer, folds=3).job_id, 180)
    assert job.state == trainer_pb2.JOB_STATE_SUCCEEDED, f"{job.error}\n{diagnose()}"
    assert job.ray_address == client

    # Ray's own record: the out-of-fold and final member fits (and the encoder batches) ran on both nodes
    members = _tasks(address, "distillery:stack members")
    assert len(members) >= 2 * 4  # 3 folds + the final fit, for each of the 2 members
    assert {t.node_id for t in members} == set(roles), "the member fits did not run on both nodes"
    assert {t.state for t in members} == {"FINISHED"}
    assert _tasks(address, "distillery:embed"), "the encoder pass did not run as Ray tasks"

    # GetJob's per-stage, per-node progress agrees
    stages = {s.name: s for s in job.stages}
    assert stages["stack members"].done == stages["stack members"].total == len(members)
    assert set(stages["stack members"].parts_by_node) == set(roles)

    # the job report on the registry's S3 storage records which node ran which part
    import s3fs

    for key, value in s3.items():
        monkeypatch.setenv(key, value)
    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3["AWS_ENDPOINT_URL_S3"]})
    report = json.loads(fs.cat(f"{BUCKET}/registry/.jobs/{job.job_id}/report.json"))
    assert report["model_version"] == job.model_version
    assert {n["node_id"] for n in report["ray"]["nodes"]} == set(roles)
    assert {p["node_id"] for p in report["ray"]["parts"] if p["stage"] == "stack members"} == set(roles)

    # the same request trained in this process (no Ray) gives the same model quality
    from distillery_services.trainer.request import TrainRequest
    from distillery_services.trainer.training import run_training

    from distillery.filters import FilterCatalog

    spec = FilterCatalog.load(workdir / "filters").resolve("tiny/v1")
    local = run_training(spec, TrainRequest(kind="stack", labels_path=str(workdir / "labels.jsonl"), seed=5,
                                            params=_params(3)))
    assert abs(local["metrics"]["test_mae"] - job.metrics["test_mae"]) <= 0.005


@pytest.mark.timeout(100)
def test_cancel_job_cancels_its_ray_work(cluster, trainer):
    address = cluster[0]
    before = {t.task_id for t in _tasks(address, "distillery:stack members")}
    job = _start_stack(trainer, folds=5, seed=6)
    _wait_stage(trainer, job.job_id, "stack members")
    cancelled = trainer.CancelJob(trainer_pb2.GetJobRequest(job_id=job.job_id), timeout=60)
    assert cancelled.state == trainer_pb2.JOB_STATE_CANCELLED, f"{cancelled.error}\n{diagnose()}"
    deadline = time.monotonic() + 60  # the cancelled driver's tasks end (Ray reports them failed or cancelled)
    while True:
        mine = [t for t in _tasks(address, "distillery:stack members") if t.task_id not in before]
        running = [t for t in mine if t.state not in {"FINISHED", "FAILED"}]
        if mine and not running:
            break
        assert time.monotonic() < deadline, f"Ray tasks still running after CancelJob: {running}"
        time.sleep(1)
    assert sum(t.state == "FINISHED" for t in mine) < 2 * 6, "the cancelled job ran all its parts anyway"


@pytest.mark.timeout(140)
def test_losing_the_worker_node_retries_its_parts_or_fails_clearly(cluster, trainer):
    """Runs last: it kills the worker node."""
    address, _, worker, roles, _ = cluster
    worker_id = next(n for n, role in roles.items() if role == "worker")
    job = _start_stack(trainer, folds=5, seed=7)
    _wait_stage(trainer, job.job_id, "stack members")
    worker.kill()
    job = _wait_final(trainer, job.job_id, 100)  # bounded: a hang fails here
    if job.state == trainer_pb2.JOB_STATE_FAILED:
        assert "node" in job.error or "lost" in job.error, f"{job.error}\n{diagnose()}"
        return
    assert job.state == trainer_pb2.JOB_STATE_SUCCEEDED, f"{job.error}\n{diagnose()}"
    assert worker_id not in {n.node_id for n in _alive_nodes(address)}
    # every part still finished (those lost with the worker were retried on the head)
    stages = {s.name: s for s in job.stages}
    assert stages["calibration"].done == stages["calibration"].total
    assert set(stages["calibration"].parts_by_node) == {n for n, r in roles.items() if r == "head"}


@pytest.mark.timeout(150)
def test_losing_a_node_while_fine_tuning_ends_in_a_clear_error_within_a_bounded_time(cluster, tmp_path):
    """Fine-tuning puts one Ray Train worker on each node; a node killed mid-training leaves too few CPUs to restart
    both workers, so the bounded restarts (FailureConfig, worker_start_timeout_s) end in a clear error, never a
    hang. Runs after the worker-loss test: a fresh node joins for it (the first worker is killed if still alive)."""
    import threading

    import numpy as np

    from distillery.students import compose_text, make_student
    from distillery.students.finetune_ray import TrainingFailed
    from distillery.testing.labelled import generate

    address, _, worker, _, _ = cluster
    worker.kill()
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", **FAST_HEALTH, **CLIENT_START}
    env.pop("RAY_ADDRESS", None)
    spare = RayNode([f"--address={address}"], tmp_path / "spare.log", env)
    try:
        deadline = time.monotonic() + 60
        while len(_alive_nodes(address)) < 2:
            assert spare.proc.poll() is None and time.monotonic() < deadline, (tmp_path / "spare.log").read_text()
            time.sleep(1)
        records = generate(["climate", "evidence"], 64, seed=3, noise=0.3)
        texts = [compose_text(r["title"], r["text"]) for r in records]
        y = np.array([[r["dimension_scores"][d] for d in ("climate", "evidence")] for r in records])
        tiny = {"model_type": "qwen2", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 256}
        student = make_student("finetune", ["climate", "evidence"], random_init=True, model_config=tiny,
                               tokenizer="all-MiniLM-L6-v2", head_tokens=32, tail_tokens=8, lora_r=4, epochs=500,
                               patience=1000, batch_size=8, num_workers=2, max_failures=1,
                               worker_start_timeout_s=10, ray_address=address)
        killed_at = []

        def kill_after_first_epoch(_frac: float, message: str) -> None:
            if "val MAE" in message and not killed_at:
                killed_at.append(time.monotonic())
                threading.Thread(target=spare.kill, daemon=True).start()

        student.set_progress(kill_after_first_epoch)
        with pytest.raises(TrainingFailed, match="lost node") as failed:
            student.fit(texts, y, texts[:8], y[:8])
        assert killed_at, "training ended before the node was killed"
        assert time.monotonic() - killed_at[0] < 100, "the failure took too long to surface"
        assert "restart" in str(failed.value)
    finally:
        spare.stop()
