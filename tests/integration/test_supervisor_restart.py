"""`distillery up`'s supervision on real processes: a service killed with SIGKILL is started again on the same
ports after a backoff, while the embedded broker (and so every topic and message) stays up."""

from __future__ import annotations

import signal
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from distillery.bus import EmbeddedBroker, ensure_topics, make_producer
from distillery.runtime.supervisor import Backoff, Stack, Watchdog

pytestmark = pytest.mark.integration


def test_backoff_doubles_up_to_its_maximum():
    backoff = Backoff(initial=1, maximum=10)
    assert [backoff.delay(n) for n in (1, 2, 3, 4, 5)] == [1, 2, 4, 8, 10]


def test_a_killed_service_is_restarted_on_its_ports_and_the_broker_keeps_its_topics(tmp_path, read_topic):
    with EmbeddedBroker(log_dir=tmp_path) as broker:
        ensure_topics(broker.bootstrap, ["kept"])
        producer = make_producer(broker.bootstrap)
        producer.send("kept", key=b"before", value=b"1").get(timeout=30)
        with Stack() as stack:
            first = stack.start("prefilter", args=["--log-level", "WARNING", "--state-dir", str(tmp_path)],
                                env={"DISTILLERY_KAFKA_BOOTSTRAP": broker.bootstrap}, log_dir=tmp_path / "logs")
            watchdog = Watchdog(stack, Backoff(initial=0.5, maximum=2, reset_after=60))
            first.process.send_signal(signal.SIGKILL)
            events: list[str] = []
            deadline = time.monotonic() + 90
            while not watchdog.restarts.get("prefilter"):
                events += watchdog.check()
                assert time.monotonic() < deadline, events
                time.sleep(0.1)
            again = stack.services["prefilter"]
            assert again.process.pid != first.process.pid
            assert (again.grpc_port, again.metrics_port) == (first.grpc_port, first.metrics_port)
            assert any("exited with code -9" in e for e in events) and any("restarted" in e for e in events)
            with grpc.insecure_channel(again.address) as channel:
                reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
                assert reply.status == health_pb2.HealthCheckResponse.SERVING
            assert broker.alive()
        producer.send("kept", key=b"after", value=b"2").get(timeout=30)
        producer.close()
        keys = sorted(m.key() for m in read_topic(broker.bootstrap, "kept", 2))
        assert keys == [b"after", b"before"]
