"""The automatic retrain loop, one poll at a time, with the real JobManager and label store."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

sys.path.insert(0, str(Path(__file__).resolve().parent))
from distillery_services.trainer.config import TrainerSettings
from distillery_services.trainer.jobs import FINAL
from distillery_services.trainer.retrain import AutoRetrainer
from distillery_services.trainer.servicer import TrainerServicer
from helpers import DIMS, write_filter
from test_retrain_split import put_labels

from distillery.filters import FilterCatalog
from distillery.store.labels import LabelStore
from distillery.testing.labelled import generate
from distillery.v1 import oracle_pb2


def _setup(tmp_path, **overrides):
    filters = write_filter(tmp_path / "filters", name=overrides.pop("name", "tiny"))
    catalog = FilterCatalog.load(filters)
    settings = TrainerSettings(filters_dir=filters, state_dir=tmp_path / "state", retrain_min_labels=100,
                               retrain_new_labels=50, retrain_kind="lexical", **overrides)
    servicer = TrainerServicer(settings, catalog)
    retrainer = AutoRetrainer(settings, catalog, servicer.registry, servicer.jobs, servicer.start_job)
    store = LabelStore.open(settings.resolved("label_store_url"))
    return catalog.latest()[0], servicer, retrainer, store


def _finish(servicer, job, timeout=300.0):  # the first job also starts the local Ray
    deadline = time.monotonic() + timeout
    while job.state not in FINAL and time.monotonic() < deadline:
        job = servicer.jobs.wait_change(job.job_id, job.seq, timeout=1.0)
    assert job.state in FINAL
    return job


def _sample(name, **labels):
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_first_model_then_nothing_until_new_labels(tmp_path):
    _, servicer, retrainer, store = _setup(tmp_path)
    records = generate(DIMS, 260, seed=21)
    try:
        put_labels(store, records[:60], oracle_pb2.LABEL_REASON_TRAINING)
        put_labels(store, records[200:260], oracle_pb2.LABEL_REASON_AUDIT)  # do not count
        assert retrainer.poll_once() == []
        assert _sample("distillery_trainer_labels_pending", filter="tiny/v1") == 60

        put_labels(store, records[60:120], oracle_pb2.LABEL_REASON_UNCERTAIN)
        [job] = retrainer.poll_once()
        assert job.origin.startswith("automatic: first model for tiny/v1, 120 labels")
        assert retrainer.poll_once() == []  # never two automatic jobs for one filter
        before = _sample("distillery_trainer_retrains_total", filter="tiny/v1", outcome="promoted")
        job = _finish(servicer, job)
        assert job.metrics["promoted"] == 1.0 and "succeeded; promoted" in job.message
        assert servicer.registry.promoted("tiny").version_id == job.model_version

        assert retrainer.poll_once() == []  # the promoted dataset holds every label
        assert _sample("distillery_trainer_retrains_total", filter="tiny/v1", outcome="promoted") == before + 1
        assert _sample("distillery_trainer_labels_pending", filter="tiny/v1") == 0

        put_labels(store, records[120:160], oracle_pb2.LABEL_REASON_TRAINING)
        assert retrainer.poll_once() == []  # 40 < retrain_new_labels
        assert _sample("distillery_trainer_labels_pending", filter="tiny/v1") == 40
        put_labels(store, records[160:170], oracle_pb2.LABEL_REASON_TRAINING)
        [job2] = retrainer.poll_once()
        assert "50 new labels" in job2.origin
        job2 = _finish(servicer, job2)
        assert {"candidate_test_mae", "promoted_test_mae", "promoted"} <= set(job2.metrics)
    finally:
        servicer.close()
        store.close()


def test_failed_jobs_wait_for_more_labels(tmp_path):
    _, servicer, retrainer, store = _setup(tmp_path, name="fails",
                                              retrain_params={"min_examples": "100000"})
    records = generate(DIMS, 200, seed=22)
    try:
        put_labels(store, records[:100], oracle_pb2.LABEL_REASON_TRAINING, ref=("fails", 1))
        [job] = retrainer.poll_once()
        job = _finish(servicer, job)
        assert job.state == "FAILED" and "need at least 100000" in job.error
        assert retrainer.poll_once() == []  # no retry loop on the same labels
        assert _sample("distillery_trainer_retrains_total", filter="fails/v1", outcome="failed") == 1
        put_labels(store, records[100:150], oracle_pb2.LABEL_REASON_TRAINING, ref=("fails", 1))
        [again] = retrainer.poll_once()
        _finish(servicer, again)
    finally:
        servicer.close()
        store.close()


def test_bad_retrain_settings_fail_at_start(tmp_path):
    with pytest.raises(ValueError):
        _setup(tmp_path, retrain_params={"no_such_param": "1"})
