"""Where a training job's independent parts run: in this process, or as Ray tasks spread over a cluster.

Students and calibration split their work into *parts* (an out-of-fold fit, an ensemble member, a batch of
texts to embed, one dimension's cross-validated calibration) and hand them to the *current runner*
(:func:`current`). Outside a job that is :class:`SerialRunner`: parts run one after another in this process,
so a student used directly (tests, notebooks, inference) behaves as it always did. A training job installs a
:class:`RayRunner` (:func:`use_runner`), which runs every part as a Ray task on whichever node has a free CPU.
The parts are the same functions with the same seeds either way, so the results are the same.

Large inputs (texts, embeddings) are shared with :meth:`Runner.share`: under Ray they go into the object store
once (``ray.put``) and every task reads them from there instead of carrying its own copy.

The Ray runner records which node ran which part (the job report), reports per-stage, per-node progress,
cancels its outstanding tasks when the job is cancelled, and never waits forever: Ray retries the parts of a
lost node on the nodes left (``max_retries``); when no node can run them, or no part finishes for
``stall_timeout_s``, the stage fails with an error that says why.
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

RAY_ADDRESS_ENV = "RAY_ADDRESS"
# Environment that Ray workers need to behave like the driver (offline models, the model cache).
FORWARDED_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "TOKENIZERS_PARALLELISM", "DISTILLERY_MODEL_CACHE",
                 "DS_BUILD_OPS", "NUMBA_CACHE_DIR", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_REGION",
                 "AWS_DEFAULT_REGION")  # never credentials: nodes get their own (Kubernetes Secrets)


class StageFailed(RuntimeError):
    """A stage of parts could not finish (no node can run them, stalled, or a part raised)."""


class JobCancelled(BaseException):
    """Raised in a job's process when the job is cancelled; its Ray work is cancelled on the way out."""


@dataclass
class PartRecord:
    """One part that ran: which stage, which node (id and address), how long."""

    stage: str
    part: int
    node_id: str
    node_ip: str
    seconds: float
    pid: int = 0
    cpu_seconds: float = 0.0  # CPU time of the part's process (all its threads): a load-independent cost


@dataclass
class StageProgress:
    stage: str
    done: int
    total: int
    by_node: dict[str, int] = field(default_factory=dict)  # node id -> parts done there
    node_ips: dict[str, str] = field(default_factory=dict)  # node id -> its IP address


StageCallback = Callable[[StageProgress], None]


class Runner:
    """Runs lists of independent parts; subclasses decide where."""

    distributed = False

    def __init__(self, on_stage: StageCallback | None = None):
        self.on_stage = on_stage
        self.parts: list[PartRecord] = []
        self.storage_uri = ""  # where parts that write files (Ray Train checkpoints) keep them; "" = temporary
        self._stage_runs: Counter = Counter()

    def _unique(self, stage: str) -> str:
        """A stage name once per job: a stage that runs again (an encoder pass per split) gets '#2', '#3'..."""
        self._stage_runs[stage] += 1
        n = self._stage_runs[stage]
        return stage if n == 1 else f"{stage} #{n}"

    def share(self, obj: Any) -> Any:
        """A handle to pass as a part argument instead of ``obj`` (stored once, read by every part)."""
        return obj

    def map(self, fn: Callable[..., Any], args: Sequence[tuple], stage: str, num_cpus: float = 1) -> list[Any]:
        """``[fn(*a) for a in args]`` (each call one part); results in the order of ``args``."""
        raise NotImplementedError

    def call(self, fn: Callable[..., Any], *args: Any, stage: str, num_cpus: float = 1) -> Any:
        """One part: ``fn(*args)``."""
        return self.map(fn, [args], stage, num_cpus)[0]

    def parallelism(self) -> int:
        """How many parts can run at once (how finely to split work such as an encoder pass)."""
        return 1

    def nodes_report(self) -> dict[str, Any]:
        """Which node ran which part: per stage, per node counts, and every part."""
        stages: dict[str, Counter] = {}
        for p in self.parts:
            stages.setdefault(p.stage, Counter())[p.node_id] += 1
        nodes = {p.node_id: p.node_ip for p in self.parts}
        return {"nodes": [{"node_id": n, "ip": ip, "parts": sum(1 for p in self.parts if p.node_id == n)}
                          for n, ip in nodes.items()],
                "stages": {s: dict(c) for s, c in stages.items()},
                "parts": [asdict(p) for p in self.parts]}

    def _stage_done(self, stage: str, done: int, total: int, by_node: Counter) -> None:
        if self.on_stage:
            ips = {p.node_id: p.node_ip for p in self.parts if p.node_id in by_node}
            try:
                self.on_stage(StageProgress(stage, done, total, dict(by_node), ips))
            except Exception:  # progress is best effort
                logger.debug("stage progress callback failed", exc_info=True)


def _local_node() -> tuple[str, str]:
    return "local", "127.0.0.1"


class SerialRunner(Runner):
    """Every part in this process, one after another (the default outside a training job)."""

    def map(self, fn, args, stage, num_cpus=1):
        out, by_node = [], Counter()
        node_id, ip = _local_node()
        if self.on_stage is not None:
            stage = self._unique(stage)
        for i, a in enumerate(args):
            started, cpu = time.monotonic(), time.process_time()
            out.append(fn(*a))
            if self.on_stage is not None:  # only a job's runner keeps records; students used directly do not
                self.parts.append(PartRecord(stage, i, node_id, ip, time.monotonic() - started, os.getpid(),
                                             time.process_time() - cpu))
                by_node[node_id] += 1
                self._stage_done(stage, i + 1, len(args), by_node)
        return out


_CURRENT: contextvars.ContextVar[Runner | None] = contextvars.ContextVar("distillery_runner", default=None)
_SERIAL = SerialRunner()


def current() -> Runner:
    """The runner of the training job this code runs in (a serial one outside jobs and inside Ray tasks)."""
    return _CURRENT.get() or _SERIAL


def in_job() -> bool:
    """True inside a training job (a runner installed by :func:`use_runner`); only a job's runner keeps records."""
    return _CURRENT.get() is not None


@contextlib.contextmanager
def use_runner(runner: Runner) -> Iterator[Runner]:
    token = _CURRENT.set(runner)
    try:
        yield runner
    finally:
        _CURRENT.reset(token)


# -- Ray ----------------------------------------------------------------------------------------------------
def ray_address(configured: str = "") -> str:
    """The cluster to use: the configured address, else ``$RAY_ADDRESS``; empty means a local Ray."""
    return (configured or os.environ.get(RAY_ADDRESS_ENV, "")).strip()


def _run_part(fn: Callable[..., Any], *args: Any) -> tuple[Any, str, str, float, int, float]:
    """The Ray task around every part: the result plus where and how long it ran (wall and CPU seconds)."""
    import ray

    started, cpu = time.monotonic(), time.process_time()
    result = fn(*args)
    return (result, ray.get_runtime_context().get_node_id(), node_ip(), time.monotonic() - started, os.getpid(),
            time.process_time() - cpu)


def node_ip() -> str:
    """The address this Ray worker's node registered with (not a guess from the routing table)."""
    import ray

    try:
        return str(ray._private.worker.global_worker.node_ip_address)
    except AttributeError:
        return ray.util.get_node_ip_address()


def worker_env() -> dict[str, str]:
    return {k: os.environ[k] for k in FORWARDED_ENV if os.environ.get(k)}


CONNECT_ATTEMPTS = 4
CONNECT_BACKOFF_S = 5.0


def _connect(address: str, namespace: str, runtime_env: dict[str, Any]) -> None:
    """Connect to a running cluster, retrying a few times: a busy head's Ray Client proxy sometimes fails to
    start the per-client server (``Starting Ray client server failed``) and succeeds a moment later. After the
    last attempt the job fails with that attempt's error."""
    import ray

    for attempt in range(1, CONNECT_ATTEMPTS + 1):
        try:
            ray.init(address=address, namespace=namespace, runtime_env=runtime_env, log_to_driver=False)
            return
        except (ConnectionError, RuntimeError, ValueError) as exc:
            ray.shutdown()  # a half-made client connection would make the next init a no-op
            if attempt == CONNECT_ATTEMPTS or isinstance(exc, ValueError):
                raise StageFailed(f"could not connect to the Ray cluster at {address}: {exc}") from None
            logger.warning("Ray connect attempt %d/%d to %s failed (%s); retrying", attempt, CONNECT_ATTEMPTS,
                           address, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            time.sleep(CONNECT_BACKOFF_S * attempt)


@contextlib.contextmanager
def ray_session(address: str = "", num_cpus: int | None = None, namespace: str = "distillery") -> Iterator[str]:
    """Connect to the Ray cluster at ``address`` (``$RAY_ADDRESS`` when empty) or start a local Ray; yield the
    address in use. A cluster is disconnected from on exit; a local Ray this process started stays up until the
    process ends (its next job, e.g. a second CLI command in one test process, does not pay another start)."""
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    if ray.is_initialized():  # e.g. a caller that manages Ray itself
        yield ray.get_runtime_context().gcs_address
        return
    address = ray_address(address)
    runtime_env = {"env_vars": worker_env()}
    if address:
        _connect(address, namespace, runtime_env)
    else:
        try:
            ray.init(address="local", _node_ip_address="127.0.0.1", include_dashboard=False, num_cpus=num_cpus,
                     namespace=namespace, runtime_env=runtime_env, log_to_driver=False,
                     object_store_memory=512 * 1024 * 1024)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise StageFailed(f"could not start a local Ray: {exc}") from None
    if not address:
        import atexit

        atexit.register(ray.shutdown)
        yield ray.get_runtime_context().gcs_address
        return
    try:
        yield address
    finally:
        ray.shutdown()


class RayRunner(Runner):
    """Every part as a Ray task (``SPREAD`` over the nodes), in the Ray session this process is connected to."""

    distributed = True

    def __init__(self, on_stage: StageCallback | None = None, max_retries: int = 3,
                 stall_timeout_s: float = 1800.0, poll_s: float = 1.0):
        super().__init__(on_stage)
        import ray

        if not ray.is_initialized():
            raise RuntimeError("RayRunner needs a connected Ray session (see ray_session)")
        self.max_retries = int(max_retries)
        self.stall_timeout_s = float(stall_timeout_s)
        self.poll_s = float(poll_s)
        self._pending: list[Any] = []
        self._remote = ray.remote(_run_part)
        self.lost_nodes: list[dict[str, str]] = []
        self._alive = {n["NodeID"]: bool(n.get("Alive")) for n in ray.nodes()}  # nodes seen alive in this job

    def share(self, obj):
        import ray

        return ray.put(obj)

    def parallelism(self) -> int:
        import ray

        return max(1, int(ray.cluster_resources().get("CPU", 1)))

    def _alive_cpus(self) -> float:
        import ray

        return sum(float(n.get("Resources", {}).get("CPU", 0)) for n in ray.nodes() if n.get("Alive"))

    def note_lost_nodes(self, stage: str) -> None:
        """Record nodes that were alive earlier in the job and are gone now (once each)."""
        import ray

        for node in ray.nodes():
            node_id = node.get("NodeID", "")
            alive = bool(node.get("Alive"))
            if self._alive.get(node_id) and not alive:
                lost = {"stage": stage, "node_id": node_id, "ip": node.get("NodeManagerAddress", "")}
                self.lost_nodes.append(lost)
                logger.warning("Ray node %s (%s) was lost during %s; Ray retries its parts elsewhere",
                               node_id, lost["ip"], stage)
            self._alive[node_id] = alive

    def map(self, fn, args, stage, num_cpus=1):
        import ray
        from ray.exceptions import RayError, RayTaskError

        if not args:
            return []
        stage = self._unique(stage)
        task = self._remote.options(num_cpus=num_cpus, max_retries=self.max_retries, retry_exceptions=False,
                                    scheduling_strategy="SPREAD", name=f"distillery:{stage}")
        refs = [task.remote(fn, *a) for a in args]
        self._pending = list(refs)
        index = {ref: i for i, ref in enumerate(refs)}
        results: list[Any] = [None] * len(refs)
        by_node: Counter = Counter()
        last_progress = time.monotonic()
        waiting = list(refs)
        try:
            while waiting:
                ready, waiting = ray.wait(waiting, num_returns=1, timeout=self.poll_s)
                for ref in ready:
                    try:
                        value, node_id, ip, seconds, pid, cpu = ray.get(ref)
                    except RayTaskError as exc:  # the part itself raised: the same error, not a Ray wrapper
                        cause = exc.as_instanceof_cause()
                        raise StageFailed(f"{stage} part {index[ref]} failed: {_short(cause)}") from cause
                    except RayError as exc:  # a worker or node died more often than max_retries allows
                        raise StageFailed(f"{stage} part {index[ref]} was lost ({type(exc).__name__}: "
                                          f"{_short(exc)}) after {self.max_retries} retries") from None
                    results[index[ref]] = value
                    self.parts.append(PartRecord(stage, index[ref], node_id, ip, seconds, pid, cpu))
                    by_node[node_id] += 1
                    last_progress = time.monotonic()
                    self._stage_done(stage, len(refs) - len(waiting), len(refs), by_node)
                if not waiting:
                    break
                self.note_lost_nodes(stage)
                if self._alive_cpus() < num_cpus:
                    raise StageFailed(f"{stage}: no Ray node with {num_cpus:g} free CPU is left to run "
                                      f"{len(waiting)} remaining part(s); lost nodes: "
                                      f"{', '.join(n['ip'] or n['node_id'] for n in self.lost_nodes) or 'none'}")
                if time.monotonic() - last_progress > self.stall_timeout_s:
                    raise StageFailed(f"{stage}: no part finished for {self.stall_timeout_s:g} s "
                                      f"({len(waiting)} of {len(refs)} still running or waiting for a node)")
        except BaseException:
            self.cancel()
            raise
        self._pending = []
        self.note_lost_nodes(stage)
        return results

    def cancel(self) -> None:
        """Cancel the parts this runner still waits for (a cancelled or failed job)."""
        import ray

        for ref in self._pending:
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=True, recursive=True)
        self._pending = []


def _short(exc: BaseException, limit: int = 500) -> str:
    text = str(exc).strip().splitlines()
    line = next((t for t in reversed(text) if t.strip()), type(exc).__name__)
    return line[:limit]


def chunks(n: int, parts: int, min_size: int = 1) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` cutting ``range(n)`` into at most ``parts`` contiguous pieces of at least
    ``min_size`` items (fewer pieces when ``n`` is small)."""
    if n <= 0:
        return []
    k = max(1, min(int(parts), n // max(1, int(min_size)) or 1))
    bounds = [round(i * n / k) for i in range(k + 1)]
    return [(a, b) for a, b in itertools.pairwise(bounds) if b > a]
