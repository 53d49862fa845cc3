"""Every service is a real process: health, reflection, /metrics, graceful SIGTERM, refusal of broken specs."""

from __future__ import annotations

import shutil
import subprocess
import sys
import urllib.request

import grpc
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from distillery.runtime.supervisor import SERVICES, start_service

pytestmark = pytest.mark.integration

SERVICE_NAMES = {
    "prefilter": "distillery.v1.PrefilterService",
    "oracle_gateway": "distillery.v1.OracleService",
    "trainer": "distillery.v1.TrainerService",
    "inference": "distillery.v1.ScoringService",
}


def _reflected_services(channel: grpc.Channel) -> set[str]:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    replies = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10)
    return {s.name for reply in replies for s in reply.list_services_response.service}


@pytest.mark.parametrize("name", list(SERVICES))
def test_service_process_serves_health_reflection_metrics_and_stops_on_sigterm(name, tmp_path, filters_dir):
    svc = start_service(name, args=["--state-dir", str(tmp_path), "--filter", "uplifting"], log_dir=tmp_path / "logs")
    try:
        with svc.channel() as channel:
            services = _reflected_services(channel)
        assert SERVICE_NAMES[name] in services and "grpc.health.v1.Health" in services
        body = urllib.request.urlopen(f"http://127.0.0.1:{svc.metrics_port}/metrics", timeout=5).read().decode()
        assert "process_cpu_seconds_total" in body or "python_info" in body
    finally:
        code = svc.stop()
    assert code == 0, svc.log_tail()
    assert "Traceback" not in svc.log_path.read_text()


@pytest.mark.parametrize("name", list(SERVICES))
def test_broken_filter_spec_refuses_to_start_with_the_validation_error(name, tmp_path, filters_dir):
    broken = tmp_path / "filters"
    shutil.copytree(filters_dir / "uplifting", broken / "uplifting")
    spec = broken / "uplifting" / "v1" / "filter.yaml"
    spec.write_text(spec.read_text().replace("name: evidence_level", "name: evidence-level", 1))
    proc = subprocess.run(
        [sys.executable, "-m", SERVICES[name], "--port", "0", "--metrics-port", "0", "--filters-dir", str(broken),
         "--state-dir", str(tmp_path)],
        check=False, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert "filter.yaml" in proc.stderr and "evidence-level" in proc.stderr and "underscores" in proc.stderr
    assert "Traceback" not in proc.stderr
