"""Where a job's parts run: this process, or a Ray session (progress per stage and node, the job's report)."""

from __future__ import annotations

import contextlib
import json
import uuid
from typing import Any

from distillery_services.trainer.request import Progress, TrainRequest

from distillery import parallel


class Reporter:
    """The job's progress callback, remembering the last fraction (stage messages keep it)."""

    def __init__(self, progress: Progress | None):
        self.progress = progress
        self.fraction = 0.0

    def __call__(self, fraction: float, message: str) -> None:
        self.fraction = fraction
        if self.progress:
            self.progress(fraction, message)


@contextlib.contextmanager
def job_runner(req: TrainRequest, report: Reporter, on_stage: parallel.StageCallback | None = None):
    """The job's runner: with ``req.use_ray`` a Ray session (the cluster at ``req.ray_address``, else
    ``$RAY_ADDRESS``, else a local Ray) whose tasks run the job's parts; else this process (yields None)."""
    if not req.use_ray:
        yield None
        return

    def stage_progress(item: parallel.StageProgress) -> None:
        nodes = ", ".join(f"{item.node_ips.get(n, n[:8])}: {k}" for n, k in sorted(item.by_node.items()))
        if report.progress:
            report.progress(report.fraction, f"{item.stage}: {item.done}/{item.total} parts ({nodes})")
        if on_stage:
            on_stage(item)

    with parallel.ray_session(req.ray_address) as address:
        runner = parallel.RayRunner(on_stage=stage_progress)
        runner.address = address
        runner.storage_uri = job_storage(req)
        report(0.005, f"running on Ray at {address}")
        with parallel.use_runner(runner):
            yield runner


def job_storage(req: TrainRequest) -> str:
    """The job's artefact folder on the registry's storage (a folder, or e.g. ``s3://bucket/models/.jobs/ID``);
    Ray Train keeps a fine-tuning job's checkpoints there, where every node can reach them."""
    if not req.registry_root:
        return ""
    job_id = req.job_id or f"run-{uuid.uuid4().hex[:12]}"
    root = str(req.registry_root).rstrip("/")
    return f"{root}/.jobs/{job_id}"


def ray_extra() -> dict[str, Any]:
    """What a registered version records of the job's Ray work: which node ran which part."""
    runner = parallel.current()
    if not runner.distributed:
        return {}
    return {"ray": {"address": getattr(runner, "address", ""), **runner.nodes_report(),
                    "lost_nodes": list(getattr(runner, "lost_nodes", []))}}


def finish_job(summary: dict[str, Any], req: TrainRequest, runner) -> dict[str, Any]:
    """Add the job's Ray report to the summary and keep it with the job's artefacts (``report.json``)."""
    if runner is None:
        return summary
    summary["ray"] = ray_extra()["ray"]
    if runner.storage_uri:
        from distillery.registry import _Storage

        storage = _Storage(runner.storage_uri)
        document = {"job_id": req.job_id, "model_version": summary.get("model_version", ""),
                    "metrics": summary.get("metrics", {}), "ray": summary["ray"]}
        storage.write_text_atomic(storage.join("report.json"), json.dumps(document, indent=2, default=float))
        summary["job_report"] = storage.uri(storage.join("report.json"))
    return summary
