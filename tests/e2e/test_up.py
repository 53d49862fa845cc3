"""`distillery up`: broker + four services that a user can call, and a clean stop on Ctrl-C."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

pytestmark = [pytest.mark.e2e]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_up_serves_every_service_and_stops_everything_on_ctrl_c(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "distillery.cli.main", "up", "--state-dir", str(tmp_path), "--filter", "uplifting"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "COLUMNS": "250"},
    )
    output = []
    try:
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            output.append(line)
            if "Ctrl-C stops everything" in line:
                break
        text = "".join(output)
        assert "LLM Distillery is up" in text, text
        addresses = re.findall(r"127\.0\.0\.1:(\d+)", text)
        grpc_ports = [int(p) for p in re.findall(r"│ (?:prefilter|oracle_gateway|trainer|inference)\s+│ 127\.0\.0\.1:(\d+)",
                                                 text)]
        assert len(grpc_ports) == 4 and addresses
        for port in grpc_ports:
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
                assert reply.status == health_pb2.HealthCheckResponse.SERVING
        pids = [int(json.loads(p.read_text())["pid"]) for p in (tmp_path / "logs").glob("*.ready.json")]
        assert len(pids) == 4
    finally:
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, rest
    assert "Traceback" not in rest
    time.sleep(0.5)
    assert not [p for p in pids if _alive(p)], "service processes left running after Ctrl-C"
