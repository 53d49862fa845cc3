"""What an operator sees when a dependency is missing or a stage dies, on real parts: a real tansu broker,
the machine's PostgreSQL and Redis (and closed ports for unreachable ones), services as real processes.

- An unreachable broker, database or Redis at start: one line naming the endpoint (no password), a bounded
  retry, exit code 3, no traceback.
- Provisioned topics: ``distillery topics ensure`` creates every topic with the configured partitions, is
  idempotent, and a service told not to create topics stops naming the one that is missing.
- A Kafka stage whose loop dies: ``distillery_<service>_kafka_stage_up`` drops to 0 and the process exits 3 (restarted by
  its supervisor) instead of serving without consuming.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import pytest

from distillery.bus.broker import free_port

pytestmark = pytest.mark.integration
PYTHON = sys.executable


def _run_service(name: str, env: dict[str, str], args: list[str] = (), timeout: float = 120):
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DISTILLERY_")}
    return subprocess.run([PYTHON, "-m", f"services.{name}", "--port", "0", "--metrics-port", "0", *args],
                          env={**clean, **env}, capture_output=True, text=True, timeout=timeout, check=False)


def test_unreachable_broker_stops_the_service_naming_it():
    endpoint = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    out = _run_service("prefilter", {"DISTILLERY_KAFKA_BOOTSTRAP": endpoint,
                                     "DISTILLERY_STARTUP_RETRY_SECONDS": "2"})
    assert out.returncode == 3, out.stderr
    assert f"cannot reach Kafka at {endpoint}" in out.stderr
    assert "Traceback" not in out.stderr
    assert time.monotonic() - started < 60, "the retry must be bounded"


def test_unreachable_database_and_redis_stop_the_gateway_without_showing_the_password(tmp_path):
    port = free_port()
    out = _run_service("oracle_gateway", {
        "DISTILLERY_ORACLE_GATEWAY_LABEL_STORE_URL": f"postgresql://dist:hunter2@127.0.0.1:{port}/labels",
        "DISTILLERY_ORACLE_GATEWAY_STARTUP_RETRY_SECONDS": "1",
        "DISTILLERY_ORACLE_GATEWAY_STATE_DIR": str(tmp_path)})
    assert out.returncode == 3, out.stderr
    assert f"PostgreSQL (label store) at postgresql://127.0.0.1:{port}/labels" in out.stderr
    assert "hunter2" not in out.stderr and "Traceback" not in out.stderr
    port = free_port()
    out = _run_service("oracle_gateway", {
        "DISTILLERY_ORACLE_GATEWAY_LABEL_STORE_URL": "postgresql://127.0.0.1:5432/test",  # reachable
        "DISTILLERY_REDIS_URL": f"redis://:s3cret@127.0.0.1:{port}/0",
        "DISTILLERY_STARTUP_RETRY_SECONDS": "1", "DISTILLERY_ORACLE_GATEWAY_STATE_DIR": str(tmp_path)})
    assert out.returncode == 3, out.stderr
    assert f"Redis at redis://127.0.0.1:{port}/0" in out.stderr
    assert "s3cret" not in out.stderr and "Traceback" not in out.stderr


def test_unknown_variable_stops_the_service_with_the_closest_name():
    out = _run_service("trainer", {"DISTILLERY_TRAINER_LABEL_STORE": "postgresql://x/y"})
    assert out.returncode == 2
    assert "DISTILLERY_TRAINER_LABEL_STORE_URL" in out.stderr and "Traceback" not in out.stderr


def test_topics_ensure_provisions_partitions_idempotently_and_services_require_them(kafka_bootstrap, kafka_prefix,
                                                                                     tmp_path):
    admin = pytest.importorskip("confluent_kafka.admin")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DISTILLERY_")}
    env = {**clean, "DISTILLERY_KAFKA_BOOTSTRAP": kafka_bootstrap, "DISTILLERY_TOPICS_PREFIX": kafka_prefix}
    # A service that may not create topics refuses to start on a bare broker, naming the topic.
    out = _run_service("prefilter", {"DISTILLERY_KAFKA_BOOTSTRAP": kafka_bootstrap,
                                     "DISTILLERY_KAFKA_CREATE_TOPICS": "false",
                                     "DISTILLERY_PREFILTER_KAFKA_TOPIC_PREFIX": kafka_prefix,
                                     "DISTILLERY_STARTUP_RETRY_SECONDS": "5"})
    assert out.returncode == 3, out.stderr
    assert f"no topic {kafka_prefix}articles.raw" in out.stderr and "topics ensure" in out.stderr
    cli = [os.path.join(os.path.dirname(PYTHON), "distillery"), "topics", "ensure", "--partitions", "4"]
    first = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert first.returncode == 0, first.stderr
    assert "13 created" in first.stdout
    again = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert again.returncode == 0 and "0 created, 0 grown, 13 unchanged" in again.stdout
    # Seen by an independent client: stream topics have 4 partitions, models.events 1.
    meta = admin.AdminClient({"bootstrap.servers": kafka_bootstrap}).list_topics(timeout=10)
    ours = {name: len(t.partitions) for name, t in meta.topics.items() if name.startswith(kafka_prefix)}
    assert ours[f"{kafka_prefix}articles.raw"] == 4 and ours[f"{kafka_prefix}articles.candidates.dlq"] == 4
    assert ours[f"{kafka_prefix}models.events"] == 1 and len(ours) == 13
    # tansu has no CreatePartitions: growing says so, naming the topic, instead of pretending.
    grow = subprocess.run(cli[:-1] + ["8"], env=env, capture_output=True, text=True, timeout=120, check=False)
    assert grow.returncode == 3
    assert f"topic {kafka_prefix}articles.raw has 4 partitions, 8 configured" in grow.stderr


DYING_SERVICE = textwrap.dedent('''
    import sys
    from distillery.bus import Stage
    from distillery.rpc.main import Service, service_main
    from distillery_services.prefilter.config import PrefilterSettings as Settings


    class Dies(Stage):
        def process(self, record):
            return []

        def process_batch(self, records):
            raise RuntimeError("simulated CommitFailedError after a rebalance")


    def build(settings, catalog):
        def on_start(_server):
            Dies(service="dying", bootstrap=settings.kafka_bootstrap, group_id=sys.argv[1] + "g",
                 input_topics=[sys.argv[1] + "in"]).start()
        return Service([], on_start=on_start)


    sys.exit(service_main("dying", Settings, build, ["--port", "0", "--metrics-port", "0",
                                                      "--filters-dir", sys.argv[2]]))
''')


def test_a_stage_that_stops_consuming_makes_the_process_exit_non_zero(kafka_bootstrap, kafka_prefix, tmp_path):
    from distillery.bus import make_producer

    script = tmp_path / "dying.py"
    script.write_text(DYING_SERVICE)
    (tmp_path / "filters").mkdir()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DISTILLERY_")}
    proc = subprocess.Popen([PYTHON, str(script), kafka_prefix, str(tmp_path / "filters")],
                            env={**clean, "DISTILLERY_KAFKA_BOOTSTRAP": kafka_bootstrap,
                                 "PYTHONPATH": os.getcwd()},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(3)
        assert proc.poll() is None, proc.communicate()[1]
        producer = make_producer(kafka_bootstrap)
        producer.send(f"{kafka_prefix}in", key=b"k", value=b"v").get(timeout=30)
        producer.close()
        _, stderr = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert proc.returncode == 3, stderr
    assert "dying stopped: dying stage" in stderr and "simulated CommitFailedError" in stderr


def test_a_dead_stage_sets_its_gauge_and_is_reported(kafka_bootstrap, kafka_prefix):
    from prometheus_client import REGISTRY

    from distillery.bus import Stage, make_producer
    from distillery.bus.stage import failed_stages

    class Dies(Stage):
        def process(self, record):
            return []

        def process_batch(self, records):
            raise RuntimeError("boom")

    group = f"{kafka_prefix}g"
    stage = Dies(service="gauge_test", bootstrap=kafka_bootstrap, group_id=group,
                 input_topics=[f"{kafka_prefix}in"]).start()
    try:
        labels = {"group": group}
        assert REGISTRY.get_sample_value("distillery_gauge_test_kafka_stage_up", labels) == 1
        producer = make_producer(kafka_bootstrap)
        producer.send(f"{kafka_prefix}in", key=b"k", value=b"v").get(timeout=30)
        producer.close()
        deadline = time.monotonic() + 60
        while not stage.failed and time.monotonic() < deadline:
            time.sleep(0.1)
        assert stage.failed
        assert REGISTRY.get_sample_value("distillery_gauge_test_kafka_stage_up", labels) == 0
        assert any("gauge_test stage" in f and "boom" in f for f in failed_stages())
    finally:
        stage.stop()
    assert not any("gauge_test" in f for f in failed_stages()), "a stopped stage is not a failure"
