"""The chart as a distributed system: values that would render a broken deployment are refused, gRPC load can
spread (headless Services), topics are provisioned by a hook, the registry can live on object storage, and the
settings the pods get are the services' real ones (tests/deploy/test_settings_names.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

helm = pytest.importorskip("helm_python", reason="helm-python-sdk not installed (dev extra)")

CHART = Path(__file__).resolve().parents[2] / "charts" / "distillery"


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def render(values: dict) -> list[dict]:
    values = _merge({"security": {"auth": {"existingSecret": "grpc-auth"}}}, values)
    out = helm.Chart.load(CHART).render(values, name="dist", namespace="ml", is_install=True)
    return [d for path, text in sorted(out.items()) if not path.endswith("NOTES.txt")
            for d in yaml.safe_load_all(text) if d]


def _env(docs, name):
    deploy = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == name)
    return {e["name"]: e for e in deploy["spec"]["template"]["spec"]["containers"][0]["env"]}


@pytest.mark.parametrize("gateway", [{"replicas": 2}, {"autoscaling": {"enabled": True}}])
@pytest.mark.parametrize("missing", ["postgres", "redis"])
def test_several_gateways_without_shared_stores_are_refused(gateway, missing):
    values = {"services": {"oracle_gateway": gateway}, "postgres": {"dsn": "postgresql://u:p@pg/db"},
              "redis": {"url": "redis://redis:6379/0"}}
    del values[missing]
    with pytest.raises(Exception, match=f"set {missing}.existingSecret"):
        render(values)
    values[missing] = {"existingSecret": f"my-{missing}"}
    assert render(values)


def test_one_trainer_only():
    with pytest.raises(Exception, match="services.trainer runs one replica"):
        render({"services": {"trainer": {"replicas": 2}}})


def test_headless_services_and_connection_age_let_grpc_load_spread():
    docs = render({})
    services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
    headless = services["dist-distillery-inference-headless"]["spec"]
    assert headless["clusterIP"] == "None"
    assert headless["selector"] == services["dist-distillery-inference"]["spec"]["selector"]
    assert [p["name"] for p in headless["ports"]] == ["grpc"]


def test_topics_hook_runs_ensure_before_install_and_upgrade_and_services_do_not_create_topics():
    docs = render({"topics": {"partitions": 32, "replicationFactor": 3}})
    job = next(d for d in docs if d["kind"] == "Job" and d["metadata"]["name"] == "dist-distillery-topics")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["distillery", "topics", "ensure"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["DISTILLERY_TOPICS_PARTITIONS"] == "32" and env["DISTILLERY_TOPICS_REPLICATION_FACTOR"] == "3"
    for name in ("prefilter", "oracle-gateway", "trainer", "inference"):
        assert _env(docs, f"dist-distillery-{name}")["DISTILLERY_KAFKA_CREATE_TOPICS"]["value"] == "false"
    off = render({"topics": {"provision": {"enabled": False}}})
    assert not [d for d in off if d["kind"] == "Job" and d["metadata"]["name"].endswith("-topics")]
    assert "DISTILLERY_KAFKA_CREATE_TOPICS" not in _env(off, "dist-distillery-prefilter")


def test_registry_on_s3_needs_no_shared_volume():
    docs = render({"services": {"trainer": {"registry": {
        "uri": "s3://models/registry", "s3": {"endpoint": "http://minio:9000", "existingSecret": "s3-creds"}}}}})
    assert not [d for d in docs if d["kind"] == "PersistentVolumeClaim"]
    for name in ("trainer", "inference"):
        env = _env(docs, f"dist-distillery-{name}")
        prefix = f"DISTILLERY_{name.upper()}_"
        assert env[prefix + "REGISTRY_URI"]["value"] == "s3://models/registry"
        assert env["AWS_ENDPOINT_URL_S3"]["value"] == "http://minio:9000"
        assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "s3-creds"
        deploy = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] ==
                      f"dist-distillery-{name}")
        assert "registry" not in {v["name"] for v in deploy["spec"]["template"]["spec"]["volumes"]}


def test_kafka_sasl_ssl_with_a_private_ca():
    docs = render({"kafka": {"securityProtocol": "SASL_SSL", "tls": {"caSecret": "kafka-ca"},
                             "sasl": {"enabled": True, "existingSecret": "kafka-user"}}})
    env = _env(docs, "dist-distillery-inference")
    assert env["DISTILLERY_KAFKA_SECURITY_PROTOCOL"]["value"] == "SASL_SSL"
    assert env["DISTILLERY_KAFKA_SSL_CAFILE"]["value"] == "/etc/distillery/kafka-tls/ca.crt"
    assert env["DISTILLERY_KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "kafka-user"
    with pytest.raises(Exception, match="needs kafka.securityProtocol SASL_SSL"):
        render({"kafka": {"sasl": {"enabled": True, "existingSecret": "kafka-user"}}})


def test_the_trainer_exports_the_consumer_lag_the_hpas_scale_on():
    docs = render({})
    assert _env(docs, "dist-distillery-trainer")["DISTILLERY_TRAINER_EXPORT_CONSUMER_LAG"]["value"] == "true"
    hpas = {d["metadata"]["name"]: d for d in docs if d["kind"] == "HorizontalPodAutoscaler"}
    external = next(m for m in hpas["dist-distillery-prefilter"]["spec"]["metrics"] if m["type"] == "External")
    assert external["external"]["metric"]["name"] == "distillery_trainer_consumer_group_lag_messages"
    assert external["external"]["metric"]["selector"]["matchLabels"] == {"group": "distillery-prefilter",
                                                                          "topic": "articles.raw"}


def test_autoscaling_beyond_the_partitions_is_refused():
    with pytest.raises(Exception, match=r"services.prefilter.autoscaling.maxReplicas \(10\) is above topics.partitions \(8\)"):
        render({"topics": {"partitions": 8}})
    assert render({"topics": {"partitions": 8}, "services": {
        "inference": {"autoscaling": {"maxReplicas": 8}}, "prefilter": {"autoscaling": {"maxReplicas": 8}}}})
