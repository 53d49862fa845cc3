"""The trainer as a real process training one multi student for two filters: StartJob(filters) -> WatchJob ->
SUCCEEDED -> one promoted version per filter sharing a multi model id; bad multi requests."""

from __future__ import annotations

import sys
from pathlib import Path

import grpc
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "unit" / "trainer"))
from helpers import write_two_filters

from distillery.runtime.supervisor import start_service
from distillery.v1 import common_pb2, trainer_pb2, trainer_pb2_grpc

pytestmark = pytest.mark.integration

A = common_pb2.FilterRef(name="a", version=1)
B = common_pb2.FilterRef(name="b", version=1)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("trainer-multi")
    write_two_filters(root)
    return root


@pytest.fixture(scope="module")
def stub(workdir):
    svc = start_service("trainer", args=["--filters-dir", str(workdir / "filters"), "--state-dir",
                                         str(workdir / "state")], log_dir=workdir / "logs",
                        env={"DISTILLERY_TRAINER_DATA_ROOT": str(workdir)})
    try:
        with svc.channel() as channel:
            yield trainer_pb2_grpc.TrainerServiceStub(channel)
    finally:
        svc.stop()


def test_multi_job_registers_and_promotes_a_view_per_filter(stub, workdir):
    job = stub.StartJob(trainer_pb2.StartJobRequest(
        filters=[A, B], student_kind=trainer_pb2.STUDENT_KIND_MULTI, promote=True, seed=1,
        labels_paths=[str(workdir / "a.jsonl"), str(workdir / "b.jsonl")], params={"epochs": "60"}), timeout=30)
    assert [f.name for f in job.filters] == ["a", "b"] and job.student_kind == trainer_pb2.STUDENT_KIND_MULTI
    final = list(stub.WatchJob(trainer_pb2.GetJobRequest(job_id=job.job_id), timeout=300))[-1]
    assert final.state == trainer_pb2.JOB_STATE_SUCCEEDED, final.error
    for ref in ("a/v1", "b/v1"):
        assert final.metrics[f"{ref}:test_mae"] < final.metrics[f"{ref}:mean_predictor_mae"]
    assert [j.job_id for j in stub.ListJobs(trainer_pb2.ListJobsRequest(filter=B)).jobs] == [job.job_id]

    models = {ref.name: stub.ListModels(trainer_pb2.ListModelsRequest(filter=ref)).models for ref in (A, B)}
    for name, versions in models.items():
        assert len(versions) == 1, name
        m = versions[0]
        assert m.version == final.model_version and m.promoted and m.student_kind == trainer_pb2.STUDENT_KIND_MULTI
        assert m.multi_model_id == final.model_version and m.dataset_hash

    # the inference side: both views from the registry, each its columns of the one joint model
    from distillery.registry import ModelRegistry

    reg = ModelRegistry(workdir / "state" / "registry")
    la, lb = reg.load(reg.promoted("a")), reg.load(reg.promoted("b"))
    assert la.info.multi["fingerprint"] == lb.info.multi["fingerprint"]
    texts = ["Solar wind renewable emissions community volunteers profit investment",
             "Peer-reviewed study data market revenue"]
    joint = la.student.multi.predict(texts)
    np.testing.assert_allclose(la.predict(texts)[0], joint[:, :2], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(lb.predict(texts)[0], joint[:, 2:], rtol=1e-5, atol=1e-5)


def test_bad_multi_requests_are_invalid_arguments(stub, workdir):
    a_file, b_file = str(workdir / "a.jsonl"), str(workdir / "b.jsonl")
    multi = trainer_pb2.STUDENT_KIND_MULTI
    for request, code, needle in [
        (trainer_pb2.StartJobRequest(filter=A, student_kind=multi, labels_path=a_file),
         grpc.StatusCode.INVALID_ARGUMENT, "at least two filters"),
        (trainer_pb2.StartJobRequest(filters=[A], student_kind=multi, labels_paths=[a_file]),
         grpc.StatusCode.INVALID_ARGUMENT, "at least two filters"),
        (trainer_pb2.StartJobRequest(filters=[A, common_pb2.FilterRef(name="nope")], labels_paths=[a_file, b_file]),
         grpc.StatusCode.NOT_FOUND, "unknown filter 'nope'"),
        (trainer_pb2.StartJobRequest(filters=[A, B], student_kind=multi, labels_paths=[a_file, a_file]),
         grpc.StatusCode.INVALID_ARGUMENT, "no article labelled with all dimensions of b/v1"),
        (trainer_pb2.StartJobRequest(filters=[A, B], student_kind=multi, labels_paths=[a_file, ""]),
         grpc.StatusCode.INVALID_ARGUMENT, "b/v1 has no labels in the label store"),
        (trainer_pb2.StartJobRequest(filters=[A, B], student_kind=multi, labels_paths=[a_file]),
         grpc.StatusCode.INVALID_ARGUMENT, "one per filter"),
        (trainer_pb2.StartJobRequest(filters=[A, B], student_kind=multi, labels_path=a_file),
         grpc.StatusCode.INVALID_ARGUMENT, "labels_paths"),
        (trainer_pb2.StartJobRequest(filters=[A, B], student_kind=trainer_pb2.STUDENT_KIND_LEXICAL,
                                     labels_paths=[a_file, b_file]),
         grpc.StatusCode.INVALID_ARGUMENT, "STUDENT_KIND_MULTI"),
        (trainer_pb2.StartJobRequest(filters=[A, B], labels_paths=[a_file, b_file], params={"bogus": "1"}),
         grpc.StatusCode.INVALID_ARGUMENT, "bogus"),
        (trainer_pb2.StartJobRequest(filters=[A, B], labels_paths=[a_file, str(workdir / "missing.jsonl")]),
         grpc.StatusCode.NOT_FOUND, "missing.jsonl"),
    ]:
        with pytest.raises(grpc.RpcError) as err:
            stub.StartJob(request, timeout=30)
        assert err.value.code() == code and needle in err.value.details(), (request, err.value.details())
