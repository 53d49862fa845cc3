"""The trainer as a real process: StartJob -> WatchJob -> SUCCEEDED -> ListModels -> Promote; bad requests."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import grpc
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "unit" / "trainer"))
from helpers import write_filter, write_labels

from distillery.runtime.supervisor import start_service
from distillery.v1 import common_pb2, trainer_pb2, trainer_pb2_grpc

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("trainer")
    write_filter(root / "filters")
    write_labels(root / "labels.jsonl", n=200, seed=1)
    return root


def _start(workdir):
    # The trainer reads labels files only under its data root: here the test's work folder.
    return start_service("trainer", args=["--filters-dir", str(workdir / "filters"), "--state-dir",
                                          str(workdir / "state")], log_dir=workdir / "logs",
                         env={"DISTILLERY_TRAINER_DATA_ROOT": str(workdir)})


@pytest.fixture(scope="module")
def trainer(workdir):
    svc = _start(workdir)
    yield svc
    svc.stop()


@pytest.fixture(scope="module")
def stub(trainer):
    with trainer.channel() as channel:
        yield trainer_pb2_grpc.TrainerServiceStub(channel)


def _watch_to_end(stub, job_id):
    return list(stub.WatchJob(trainer_pb2.GetJobRequest(job_id=job_id), timeout=240))


def test_train_watch_list_promote(stub, workdir):
    ref = common_pb2.FilterRef(name="tiny", version=1)
    job = stub.StartJob(trainer_pb2.StartJobRequest(
        filter=ref, student_kind=trainer_pb2.STUDENT_KIND_LEXICAL,
        dataset=trainer_pb2.DatasetRef(data_path="labels.jsonl"), seed=7, params={"char_ngram_max": "4"}),
        timeout=30)
    assert job.job_id and job.state in (trainer_pb2.JOB_STATE_PENDING, trainer_pb2.JOB_STATE_RUNNING)
    updates = _watch_to_end(stub, job.job_id)
    final = updates[-1]
    assert final.state == trainer_pb2.JOB_STATE_SUCCEEDED, final.error
    assert len(updates) >= 3 and [u.progress for u in updates] == sorted(u.progress for u in updates)
    assert final.metrics["test_mae"] < final.metrics["mean_predictor_mae"]
    assert 0.0 < final.metrics["coverage"] <= 1.0
    assert stub.GetJob(trainer_pb2.GetJobRequest(job_id=job.job_id)).state == trainer_pb2.JOB_STATE_SUCCEEDED

    models = stub.ListModels(trainer_pb2.ListModelsRequest(filter=ref)).models
    assert [m.version for m in models] == [final.model_version]
    assert models[0].student_kind == trainer_pb2.STUDENT_KIND_LEXICAL and not models[0].promoted
    assert models[0].dataset_hash and models[0].metrics["test_mae"] == pytest.approx(final.metrics["test_mae"])
    promoted = stub.Promote(trainer_pb2.PromoteRequest(filter=ref, version=final.model_version))
    assert promoted.promoted and promoted.version == final.model_version

    # the inference side reads the same registry
    from distillery.registry import ModelRegistry

    reg = ModelRegistry(workdir / "state" / "registry")
    loaded = reg.load(reg.promoted("tiny"))
    raw, _, lower, upper = loaded.predict(["Solar wind renewable emissions carbon climate battery grid"])
    assert raw.shape == (1, 3) and (lower <= upper).all()

    # the saved dataset version of that model trains again, by its hash
    again = stub.StartJob(trainer_pb2.StartJobRequest(
        filter=ref, student_kind=trainer_pb2.STUDENT_KIND_LEXICAL, seed=7, params={"char_ngram_max": "4"},
        dataset=trainer_pb2.DatasetRef(dataset_version=models[0].dataset_hash)), timeout=30)
    rerun = _watch_to_end(stub, again.job_id)[-1]
    assert rerun.state == trainer_pb2.JOB_STATE_SUCCEEDED, rerun.error
    assert stub.ListModels(trainer_pb2.ListModelsRequest(filter=ref)).models[0].dataset_hash == models[0].dataset_hash


def test_bad_requests_get_clear_statuses(stub, workdir):
    with pytest.raises(grpc.RpcError) as err:
        stub.StartJob(trainer_pb2.StartJobRequest(filter=common_pb2.FilterRef(name="nope"),
                                                  labels_path=str(workdir / "labels.jsonl")))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND and "nope" in err.value.details()
    with pytest.raises(grpc.RpcError) as err:
        stub.StartJob(trainer_pb2.StartJobRequest(filter=common_pb2.FilterRef(name="tiny"),
                                                  labels_path=str(workdir / "missing.jsonl")))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND and "missing.jsonl" in err.value.details()
    with pytest.raises(grpc.RpcError) as err:
        stub.StartJob(trainer_pb2.StartJobRequest(filter=common_pb2.FilterRef(name="tiny"),
                                                  labels_path=str(workdir / "labels.jsonl"), params={"bogus": "1"}))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "bogus" in err.value.details()
    with pytest.raises(grpc.RpcError) as err:
        stub.GetJob(trainer_pb2.GetJobRequest(job_id="nope"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as err:
        stub.Promote(trainer_pb2.PromoteRequest(filter=common_pb2.FilterRef(name="tiny"),
                                                version="20000101T000000-000000"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND and "no model version" in err.value.details()
    with pytest.raises(grpc.RpcError) as err:
        stub.StartJob(trainer_pb2.StartJobRequest(filter=common_pb2.FilterRef(name="tiny"),
                                                  dataset=trainer_pb2.DatasetRef(dataset_version="0123456789abcdef")))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND and "no saved dataset" in err.value.details()


def test_labels_outside_the_data_root_are_refused_alike(stub, workdir):
    """A file outside the data root gets the same answer whether it exists or not (no probing the host)."""
    outside = workdir.parent / "outside.jsonl"
    outside.write_text((workdir / "labels.jsonl").read_text())
    answers = set()
    for given in (str(outside), str(workdir.parent / "no-such.jsonl"), "../outside.jsonl", "../no-such.jsonl",
                  "/etc/passwd", "/etc/no-such-file", "labels.jsonl/../../outside.jsonl"):
        for request in (trainer_pb2.StartJobRequest(filter=common_pb2.FilterRef(name="tiny"), labels_path=given),
                        trainer_pb2.StartJobRequest(filter=common_pb2.FilterRef(name="tiny"),
                                                    dataset=trainer_pb2.DatasetRef(data_path=given))):
            with pytest.raises(grpc.RpcError) as err:
                stub.StartJob(request, timeout=30)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
            answers.add(err.value.details().replace("labels_path", "dataset.data_path"))
    assert len(answers) == 1 and "data root" in answers.pop()
    # a link inside the root that points out is refused the same way
    (workdir / "link.jsonl").symlink_to(outside)
    with pytest.raises(grpc.RpcError) as err:
        stub.StartJob(trainer_pb2.StartJobRequest(filter=common_pb2.FilterRef(name="tiny"),
                                                  dataset=trainer_pb2.DatasetRef(data_path="link.jsonl")))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_a_job_that_fails_is_reported_failed(stub, workdir):
    bad = workdir / "bad.jsonl"
    bad.write_text('{"id": "x", "title": "t", "text": "only one", "dimension_scores": {"climate": 1}}\n')
    job = stub.StartJob(trainer_pb2.StartJobRequest(filter=common_pb2.FilterRef(name="tiny"),
                                                    labels_path=str(bad)))
    final = _watch_to_end(stub, job.job_id)[-1]
    assert final.state == trainer_pb2.JOB_STATE_FAILED
    assert "usable labelled articles" in final.error


def test_killed_worker_and_killed_trainer_are_reported_failed(workdir):
    svc = _start(workdir)
    try:
        with svc.channel() as channel:
            stub = trainer_pb2_grpc.TrainerServiceStub(channel)
            # a worker killed mid-way: the job becomes FAILED with the signal
            job = stub.StartJob(trainer_pb2.StartJobRequest(
                filter=common_pb2.FilterRef(name="tiny"), labels_path=str(workdir / "labels.jsonl"),
                student_kind=trainer_pb2.STUDENT_KIND_LEXICAL))
            pid = _worker_pid(workdir, job.job_id)
            os.kill(pid, signal.SIGKILL)
            final = _watch_to_end(stub, job.job_id)[-1]
            assert final.state == trainer_pb2.JOB_STATE_FAILED and "killed by signal 9" in final.error
            # the trainer itself killed mid-job: after a restart the job is FAILED, not lost
            job = stub.StartJob(trainer_pb2.StartJobRequest(
                filter=common_pb2.FilterRef(name="tiny"), labels_path=str(workdir / "labels.jsonl")))
            _worker_pid(workdir, job.job_id)
    finally:
        os.killpg(svc.process.pid, signal.SIGKILL)  # the trainer and its job process group
        svc.process.wait(10)
    again = _start(workdir)
    try:
        with again.channel() as channel:
            stub = trainer_pb2_grpc.TrainerServiceStub(channel)
            lost = stub.GetJob(trainer_pb2.GetJobRequest(job_id=job.job_id))
            assert lost.state == trainer_pb2.JOB_STATE_FAILED and "must be started again" in lost.error
    finally:
        again.stop()


def _worker_pid(workdir, job_id, timeout=60.0):
    import json

    path = workdir / "state" / "jobs" / f"{job_id}.json"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            pid = json.loads(path.read_text()).get("worker_pid")
        except (OSError, ValueError):
            pid = None
        if pid:
            return pid
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} never started a worker")
