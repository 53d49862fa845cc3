"""The trainer as a real process retrains on its own: labels written into its label store -> first model
trained and promoted automatically -> more labels -> a second automatic job compares with the promoted model
on the frozen test split; audit labels neither trigger a job nor enter a dataset."""

from __future__ import annotations

import json
import shutil
import time
import urllib.request
from pathlib import Path

import pytest
from distillery_services.oracle_gateway.providers.synthetic import synthetic_answer

from distillery.filters import FilterCatalog
from distillery.messages import from_record
from distillery.runtime.supervisor import start_service
from distillery.store.labels import LabelStore
from distillery.synthetic import generate
from distillery.v1 import common_pb2, oracle_pb2, trainer_pb2, trainer_pb2_grpc

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
REF = common_pb2.FilterRef(name="uplifting", version=1)


def _put(store: LabelStore, spec, records, reason: int) -> None:
    for r in records:
        answer = synthetic_answer(spec, r["id"], r["title"], r["text"], r["metadata"], noise_sigma=0.5)
        label = oracle_pb2.OracleLabel(
            article_id=r["id"], filter=common_pb2.FilterRef(name=spec.name, version=spec.version),
            prompt_hash="test-prompt", oracle_model="synthetic", provider="synthetic", reason=reason,
            dimensions=[oracle_pb2.DimensionLabel(name=d, score=float(v["score"]), evidence=str(v["evidence"]))
                        for d, v in answer.items()])
        store.put(from_record(r), label, oracle="synthetic")


def _wait(predicate, timeout: float, what: str, svc):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}; trainer log:\n{svc.log_tail(40)}")


def _metric(svc, name: str, **labels) -> float | None:
    text = urllib.request.urlopen(f"http://127.0.0.1:{svc.metrics_port}/metrics", timeout=5).read().decode()
    for line in text.splitlines():
        if line.startswith(f"{name}{{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_automatic_first_model_then_compared_retrain(tmp_path):
    filters = tmp_path / "filters"
    shutil.copytree(REPO / "filters" / "uplifting" / "v1", filters / "uplifting" / "v1")
    spec = FilterCatalog.load(filters).get("uplifting", 1)
    state = tmp_path / "state"
    records = list(generate(spec, 400, seed=4))
    audit, first, second, late_audit = records[:130], records[130:280], records[280:370], records[370:]

    store = LabelStore.open(state / "labels.sqlite")
    svc = start_service("trainer", args=["--filters-dir", str(filters), "--state-dir", str(state)],
                        env={"DISTILLERY_TRAINER_RETRAIN_ENABLED": "true",
                             "DISTILLERY_TRAINER_RETRAIN_MIN_LABELS": "120",
                             "DISTILLERY_TRAINER_RETRAIN_NEW_LABELS": "80",
                             "DISTILLERY_TRAINER_RETRAIN_POLL_SECONDS": "0.3",
                             "DISTILLERY_TRAINER_RETRAIN_KIND": "lexical",
                             "DISTILLERY_TRAINER_RETRAIN_PARAMS": '{"char_ngram_max": "4"}'},
                        log_dir=tmp_path / "logs")
    try:
        with svc.channel() as channel:
            stub = trainer_pb2_grpc.TrainerServiceStub(channel)

            def jobs():
                return list(stub.ListJobs(trainer_pb2.ListJobsRequest(filter=REF), timeout=10).jobs)

            # audit labels alone: more than retrain_min_labels of them, yet nothing starts
            _put(store, spec, audit, oracle_pb2.LABEL_REASON_AUDIT)
            _put(store, spec, first[:70], oracle_pb2.LABEL_REASON_TRAINING)  # below the threshold
            _wait(lambda: _metric(svc, "distillery_trainer_labels_pending", filter="uplifting/v1") == 70, 20,
                  "the pending-labels gauge", svc)
            time.sleep(1.0)  # several polls
            assert jobs() == []

            # enough non-audit labels: the first model is trained and promoted automatically
            _put(store, spec, first[70:], oracle_pb2.LABEL_REASON_TRAINING)
            job1 = _wait(lambda: next((j for j in jobs() if j.state == trainer_pb2.JOB_STATE_SUCCEEDED), None),
                         90, "the first automatic job", svc)
            assert "automatic: first model" in job1.message and job1.metrics["promoted"] == 1.0
            assert job1.student_kind == trainer_pb2.STUDENT_KIND_LEXICAL
            models = stub.ListModels(trainer_pb2.ListModelsRequest(filter=REF), timeout=10).models
            assert [(m.version, m.promoted) for m in models] == [(job1.model_version, True)]
            dataset = state / "datasets" / "uplifting" / "v1" / models[0].dataset_hash / "examples.jsonl"
            trained_ids = {json.loads(line)["id"] for line in dataset.open()}
            assert not trained_ids & {r["id"] for r in audit}
            frozen = json.loads((state / "datasets" / "uplifting" / "v1" / "frozen_test.json").read_text())
            assert frozen["dataset_hash"] == models[0].dataset_hash
            assert len(jobs()) == 1

            # more audit labels never trigger a retrain; more training labels do
            _put(store, spec, late_audit + audit[:10], oracle_pb2.LABEL_REASON_AUDIT)
            _wait(lambda: _metric(svc, "distillery_trainer_labels_pending", filter="uplifting/v1") == 0, 20,
                  "the pending-labels gauge", svc)
            time.sleep(1.0)
            assert len(jobs()) == 1
            _put(store, spec, second, oracle_pb2.LABEL_REASON_TRAINING)
            job2 = _wait(lambda: next((j for j in jobs() if j.job_id != job1.job_id
                                       and j.state == trainer_pb2.JOB_STATE_SUCCEEDED), None),
                         90, "the second automatic job", svc)
            assert "automatic: 90 new labels" in job2.message
            m = job2.metrics
            assert {"candidate_test_mae", "promoted_test_mae", "promoted"} <= set(m)
            assert m["comparison_n"] == len(frozen["test_ids"])
            better = m["candidate_test_mae"] < m["promoted_test_mae"]
            assert m["promoted"] == (1.0 if better else 0.0)
            assert ("promoted: candidate MAE" if better else "kept") in job2.message
            promoted = [mv.version for mv in stub.ListModels(trainer_pb2.ListModelsRequest(filter=REF)).models
                        if mv.promoted]
            assert promoted == [job2.model_version if better else job1.model_version]
            ds2 = json.loads((state / "datasets" / "uplifting" / "v1" / json.loads(
                (state / "registry" / "uplifting" / "v1" / job2.model_version / "manifest.json").read_text()
            )["dataset_hash"] / "report.json").read_text())
            assert ds2["frozen_test"]["frozen_test_present"] == len(frozen["test_ids"])
            assert ds2["n_input_labels"] == 240  # 150 + 90 training labels, no audit label

            _wait(lambda: _metric(svc, "distillery_trainer_retrains_total", filter="uplifting/v1",
                                  outcome="promoted") == (2.0 if better else 1.0), 20, "the retrains counter", svc)
            if not better:
                assert _metric(svc, "distillery_trainer_retrains_total", filter="uplifting/v1", outcome="kept") == 1
            time.sleep(1.0)
            assert len(jobs()) == 2  # no automatic job loops on the same labels
    finally:
        svc.stop()
        store.close()
