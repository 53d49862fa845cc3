"""Automatic retraining, the trainer's side of the active-learning loop.

When ``retrain_enabled`` is set, the trainer polls the label store's counts (cheap COUNT queries) for the
newest loaded version of every filter and starts a training job through its :class:`JobManager` (so
GetJob/WatchJob/ListModels show it) when:

* no model of that filter version is promoted and at least ``retrain_min_labels`` non-audit labels exist
  (the job promotes its model), or
* at least ``retrain_new_labels`` non-audit labels arrived since the promoted model's dataset (the job
  evaluates its model and the promoted one on the frozen test split and promotes only a better model;
  see :func:`distillery_services.trainer.promotion.compare_and_promote`).

Audit labels never count and never train. There is never more than one automatic job per filter; after an
automatic job that did not promote (kept or failed), the next one waits for ``retrain_new_labels`` more
labels, so a poor candidate or a data problem does not make the trainer retrain in a loop.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from pathlib import Path

from distillery_services.trainer.config import TrainerSettings
from distillery_services.trainer.factory import student_for
from distillery_services.trainer.jobs import FINAL, SUCCEEDED, JobManager, JobRecord
from distillery_services.trainer.request import split_params
from prometheus_client import Counter, Gauge

from distillery.filters import FilterCatalog
from distillery.filters.spec import FilterSpec
from distillery.registry import ModelInfo, ModelRegistry

logger = logging.getLogger(__name__)

RETRAINS = Counter("distillery_trainer_retrains_total", "Automatic training jobs that ended, by outcome "
                   "(promoted, kept = the promoted model stayed, failed).", ["filter", "outcome"])
LABELS_PENDING = Gauge("distillery_trainer_labels_pending", "Non-audit labels not yet in a promoted model's "
                       "dataset.", ["filter"])

StartJob = Callable[..., JobRecord]


class AutoRetrainer:
    """Polls label counts and starts automatic jobs; one background thread."""

    def __init__(self, settings: TrainerSettings, catalog: FilterCatalog, registry: ModelRegistry,
                 jobs: JobManager, start_job: StartJob):
        self.settings = settings
        self.catalog = catalog
        self.registry = registry
        self.jobs = jobs
        self.start_job = start_job
        self.datasets_dir = Path(settings.resolved("datasets_dir"))
        self._store = None
        self._active: dict[str, str] = {}  # filter ref -> running automatic job id
        self._attempted: dict[str, int] = {}  # filter ref -> label count when the last unpromoted job started
        self._dataset_labels: dict[str, int] = {}  # dataset hash -> labels it was built from
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        _, student_params = split_params(dict(settings.retrain_params))
        for spec in catalog.latest():  # a bad kind or parameter fails the service start, not every poll
            student_for(spec, settings.retrain_kind, student_params)

    # -- lifecycle -----------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="auto-retrain", daemon=True)
        self._thread.start()
        logger.info("automatic retraining on", extra={"fields": {
            "min_labels": self.settings.retrain_min_labels, "new_labels": self.settings.retrain_new_labels,
            "poll_seconds": self.settings.retrain_poll_seconds, "filters": self.catalog.names()}})

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        if self._store is not None:
            self._store.close()
            self._store = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception:
                logger.exception("automatic retrain poll failed")
            self._stop.wait(self.settings.retrain_poll_seconds)

    # -- one poll ------------------------------------------------------------------------------------
    def _labels(self):
        if self._store is None:
            from distillery.store.labels import LabelStore

            self._store = LabelStore.open(self.settings.resolved("label_store_url"))
        return self._store

    def poll_once(self) -> list[JobRecord]:
        """Check every filter once; return the jobs started."""
        started = []
        for spec in self.catalog.latest():
            if self._stop.is_set():
                break
            job = self._check(spec)
            if job is not None:
                started.append(job)
        return started

    def _check(self, spec: FilterSpec) -> JobRecord | None:
        from distillery.store.labels import AUDIT_REASONS

        ref = spec.ref
        running = self._active.get(ref)
        if running:
            job = self.jobs.get(running)
            if job.state not in FINAL:
                return None
            self._finished(spec, job)
            del self._active[ref]
        n = self._labels().count(spec.name, spec.version, exclude_reasons=AUDIT_REASONS)
        promoted = self.registry.promoted(spec.name)
        if promoted is not None and promoted.filter_version != spec.version:
            promoted = None
        baseline = self._labels_in(promoted) if promoted else 0
        pending = max(0, n - baseline)
        LABELS_PENDING.labels(ref).set(pending)
        last = self._attempted.get(ref)
        if last is not None and n - last < self.settings.retrain_new_labels:
            return None  # the last automatic job for these labels did not promote; wait for more
        if promoted is None:
            if n < self.settings.retrain_min_labels:
                return None
            origin = (f"automatic: first model for {ref}, {n} labels "
                      f"(retrain_min_labels {self.settings.retrain_min_labels})")
            return self._start(spec, n, origin)
        if pending < self.settings.retrain_new_labels:
            return None
        origin = (f"automatic: {pending} new labels since the dataset of promoted model {promoted.version_id} "
                  f"(retrain_new_labels {self.settings.retrain_new_labels})")
        return self._start(spec, n, origin)

    def _start(self, spec: FilterSpec, n: int, origin: str) -> JobRecord | None:
        # every automatic job promotes through the comparison: with no model promoted (first model, or
        # none for this filter version) the candidate is promoted, otherwise only a better one
        try:
            job = self.start_job(spec, self.settings.retrain_kind, dict(self.settings.retrain_params),
                                 origin=origin, promote_if_better=True)
        except Exception:
            logger.exception("could not start an automatic job for %s", spec.ref)
            RETRAINS.labels(spec.ref, "failed").inc()
            self._attempted[spec.ref] = n
            return None
        self._active[spec.ref] = job.job_id
        self._attempted[spec.ref] = n
        logger.info("automatic job started", extra={"fields": {"job_id": job.job_id, "filter": spec.ref,
                                                               "labels": n, "why": origin}})
        return job

    def _finished(self, spec: FilterSpec, job: JobRecord) -> None:
        if job.state != SUCCEEDED:
            outcome = "failed"
        else:
            outcome = "promoted" if job.metrics.get("promoted", 0.0) >= 0.5 else "kept"
        RETRAINS.labels(spec.ref, outcome).inc()
        if outcome == "promoted":
            self._attempted.pop(spec.ref, None)  # the promoted model's dataset is the new baseline
        fields = {"job_id": job.job_id, "filter": spec.ref, "outcome": outcome, "model_version": job.model_version}
        for key in ("candidate_test_mae", "promoted_test_mae", "comparison_n"):
            if key in job.metrics:
                fields[key] = round(job.metrics[key], 4)
        if job.state != SUCCEEDED:
            fields["error"] = job.error
        logger.info("automatic job finished: %s", outcome, extra={"fields": fields})

    def _labels_in(self, info: ModelInfo) -> int:
        """How many labels the dataset of ``info`` was built from (0 when that is unknown)."""
        cached = self._dataset_labels.get(info.dataset_hash)
        if cached is not None:
            return cached
        report = self.datasets_dir / info.filter_name / f"v{info.filter_version}" / info.dataset_hash / "report.json"
        try:
            n = int(json.loads(report.read_text(encoding="utf-8"))["n_input_labels"])
        except (OSError, ValueError, KeyError, TypeError):
            m = info.metrics
            n = int(m.get("n_train", 0) + m.get("n_val", 0) + m.get("n_test", 0))
            logger.warning("dataset report of %s not found (%s); counting %d labels from its metrics",
                           info.version_id, report, n)
        self._dataset_labels[info.dataset_hash] = n
        return n
