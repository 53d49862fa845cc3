"""The trainer's own local Ray, for when no cluster is configured: one head started on the first job and shared
by every job after it (a Ray start costs seconds and ~1 GB; a job's driver then only connects to it).

It is a ``ray start --head --block`` process of its own, with its own temporary folder, so stopping it (SIGTERM to
that process, which stops every Ray process it started) never touches another Ray on the machine. A small watchdog
(``python -m distillery_services.trainer.localray --parent PID -- ray start ...``) stops it when the trainer dies without
stopping it (SIGKILL, out of memory): a dead trainer never leaves a Ray behind.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

logger = logging.getLogger(__name__)

START_TIMEOUT_S = 120.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ray_executable() -> str:
    """The ``ray`` CLI of this interpreter's environment (the venv the workers must import the project from)."""
    candidate = Path(sys.executable).with_name("ray")
    return str(candidate) if candidate.exists() else (shutil.which("ray") or "ray")


class LocalRay:
    def __init__(self, num_cpus: int | None = None, object_store_bytes: int = 512 * 1024 * 1024):
        self.num_cpus = num_cpus
        self.object_store_bytes = int(object_store_bytes)
        self._proc: subprocess.Popen | None = None
        self._address = ""
        self._temp_dir = ""
        self._lock = threading.Lock()

    def address(self) -> str:
        """The head's address, starting it on first use (raises RuntimeError when it cannot start)."""
        with self._lock:
            if self._proc is not None and self._proc.poll() is None:
                return self._address
            self._start()
            return self._address

    def _start(self) -> None:
        port = free_port()
        # Ray's socket paths must stay short: a folder directly under the system temporary folder
        self._temp_dir = tempfile.mkdtemp(prefix="distillery-ray-")
        cmd = [ray_executable(), "start", "--head", "--block", f"--port={port}", "--node-ip-address=127.0.0.1",
               "--include-dashboard=false", f"--temp-dir={self._temp_dir}",
               f"--object-store-memory={self.object_store_bytes}", "--disable-usage-stats"]
        if self.num_cpus:
            cmd.append(f"--num-cpus={int(self.num_cpus)}")
        env = {**os.environ, "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "disabled")}
        env.pop("RAY_ADDRESS", None)
        log = open(Path(self._temp_dir) / "head.log", "wb")  # noqa: SIM115 - the head's lifetime, closed in stop()
        self._log = log
        watched = [sys.executable, "-m", "distillery_services.trainer.localray", "--parent", str(os.getpid()), "--", *cmd]
        self._proc = subprocess.Popen(watched, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self._address = f"127.0.0.1:{port}"
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                tail = (Path(self._temp_dir) / "head.log").read_text(errors="replace")[-800:]
                self._cleanup()
                raise RuntimeError(f"the local Ray head exited at start: {tail.strip()}")
            if _raylet_ready(self._temp_dir):
                logger.info("local Ray head at %s (temp dir %s)", self._address, self._temp_dir)
                return
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"the local Ray head did not start within {START_TIMEOUT_S:g} s")

    def stop(self) -> None:
        with self._lock:
            proc, self._proc = self._proc, None
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)  # --block: stops every Ray process this head started
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(5)
            self._cleanup()

    def _cleanup(self) -> None:
        log = getattr(self, "_log", None)
        if log is not None:
            log.close()
            self._log = None
        if self._temp_dir:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            self._temp_dir = ""


_SHARED: LocalRay | None = None
_SHARED_LOCK = threading.Lock()


def shared_local_ray(num_cpus: int | None = None) -> LocalRay:
    """The process's one local Ray (started on first use, stopped when the process exits): every job manager of a
    process shares it, so tests and restarts of a manager do not pay a Ray start each."""
    global _SHARED
    with _SHARED_LOCK:
        if _SHARED is None:
            import atexit

            _SHARED = LocalRay(num_cpus=num_cpus)
            atexit.register(_SHARED.stop)
        return _SHARED


def _raylet_ready(temp_dir: str) -> bool:
    """The head writes its node's raylet socket once the node can take drivers."""
    session = Path(temp_dir) / "session_latest" / "sockets"
    return (session / "raylet").exists() if session.is_dir() else False


def watch(parent: int, cmd: list[str]) -> int:
    """Run ``cmd`` until it exits, this process gets SIGTERM, or ``parent`` is gone; then stop it (SIGTERM:
    ``ray start --block`` stops the Ray processes it started) and return its exit code."""
    child = subprocess.Popen(cmd)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    while child.poll() is None and not stopping.is_set():
        if os.getppid() != parent:  # the trainer died: reparented
            break
        stopping.wait(1.0)
    if child.poll() is None:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(30)
        except subprocess.TimeoutExpired:
            child.kill()
    code = child.wait()
    for arg in cmd:  # the head's own temporary folder goes with it (the trainer may be gone and cannot)
        if arg.startswith("--temp-dir=") and Path(arg.split("=", 1)[1]).name.startswith("distillery-ray-"):
            shutil.rmtree(arg.split("=", 1)[1], ignore_errors=True)
    return code


if __name__ == "__main__":
    args = sys.argv[1:]
    if len(args) < 4 or args[0] != "--parent" or args[2] != "--":
        sys.exit("usage: python -m distillery_services.trainer.localray --parent PID -- COMMAND...")
    sys.exit(watch(int(args[1]), args[3:]))
