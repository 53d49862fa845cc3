"""Background training jobs: each job trains in its own worker process; state is persisted per job.

A worker that crashes or is killed makes its job FAILED with the exit code; a trainer restarted while
jobs were running marks them FAILED on start (never silently lost). Watchers wait on a condition and get
every state change until the job is final.
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import queue
import threading
import traceback
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from distillery_services.trainer.localray import shared_local_ray
from prometheus_client import Counter

from distillery.filters.spec import FilterSpec
from distillery.parallel import ray_address as configured_ray_address

logger = logging.getLogger(__name__)

PARTS_DONE = Counter("distillery_trainer_parts_done_total",
                     "Parts of training jobs (Ray tasks) finished, by stage and Ray node.", ["stage", "node"])

PENDING, RUNNING, SUCCEEDED, FAILED, CANCELLED = "PENDING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"
FINAL = {SUCCEEDED, FAILED, CANCELLED}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


@dataclass
class JobRecord:
    job_id: str
    filter_name: str
    filter_version: int
    kind: str
    state: str = PENDING
    progress: float = 0.0
    message: str = "queued"
    model_version: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    error: str = ""
    created_at: str = field(default_factory=_now)
    updated_at: str = field(default_factory=_now)
    worker_pid: int = 0
    seq: int = 0  # bumped on every change; watchers compare it
    origin: str = ""  # why the job runs when no client asked for it (automatic retrains)
    filters: list[str] = field(default_factory=list)  # a multi job's filter refs (filter_name is the first's)
    # the job's stages of parts: [{"name", "done", "total", "parts_by_node": {node: n}, "node_ips": {node: ip}}]
    stages: list[dict[str, Any]] = field(default_factory=list)
    ray_address: str = ""  # the Ray cluster the job runs on ("local": the trainer's own)


def _worker(spec: FilterSpec, request: dict[str, Any], out: mp.Queue,
            specs: list[FilterSpec] | None = None) -> None:
    """Runs in the job's process: train and report progress/results through ``out``.

    With ``specs`` (several filters) it trains one multi student for all of them.
    """
    import os
    import signal

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from distillery_services.trainer.multi import run_multi_training
    from distillery_services.trainer.request import TrainRequest
    from distillery_services.trainer.training import run_training

    from distillery.parallel import JobCancelled

    def cancelled(signum, frame):  # CancelJob and trainer shutdown: stop, cancelling the job's Ray work
        raise JobCancelled("the job was cancelled")

    signal.signal(signal.SIGTERM, cancelled)

    def progress(frac: float, message: str) -> None:
        out.put({"type": "progress", "progress": float(frac), "message": message})

    def stage(item) -> None:
        out.put({"type": "stage", "stage": {"name": item.stage, "done": item.done, "total": item.total,
                                            "parts_by_node": item.by_node, "node_ips": item.node_ips}})

    try:
        req = TrainRequest(**request)
        summary = (run_multi_training(specs, req, progress, on_stage=stage) if specs
                   else run_training(spec, req, progress, on_stage=stage))
        out.put({"type": "result", "model_version": summary.get("model_version", ""),
                 "metrics": {k: float(v) for k, v in summary["metrics"].items()},
                 "message": summary.get("message", "")})
    except BaseException as exc:  # noqa: BLE001 - every failure is reported to the job
        logger.error("job failed: %s", traceback.format_exc())
        out.put({"type": "error", "error": f"{type(exc).__name__}: {exc}"})
        raise SystemExit(1) from None


class JobManager:
    """Runs jobs in worker processes, each a Ray driver: on the cluster at ``ray_address`` (``RAY_ADDRESS``), or
    on the process's local Ray head, started for the first job and stopped when the process exits."""

    def __init__(self, jobs_dir: Path, max_concurrent: int = 1, on_success=None, ray_address: str = "",
                 ray_num_cpus: int | None = None):
        self.jobs_dir = Path(jobs_dir)
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        self._jobs: dict[str, JobRecord] = {}
        self._cond = threading.Condition()
        self._slots = threading.Semaphore(max_concurrent)
        self._ctx = mp.get_context("spawn")
        self._procs: dict[str, Any] = {}
        self._stopping = threading.Event()
        self._cancelled: set[str] = set()
        self.on_success = on_success
        self.ray_address = configured_ray_address(ray_address)  # the setting, else RAY_ADDRESS
        self._local_ray = None if self.ray_address else shared_local_ray(ray_num_cpus)
        self._recover()

    # -- persistence ---------------------------------------------------------------------------------
    def _recover(self) -> None:
        for path in sorted(self.jobs_dir.glob("*.json")):
            try:
                job = JobRecord(**json.loads(path.read_text(encoding="utf-8")))
            except (OSError, ValueError, TypeError) as exc:
                logger.warning("skipping unreadable job file %s: %s", path, exc)
                continue
            if job.state not in FINAL:
                job.state = FAILED
                job.error = (f"the trainer stopped while this job was {job.message!r}; the job was lost and "
                             "must be started again")
                job.updated_at = _now()
                self._persist(job)
            self._jobs[job.job_id] = job

    def _persist(self, job: JobRecord) -> None:
        tmp = self.jobs_dir / f".{job.job_id}.tmp"
        tmp.write_text(json.dumps(asdict(job)), encoding="utf-8")
        tmp.replace(self.jobs_dir / f"{job.job_id}.json")

    def _update(self, job_id: str, **changes: Any) -> JobRecord:
        with self._cond:
            job = self._jobs[job_id]
            if job.state in FINAL and "state" not in changes:
                return job
            for k, v in changes.items():
                setattr(job, k, v)
            job.updated_at = _now()
            job.seq += 1
            self._persist(job)
            self._cond.notify_all()
            return job

    # -- API -----------------------------------------------------------------------------------------
    def start(self, spec: FilterSpec, kind: str, request: dict[str, Any], origin: str = "",
              specs: list[FilterSpec] | None = None) -> JobRecord:
        """Queue a job for ``spec``; with ``specs`` (``spec`` first) one multi student for all of them."""
        job_id = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8]
        job = JobRecord(job_id, spec.name, spec.version, kind, origin=origin,
                        filters=[s.ref for s in specs] if specs else [])
        with self._cond:
            self._jobs[job_id] = job
            self._persist(job)
        threading.Thread(target=self._run, args=(job_id, spec, request, specs), name=f"job-{job_id}",
                         daemon=True).start()
        return self.get(job_id)

    def get(self, job_id: str) -> JobRecord:
        with self._cond:
            job = self._jobs.get(job_id)
            if job is None:
                from distillery.errors import NotFoundError

                raise NotFoundError(f"no job {job_id!r}")
            return JobRecord(**asdict(job))

    def list(self) -> list[JobRecord]:
        with self._cond:
            return [JobRecord(**asdict(j)) for j in self._jobs.values()]

    def wait_change(self, job_id: str, seq: int, timeout: float = 1.0) -> JobRecord:
        """Return the job once its ``seq`` differs from ``seq`` (or after ``timeout``)."""
        with self._cond:
            self._cond.wait_for(lambda: self._jobs[job_id].seq != seq or self._stopping.is_set(), timeout)
            return JobRecord(**asdict(self._jobs[job_id]))

    def cancel(self, job_id: str) -> JobRecord:
        """Cancel a pending or running job (its worker process is terminated); a final job stays as it is."""
        job = self.get(job_id)
        if job.state in FINAL:
            return job
        with self._cond:
            self._cancelled.add(job_id)
        proc = self._procs.get(job_id)
        if proc is not None and proc.is_alive():
            proc.terminate()
            proc.join(10)
        return self._update(job_id, state=CANCELLED, message="cancelled by an operator")

    def stop(self) -> None:
        self._stopping.set()
        for job_id, proc in list(self._procs.items()):
            if proc.is_alive():
                proc.terminate()
                proc.join(5)
                self._update(job_id, state=FAILED, error="the trainer was shut down while the job was running")
        with self._cond:
            self._cond.notify_all()

    def _record_stage(self, job_id: str, stage: dict[str, Any]) -> None:
        """Keep a stage's progress on the job (GetJob) and count its newly finished parts per node (metrics)."""
        with self._cond:
            stages = [dict(s) for s in self._jobs[job_id].stages]
        old = next((s for s in stages if s["name"] == stage["name"]), None)
        before = old["parts_by_node"] if old and old["done"] <= stage["done"] else {}
        for node, n in stage["parts_by_node"].items():
            if n > before.get(node, 0):
                PARTS_DONE.labels(stage["name"], node[:12]).inc(n - before.get(node, 0))
        if old is None:
            stages.append(stage)
        else:
            stages[stages.index(old)] = stage
        self._update(job_id, stages=stages)

    # -- worker --------------------------------------------------------------------------------------
    def _run(self, job_id: str, spec: FilterSpec, request: dict[str, Any],
             specs: list[FilterSpec] | None = None) -> None:
        with self._slots:
            if self._stopping.is_set():
                self._update(job_id, state=CANCELLED, message="cancelled: the trainer is shutting down")
                return
            if job_id in self._cancelled:
                return  # cancelled while it waited for a slot
            started = self._start_worker(job_id, spec, request, specs)
            if started is None:
                return
            proc, out = started
            final = self._follow(job_id, proc, out)
            if final is not None and job_id not in self._cancelled:
                # The worker's last message is its result: record it now rather than after the process has
                # disconnected from Ray and exited (5-7 s of interpreter shutdown per job).
                self._finish(job_id, proc, final)
            proc.join(30)
            self._procs.pop(job_id, None)
            if final is None and job_id not in self._cancelled:  # cancel() already recorded the final state
                self._finish(job_id, proc, final)

    def _start_worker(self, job_id: str, spec: FilterSpec, request: dict[str, Any],
                      specs: list[FilterSpec] | None):
        """(process, its message queue) of the job's worker process on Ray; None when it could not start (the
        job is then FAILED)."""
        try:
            address = self.ray_address or self._local_ray.address()
        except RuntimeError as exc:
            self._update(job_id, state=FAILED, message="failed", error=f"could not start a local Ray: {exc}")
            return None
        request = {**request, "use_ray": True, "ray_address": address, "job_id": job_id}
        self._update(job_id, ray_address=self.ray_address or "local")
        out: mp.Queue = self._ctx.Queue()
        proc = self._ctx.Process(target=_worker, args=(spec, request, out, specs),
                                 name=f"trainer-job-{job_id}", daemon=True)
        try:
            proc.start()
        except Exception as exc:  # noqa: BLE001
            self._update(job_id, state=FAILED, error=f"could not start the job process: {exc}")
            return None
        self._procs[job_id] = proc
        if job_id in self._cancelled:  # cancel() ran between the check in _run and the start
            proc.terminate()
        self._update(job_id, state=RUNNING, message="starting", worker_pid=proc.pid)
        return proc, out

    def _follow(self, job_id: str, proc, out: mp.Queue) -> dict[str, Any] | None:
        """Record the worker's progress and stages until its result or error (returned), or its end (None)."""
        while True:
            try:
                msg = out.get(timeout=0.5)
            except queue.Empty:
                if proc.is_alive():
                    continue
                try:  # drain what the process wrote before it ended
                    msg = out.get(timeout=0.5)
                except queue.Empty:
                    return None
            if msg["type"] == "progress":
                self._update(job_id, progress=msg["progress"], message=msg["message"])
            elif msg["type"] == "stage":
                self._record_stage(job_id, msg["stage"])
            else:
                return msg

    def _finish(self, job_id: str, proc, final: dict[str, Any] | None) -> None:
        """The job's final state from the worker's last message, or from how its process ended."""
        if final and final["type"] == "result":
            message = f"succeeded; {final['message']}" if final.get("message") else "succeeded"
            job = self._update(job_id, state=SUCCEEDED, progress=1.0, message=message,
                               model_version=final["model_version"], metrics=final["metrics"])
            if self.on_success:
                try:
                    self.on_success(job)
                except Exception:
                    logger.exception("post-success hook failed for job %s", job_id)
        elif final and final["type"] == "error":
            self._update(job_id, state=FAILED, error=final["error"], message="failed")
        else:
            code = proc.exitcode
            how = f"was killed by signal {-code}" if code is not None and code < 0 else f"exited with code {code}"
            self._update(job_id, state=FAILED, message="failed",
                         error=f"the job's worker process {how} before finishing (out of memory?)")
