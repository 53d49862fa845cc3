"""Processes as pods: each one runs in its host's network namespace and its own cgroup, and is restarted
when it exits as its ``restartPolicy`` says.

A pod's whole process tree lives in one cgroup (v2, ``cgroup.kill``), so killing a pod kills every process
it started (training subprocesses, Ray daemons) the way a container runtime does, and nothing outlives
the test. Restarts back off 1, 2, 4 ... 10 s (Kubernetes: 10 s doubling to 5 min; shortened for the test).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from typing_extensions import Self

from .netns import Host

CGROUP_ROOT = Path("/sys/fs/cgroup/unified") if Path("/sys/fs/cgroup/unified/cgroup.procs").exists() \
    else Path("/sys/fs/cgroup")


class PodError(RuntimeError):
    """A pod could not start or ended badly; the message names it and the tail of its log."""


def cgroup_supported() -> bool:
    return (CGROUP_ROOT / "cgroup.procs").exists() and os.access(CGROUP_ROOT, os.W_OK)


@dataclass
class PodSpec:
    """What to run: argv and environment exactly as the container would get them, and where."""

    name: str
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    restart_policy: str = "Always"  # Always | OnFailure | Never
    owner: str = ""  # Deployment/StatefulSet/Job/RayCluster it belongs to
    private_tmp: Path | None = None  # bind-mounted over /tmp in the pod's own mount namespace


@dataclass
class Pod:
    spec: PodSpec
    host: Host
    log_path: Path
    cgroup: Path
    proc: subprocess.Popen | None = None
    restarts: int = 0
    exits: list[int] = field(default_factory=list)
    started_at: float = 0.0
    done: bool = False  # ended and will not be restarted (a Job's pod that finished)
    descendants: dict[int, float] = field(default_factory=dict)  # pid -> create time (without cgroups)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class PodRunner:
    """Starts, watches, restarts and kills pods. Use as a context manager: leaving it kills every pod."""

    def __init__(self, tag: str, log_dir: Path, poll_seconds: float = 0.3, cgroups: bool | None = None):
        """``cgroups``: contain each pod in a cgroup (default: when the machine allows it); without, a pod's
        processes are found and killed through the process tree."""
        self.tag = tag
        self._want_cgroups = cgroups
        self.use_cgroups = False
        self.log_dir = log_dir
        self.poll_seconds = poll_seconds
        self.pods: dict[str, Pod] = {}
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._cgroup_parent = CGROUP_ROOT / tag
        self._next_start: dict[str, float] = {}

    # -- lifecycle ------------------------------------------------------------------------------------
    def __enter__(self) -> Self:
        self.use_cgroups = cgroup_supported() if self._want_cgroups is None else self._want_cgroups
        if self.use_cgroups:
            self._cgroup_parent.mkdir(exist_ok=True)
        self._thread = threading.Thread(target=self._watch, name="pod-runner", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()

    def shutdown(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        with self._lock:
            for pod in self.pods.values():
                self._kill(pod)
            for pod in self.pods.values():
                _rmdir_cgroup(pod.cgroup)
        _rmdir_cgroup(self._cgroup_parent)

    # -- pods -----------------------------------------------------------------------------------------
    def start(self, spec: PodSpec, host: Host) -> Pod:
        with self._lock:
            if spec.name in self.pods:
                raise PodError(f"pod {spec.name} exists")
            cgroup = self._cgroup_parent / spec.name
            if self.use_cgroups:
                cgroup.mkdir(exist_ok=True)
            pod = Pod(spec=spec, host=host, log_path=self.log_dir / f"{spec.name}.log", cgroup=cgroup)
            self.pods[spec.name] = pod
            self._launch(pod)
            return pod

    def _launch(self, pod: Pod) -> None:
        pod.spec.cwd.mkdir(parents=True, exist_ok=True)
        command = list(pod.spec.argv)
        if pod.spec.private_tmp is not None:
            # a container's /tmp is its own: a mount namespace of the pod with its folder over /tmp
            pod.spec.private_tmp.mkdir(parents=True, exist_ok=True)
            command = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
                       'mount --bind "$0" /tmp && exec "$@"', str(pod.spec.private_tmp), *command]
        # The shell joins the pod's cgroup before exec'ing the command: no child can escape it.
        join = f'echo $$ > "{pod.cgroup}/cgroup.procs" && ' if self.use_cgroups else ""
        argv = ["sh", "-c", join + 'exec "$@"', "pod", *pod.host.exec_prefix(), *command]
        with open(pod.log_path, "ab") as log:
            log.write(f"\n--- start #{pod.restarts} {time.strftime('%H:%M:%S')}: {' '.join(pod.spec.argv)}\n"
                      .encode())
            log.flush()
            pod.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        env=pod.spec.env, cwd=pod.spec.cwd, start_new_session=True)
        pod.started_at = time.monotonic()

    def kill(self, name: str, sig: int = signal.SIGKILL) -> int:
        """Kill a pod's main process (``kill -9`` by default) the way a crash would; returns its pid."""
        pod = self.pods[name]
        assert pod.proc is not None
        pid = pod.proc.pid
        os.kill(pid, sig)
        return pid

    def delete(self, name: str) -> None:
        with self._lock:
            pod = self.pods.pop(name)
            self._kill(pod)
            _rmdir_cgroup(pod.cgroup)

    def _kill(self, pod: Pod) -> None:
        _kill_descendants(pod)  # without cgroups (and before cgroup.kill, harmless) the process tree by pid
        kill_file = pod.cgroup / "cgroup.kill"
        if kill_file.exists():
            try:
                kill_file.write_text("1")
            except OSError:
                pass
        if pod.proc is not None and pod.proc.poll() is None:
            try:
                os.killpg(pod.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                pod.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        deadline = time.monotonic() + 10
        while _cgroup_pids(pod.cgroup) and time.monotonic() < deadline:
            time.sleep(0.05)

    # -- the restart loop -----------------------------------------------------------------------------
    def _watch(self) -> None:
        next_scan = 0.0
        while not self._stop.wait(self.poll_seconds):
            with self._lock:
                scan = not self.use_cgroups and time.monotonic() >= next_scan
                for pod in list(self.pods.values()):
                    if scan:  # remember the tree: once the main process dies its children are orphans
                        _remember_descendants(pod)
                    self._check(pod)
                if scan:
                    next_scan = time.monotonic() + 1.0

    def _check(self, pod: Pod) -> None:
        if pod.done or pod.proc is None:
            return
        code = pod.proc.poll()
        if code is None:
            return
        name = pod.spec.name
        if name not in self._next_start:
            pod.exits.append(code)
            # the container is gone: whatever it left running goes with it
            self._kill(pod)
            policy = pod.spec.restart_policy
            if policy == "Never" or (policy == "OnFailure" and code == 0):
                pod.done = True
                return
            backoff = min(10.0, 2.0 ** max(0, len(pod.exits) - 1))
            self._next_start[name] = time.monotonic() + backoff
            return
        if time.monotonic() >= self._next_start[name]:
            del self._next_start[name]
            pod.restarts += 1
            self._launch(pod)

    def wait_done(self, name: str, timeout: float) -> int:
        """Wait for a run-to-completion pod; return its exit code."""
        deadline = time.monotonic() + timeout
        pod = self.pods[name]
        while time.monotonic() < deadline:
            if pod.done:
                return pod.exits[-1]
            time.sleep(0.2)
        raise PodError(f"pod {name} did not finish within {timeout:.0f}s; log tail:\n{pod.log_tail()}")


def _remember_descendants(pod: Pod) -> None:
    if pod.proc is None or pod.proc.poll() is not None:
        return
    try:
        import psutil

        for child in psutil.Process(pod.proc.pid).children(recursive=True):
            pod.descendants[child.pid] = child.create_time()
    except Exception:  # noqa: BLE001 - the process ended meanwhile, or no psutil: the group kill remains
        return


def _kill_descendants(pod: Pod) -> None:
    """SIGKILL every process started under the pod's main process (daemons that left its session too),
    including those remembered while it ran (orphans once it died)."""
    _remember_descendants(pod)
    try:
        import psutil
    except ImportError:
        return
    for pid, created in list(pod.descendants.items()):
        with contextlib.suppress(Exception):  # already gone
            proc = psutil.Process(pid)
            if abs(proc.create_time() - created) < 0.01:  # the same process, not a reused pid
                proc.kill()
    pod.descendants.clear()


def _cgroup_pids(cgroup: Path) -> list[int]:
    try:
        return [int(x) for x in (cgroup / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return []


def _rmdir_cgroup(cgroup: Path) -> None:
    for _ in range(50):
        try:
            cgroup.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            kill_file = cgroup / "cgroup.kill"
            try:
                kill_file.write_text("1")
            except OSError:
                pass
            time.sleep(0.1)


def remove_stale_cgroups(prefix: str) -> None:
    """Kill and remove pod cgroups left by runs whose process is gone."""
    for parent in CGROUP_ROOT.glob(f"{prefix}*"):
        try:
            pid = int(parent.name[len(prefix):])
        except ValueError:
            continue
        try:
            os.kill(pid, 0)
            continue
        except ProcessLookupError:
            pass
        for child in parent.iterdir():
            if child.is_dir():
                _rmdir_cgroup(child)
        _rmdir_cgroup(parent)
