"""Servers close each client connection after ``grpc_max_connection_age_seconds`` (GOAWAY after a grace for
calls in flight): a client reconnects, re-resolving the headless Service, so replicas an autoscaler adds get
calls. Checked on a real service process: the channel leaves READY on its own and the next call succeeds."""

from __future__ import annotations

import threading
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from distillery.runtime.supervisor import start_service

pytestmark = pytest.mark.integration


def test_connections_are_recycled_and_calls_keep_working(tmp_path):
    svc = start_service("prefilter", args=["--state-dir", str(tmp_path), "--log-level", "WARNING"],
                        env={"DISTILLERY_PREFILTER_GRPC_MAX_CONNECTION_AGE_SECONDS": "1"}, log_dir=tmp_path)
    states: list[grpc.ChannelConnectivity] = []
    changed = threading.Event()

    def watch(state):
        states.append(state)
        changed.set()

    channel = grpc.insecure_channel(svc.address)
    try:
        channel.subscribe(watch, try_to_connect=True)
        stub = health_pb2_grpc.HealthStub(channel)
        assert stub.Check(health_pb2.HealthCheckRequest(), timeout=10).status == health_pb2.HealthCheckResponse.SERVING
        deadline = time.monotonic() + 30
        while not (grpc.ChannelConnectivity.READY in states
                   and states[-1] != grpc.ChannelConnectivity.READY) and time.monotonic() < deadline:
            changed.wait(0.5)
            changed.clear()
        assert states[-1] != grpc.ChannelConnectivity.READY, f"the server never closed the connection: {states}"
        assert stub.Check(health_pb2.HealthCheckRequest(), timeout=10).status == health_pb2.HealthCheckResponse.SERVING
    finally:
        channel.unsubscribe(watch)
        channel.close()
        svc.stop()
