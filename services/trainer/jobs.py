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

from distillery.filters.spec import FilterSpec

logger = logging.getLogger(__name__)

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


def _worker(spec: FilterSpec, request: dict[str, Any], out: mp.Queue,
            specs: list[FilterSpec] | None = None) -> None:
    """Runs in the job's process: train and report progress/results through ``out``.

    With ``specs`` (several filters) it trains one multi student for all of them.
    """
    import os

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from services.trainer.pipeline import TrainRequest, run_multi_training, run_training

    def progress(frac: float, message: str) -> None:
        out.put({"type": "progress", "progress": float(frac), "message": message})

    try:
        req = TrainRequest(**request)
        summary = run_multi_training(specs, req, progress) if specs else run_training(spec, req, progress)
        out.put({"type": "result", "model_version": summary.get("model_version", ""),
                 "metrics": {k: float(v) for k, v in summary["metrics"].items()},
                 "message": summary.get("message", "")})
    except BaseException as exc:  # noqa: BLE001 - every failure is reported to the job
        logger.error("job failed: %s", traceback.format_exc())
        out.put({"type": "error", "error": f"{type(exc).__name__}: {exc}"})
        raise SystemExit(1) from None


class JobManager:
    def __init__(self, jobs_dir: Path, max_concurrent: int = 1, on_success=None):
        self.jobs_dir = Path(jobs_dir)
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        self._jobs: dict[str, JobRecord] = {}
        self._cond = threading.Condition()
        self._slots = threading.Semaphore(max_concurrent)
        self._ctx = mp.get_context("spawn")
        self._procs: dict[str, Any] = {}
        self._stopping = threading.Event()
        self.on_success = on_success
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
                from distillery.rpc.errors import NotFoundError

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

    def stop(self) -> None:
        self._stopping.set()
        for job_id, proc in list(self._procs.items()):
            if proc.is_alive():
                proc.terminate()
                proc.join(5)
                self._update(job_id, state=FAILED, error="the trainer was shut down while the job was running")
        with self._cond:
            self._cond.notify_all()

    # -- worker --------------------------------------------------------------------------------------
    def _run(self, job_id: str, spec: FilterSpec, request: dict[str, Any],
             specs: list[FilterSpec] | None = None) -> None:
        with self._slots:
            if self._stopping.is_set():
                self._update(job_id, state=CANCELLED, message="cancelled: the trainer is shutting down")
                return
            out: mp.Queue = self._ctx.Queue()
            proc = self._ctx.Process(target=_worker, args=(spec, request, out, specs),
                                     name=f"trainer-job-{job_id}", daemon=True)
            try:
                proc.start()
            except Exception as exc:  # noqa: BLE001
                self._update(job_id, state=FAILED, error=f"could not start the job process: {exc}")
                return
            self._procs[job_id] = proc
            self._update(job_id, state=RUNNING, message="starting", worker_pid=proc.pid)
            final: dict[str, Any] | None = None
            while True:
                try:
                    msg = out.get(timeout=0.5)
                except queue.Empty:
                    if not proc.is_alive():
                        # drain what the process wrote before it ended
                        try:
                            msg = out.get(timeout=0.5)
                        except queue.Empty:
                            break
                    else:
                        continue
                if msg["type"] == "progress":
                    self._update(job_id, progress=msg["progress"], message=msg["message"])
                else:
                    final = msg
                    break
            proc.join(30)
            self._procs.pop(job_id, None)
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
