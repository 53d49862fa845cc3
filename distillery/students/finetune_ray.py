"""Fine-tuning on Ray Train: a ``TorchTrainer`` on the job's Ray (local or a cluster), checkpoints on the job's
storage (a folder or ``s3://...``, reachable from every node), progress from the rank-0 worker through an actor.

Failures are bounded: Ray Train restarts the worker group at most ``max_failures`` times (the loop resumes from the
last checkpoint), and a worker group that cannot start again because a node is gone gives up after
``worker_start_timeout_s`` per attempt, so a lost node ends in a clear error within a bounded time, never a hang.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from distillery.students.finetune_loop import describe_progress, train_loop

logger = logging.getLogger(__name__)

# Ray Train reads this in its controller: how long a worker group may wait for its resources before the attempt
# fails (its default, 60 s, retried without limit by default: a lost node would be waited for forever).
START_TIMEOUT_ENV = "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S"


class TrainingFailed(RuntimeError):
    """Fine-tuning on Ray failed for good (after its bounded retries)."""


def ray_storage(uri: str) -> tuple[str, Any]:
    """Ray Train's ``storage_path`` and ``storage_filesystem`` for a folder or an fsspec URI (``s3://...``):
    every worker node writes its checkpoints there, so it must be storage they all reach."""
    if "://" not in uri or uri.startswith("file://"):
        path = Path(uri.removeprefix("file://")).expanduser().resolve()
        path.mkdir(parents=True, exist_ok=True)
        return str(path), None
    import fsspec
    from pyarrow.fs import FSSpecHandler, PyFileSystem

    fs, root = fsspec.core.url_to_fs(uri)
    return root, PyFileSystem(FSSpecHandler(fs))


class ProgressSink:
    """A Ray actor that holds the rank-0 worker's progress items until the driver drains them.

    Workers may run on other machines of a Ray cluster, so progress travels through Ray, not the file system.
    """

    def __init__(self):
        self.items: list[dict[str, Any]] = []

    def report(self, item: dict[str, Any]) -> None:
        self.items.append(item)

    def drain(self) -> list[dict[str, Any]]:
        items, self.items = self.items, []
        return items


class _ProgressWatcher:
    """Drains the sink every half second in a thread: worker records to the job's runner, the rest to ``report``."""

    def __init__(self, sink, report: Callable[[float, str], None]):
        self.sink, self.report = sink, report
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def drain(self) -> None:
        import ray

        from distillery import parallel

        for item in ray.get(self.sink.drain.remote()):
            if item.get("type") != "worker":
                self.report(*describe_progress(item))
            elif parallel.in_job():  # students used directly keep no records (as SerialRunner)
                parallel.current().parts.append(parallel.PartRecord("finetune workers", int(item["rank"]),
                                                                    item["node_id"], item["ip"], 0.0))

    def _watch(self) -> None:
        while not self._stop.wait(0.5):
            try:
                self.drain()
            except Exception:  # progress is best effort; training reports its own errors
                logger.debug("progress drain failed", exc_info=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(2)


def train_on_ray(params: dict[str, Any], config: dict[str, Any], tmp: Path,
                 report: Callable[[float, str], None]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Run the training loop on the connected Ray; (best trained state, history) from the best checkpoint."""
    import ray
    import torch

    from distillery import parallel

    sink = ray.remote(num_cpus=0)(ProgressSink).remote()
    try:
        with _ProgressWatcher(sink, report) as watcher:
            use_gpu = torch.cuda.is_available()
            trainer = _trainer(params, {**config, "in_ray": True, "progress": sink}, use_gpu,
                               parallel.current().storage_uri or str(tmp))
            report(0.0, f"fine-tuning on Ray ({params['num_workers']} workers, {'GPU' if use_gpu else 'CPU'}; "
                        f"up to {params['max_failures']} restarts)")
            result = _fit(trainer, params)
            with result.checkpoint.as_directory() as folder:
                state = torch.load(Path(folder) / "model.pt", map_location="cpu", weights_only=True)
                history = json.loads((Path(folder) / "history.json").read_text())
            watcher.drain()  # the last epoch's items
            return state, history
    finally:
        ray.kill(sink)


def _trainer(params: dict[str, Any], loop_config: dict[str, Any], use_gpu: bool, storage_uri: str):
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from distillery import parallel

    storage_path, storage_fs = ray_storage(storage_uri)
    retries = int(params["max_failures"])
    env = {**parallel.worker_env(), START_TIMEOUT_ENV: str(float(params["worker_start_timeout_s"]))}
    os.environ[START_TIMEOUT_ENV] = env[START_TIMEOUT_ENV]  # the controller starts from the driver's environment
    return TorchTrainer(
        train_loop, train_loop_config=loop_config,
        scaling_config=ScalingConfig(num_workers=int(params["num_workers"]), use_gpu=use_gpu),
        run_config=RunConfig(name=f"finetune-{int(time.time() * 1000)}", storage_path=storage_path,
                             storage_filesystem=storage_fs, checkpoint_config=CheckpointConfig(num_to_keep=1),
                             # worker failures (a lost node) and failed restarts (its resources gone) both bounded
                             failure_config=FailureConfig(max_failures=retries, controller_failure_limit=retries),
                             worker_runtime_env={"env_vars": env}),
    )


def _fit(trainer, params: dict[str, Any]):
    try:
        result = trainer.fit()
    except Exception as exc:  # Ray Train raises once its retries are spent
        raise TrainingFailed(_explain(exc, params)) from exc
    if result.error:
        raise TrainingFailed(_explain(result.error, params))
    if result.checkpoint is None:
        raise TrainingFailed("Ray training produced no checkpoint")
    return result


def _explain(exc: BaseException, params: dict[str, Any]) -> str:
    text = str(exc).strip().splitlines()
    last = next((t for t in reversed(text) if t.strip()), type(exc).__name__)[:400]
    return (f"fine-tuning on Ray failed after up to {params['max_failures']} restart(s) of its "
            f"{params['num_workers']} workers (a lost node, or too few CPUs/GPUs left to restart them within "
            f"{params['worker_start_timeout_s']:g} s): {type(exc).__name__}: {last}")
