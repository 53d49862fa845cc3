"""Start services as real local processes, wait until they serve, stop them cleanly.

Used by ``make demo``, ``distillery up`` and the integration tests, so that all three exercise the
same process boundary (real sockets, real signals) that a deployment has.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from typing_extensions import Self

SERVICES = {
    "prefilter": "distillery_services.prefilter",
    "oracle_gateway": "distillery_services.oracle_gateway",
    "trainer": "distillery_services.trainer",
    "inference": "distillery_services.inference",
}


class ServiceStartError(RuntimeError):
    """A service process exited or never became healthy; the message carries its last log lines."""


@dataclass
class ServiceProcess:
    name: str
    process: subprocess.Popen
    grpc_port: int
    metrics_port: int
    log_path: Path
    http_port: int = 0  # inference's HTTP/JSON API (0: none)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def channel(self) -> grpc.Channel:
        return grpc.insecure_channel(self.address)

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        return self.process.returncode

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def wait_healthy(address: str, timeout: float = 30.0, service: str = "") -> None:
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=2)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline:
                raise ServiceStartError(f"{address} did not report SERVING within {timeout:.0f}s")
            time.sleep(0.1)


def start_service(
    name: str,
    args: list[str] | None = None,
    env: dict[str, str] | None = None,
    log_dir: Path | None = None,
    timeout: float = 90.0,
) -> ServiceProcess:
    """Start ``python -m services.<name>`` on free ports and return once it reports SERVING."""
    if name not in SERVICES:
        raise ValueError(f"unknown service {name!r}; choose one of {', '.join(SERVICES)}")
    log_dir = Path(log_dir or tempfile.mkdtemp(prefix="distillery-logs-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    ready = log_dir / f"{name}.ready.json"
    ready.unlink(missing_ok=True)
    log_path = log_dir / f"{name}.log"
    cmd = [sys.executable, "-m", SERVICES[name], "--port", "0", "--metrics-port", "0", "--ready-file", str(ready)]
    if name == "inference":
        cmd += ["--http-port", "0"]  # free ports only: several stacks (tests, demos) run side by side
    cmd += args or []
    child_env = {**os.environ, **(env or {})}
    child_env.setdefault("HF_HUB_OFFLINE", "1")
    child_env.setdefault("TOKENIZERS_PARALLELISM", "false")
    with open(log_path, "ab") as log_fh:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(cmd, stdout=log_fh, stderr=subprocess.STDOUT, env=child_env, start_new_session=True)
    deadline = time.monotonic() + timeout
    while not ready.exists():
        if proc.poll() is not None:
            tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-20:])
            raise ServiceStartError(f"{name} exited with code {proc.returncode}:\n{tail}")
        if time.monotonic() > deadline:
            proc.kill()
            raise ServiceStartError(f"{name} did not start within {timeout:.0f}s (log: {log_path})")
        time.sleep(0.05)
    info = json.loads(ready.read_text())
    service = ServiceProcess(name, proc, info["grpc_port"], info["metrics_port"], log_path,
                             http_port=info.get("http_port", 0))
    wait_healthy(service.address, timeout=max(5.0, deadline - time.monotonic()))
    return service


@dataclass
class Stack:
    """Several services started together; stops all of them on exit, also after an error."""

    services: dict[str, ServiceProcess] = field(default_factory=dict)
    _start_kwargs: dict[str, dict] = field(default_factory=dict)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self, name: str, **kwargs) -> ServiceProcess:
        self.services[name] = start_service(name, **kwargs)
        self._start_kwargs[name] = kwargs
        return self.services[name]

    def restart(self, name: str) -> ServiceProcess:
        """Start ``name`` again as it was started, on the same gRPC and metrics ports (clients keep working)."""
        old = self.services[name]
        old.stop()
        kwargs = dict(self._start_kwargs[name])
        # Later flags win: the old ports replace the free ones start_service asks for.
        kwargs["args"] = [*(kwargs.get("args") or []), "--port", str(old.grpc_port),
                          "--metrics-port", str(old.metrics_port)]
        self.services[name] = start_service(name, **kwargs)
        return self.services[name]

    def stop(self) -> None:
        for svc in reversed(list(self.services.values())):
            svc.stop()
        self.services.clear()


@dataclass(frozen=True)
class Backoff:
    """Delay before the n-th consecutive restart: initial * 2**(n-1), at most ``maximum``. A service that ran
    ``reset_after`` seconds before it crashed starts again from ``initial``."""

    initial: float = 1.0
    maximum: float = 30.0
    reset_after: float = 60.0

    def delay(self, consecutive: int) -> float:
        return min(self.maximum, self.initial * 2 ** max(0, consecutive - 1))


@dataclass
class _Crash:
    count: int = 0
    due: float | None = None


class Watchdog:
    """Restarts the crashed services of a :class:`Stack` with exponential backoff (``distillery up``).

    Call :meth:`check` periodically; it returns what happened (for the console). The broker and everything
    else keep running while one service is down, so topics and their data survive a service crash.
    """

    def __init__(self, stack: Stack, backoff: Backoff | None = None, clock=time.monotonic):
        self.stack = stack
        self.backoff = backoff or Backoff()
        self.clock = clock
        self._crashes: dict[str, _Crash] = {}
        self._started: dict[str, float] = {name: clock() for name in stack.services}
        self.restarts: dict[str, int] = {}

    def check(self) -> list[str]:
        events = []
        now = self.clock()
        for name, svc in list(self.stack.services.items()):
            crash = self._crashes.setdefault(name, _Crash())
            if crash.due is None:
                if svc.process.poll() is None:
                    continue
                if now - self._started.get(name, now) >= self.backoff.reset_after:
                    crash.count = 0
                crash.count += 1
                crash.due = now + self.backoff.delay(crash.count)
                events.append(f"{name} exited with code {svc.process.returncode}; restarting in "
                              f"{crash.due - now:.0f}s (log: {svc.log_path})")
            elif now >= crash.due:
                try:
                    self.stack.restart(name)
                except ServiceStartError as exc:
                    crash.count += 1
                    crash.due = now + self.backoff.delay(crash.count)
                    events.append(f"{name} did not start again: {str(exc).splitlines()[0]}; next try in "
                                  f"{crash.due - now:.0f}s")
                    continue
                crash.due = None
                self._started[name] = self.clock()
                self.restarts[name] = self.restarts.get(name, 0) + 1
                events.append(f"{name} restarted (pid {self.stack.services[name].process.pid})")
        return events
