"""deploy/docker-compose.yml: schema-validated with compose-spec (the Rust compose_spec parser), then
checked for what the deployment needs. Not started here: no Docker engine runs on the development machines."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
# what each image runs (ENTRYPOINT/CMD of deploy/Dockerfile per SERVICE), shared with the cluster test
_spec = importlib.util.spec_from_file_location("cluster_images", ROOT / "tests" / "cluster" / "images.py")
images = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = images
_spec.loader.exec_module(images)
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
APP_SERVICES = {"prefilter": "prefilter", "oracle-gateway": "oracle_gateway", "trainer": "trainer",
                "inference": "inference"}
INFRA = {"kafka", "postgres", "redis", "prometheus", "grafana"}
PROVISIONING = {"topics"}  # one-shot: `distillery topics ensure` before any stage starts


@pytest.fixture(scope="module")
def compose() -> dict:
    compose_spec = pytest.importorskip("compose_spec", reason="compose-spec not installed (dev extra)")
    parsed = compose_spec.PyOptions(apply_merge=True).from_yaml(COMPOSE.read_text())
    parsed.validate()
    return parsed.to_dict()


def test_schema_rejects_a_broken_file():
    compose_spec = pytest.importorskip("compose_spec", reason="compose-spec not installed (dev extra)")
    with pytest.raises(ValueError, match="bogus"):
        compose_spec.PyOptions(apply_merge=True).from_yaml("services:\n  a:\n    image: x\n    bogus: 1\n")


def test_all_services_present(compose):
    assert set(compose["services"]) == INFRA | set(APP_SERVICES) | PROVISIONING
    kafka_env = compose["services"]["kafka"]["environment"]
    assert "controller" in kafka_env["KAFKA_PROCESS_ROLES"], "Kafka must run in KRaft mode (no ZooKeeper)"
    assert "zookeeper" not in json.dumps(compose).lower()


def test_stages_start_after_topics_are_provisioned(compose):
    """Stages never rely on auto-creation: the broker does not auto-create, and every stage waits for the
    one-shot topics service to finish (it runs `distillery topics ensure`, which never shrinks or deletes)."""
    services = compose["services"]
    assert services["kafka"]["environment"]["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    topics = services["topics"]
    assert run_argv(topics, compose) == ["distillery", "topics", "ensure"] and topics["restart"] == "no"
    for name in APP_SERVICES:
        assert services[name]["depends_on"]["topics"] == {"condition": "service_completed_successfully"}, name
        assert services[name]["environment"]["DISTILLERY_KAFKA_CREATE_TOPICS"] == "false", name


def run_argv(svc: dict, compose: dict) -> list[str]:
    """What a compose service runs: ``entrypoint`` replaces the image's ENTRYPOINT (and drops its CMD);
    ``command`` replaces only the CMD, so it becomes the ENTRYPOINT's arguments."""
    builder = next(s for s in compose["services"].values() if s.get("image") == svc["image"] and s.get("build"))
    img = images.image_config(builder["build"]["args"]["SERVICE"], builder["build"].get("target", "cpu"))
    if svc.get("entrypoint"):
        return list(svc["entrypoint"]) + list(svc.get("command") or [])
    return img.entrypoint + list(svc.get("command") or img.cmd)


def test_references_resolve(compose):
    services = compose["services"]
    volumes = set(compose.get("volumes") or {})
    for name, svc in services.items():
        deps = svc.get("depends_on") or {}
        for dep in deps if isinstance(deps, (list, dict)) else []:
            assert dep in services, f"{name} depends on unknown {dep}"
        for mount in svc.get("volumes") or []:
            source = mount["source"] if isinstance(mount, dict) else mount.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in volumes, f"{name} mounts undeclared volume {source}"
        build = svc.get("build")
        if build:
            assert (DEPLOY / build["context"] / build["dockerfile"]).exists()


def test_app_services_are_hardened_and_reach_what_they_need(compose):
    for name, folder in APP_SERVICES.items():
        svc = compose["services"][name]
        assert svc["read_only"] is True, f"{name}: root filesystem must be read-only"
        assert not str(svc["user"]).startswith("0"), f"{name} runs as root"
        assert "ALL" in svc["cap_drop"]
        env = svc["environment"]
        prefix = f"DISTILLERY_{folder.upper()}_"
        assert env[prefix + "KAFKA_BOOTSTRAP"] == "kafka:9092"
        assert svc["build"]["dockerfile"] == "deploy/Dockerfile" and svc["build"]["args"]["SERVICE"] == folder
        assert run_argv(svc, compose) == ["python", "-m", f"distillery_services.{folder}"]
    oracle_env = compose["services"]["oracle-gateway"]["environment"]
    # Keys are passed through from the caller's environment, never written in the file.
    for key in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY"):
        assert oracle_env[key].startswith("${"), key
    for name in ("prefilter", "trainer", "inference"):
        assert not any(k.endswith("_API_KEY") for k in compose["services"][name]["environment"]), name


def test_prometheus_and_grafana_are_provisioned(compose):
    prom = compose["services"]["prometheus"]
    mounts = json.dumps(prom["volumes"])
    assert "prometheus.yml" in mounts and "rules" in mounts
    config = yaml.safe_load((DEPLOY / "prometheus/prometheus.yml").read_text())
    targets = {t for job in config["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]}
    metrics_ports = {"prefilter": 9101, "oracle-gateway": 9102, "trainer": 9103, "inference": 9104}
    for name, port in metrics_ports.items():
        assert f"{name}:{port}" in targets, f"Prometheus does not scrape {name}"
    grafana = json.dumps(compose["services"]["grafana"]["volumes"])
    assert "provisioning" in grafana and "dashboards" in grafana
    provider = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/distillery.yml").read_text())
    assert provider["providers"][0]["options"]["path"] in grafana
    assert list((DEPLOY / "grafana/dashboards").glob("*.json")), "no generated dashboards"


@pytest.mark.parametrize("folder", sorted(APP_SERVICES.values()))
def test_shared_config_file_is_valid_for_each_service(folder):
    """deploy/distillery.yaml loads with each service's own settings class."""
    import importlib

    module = importlib.import_module(f"distillery_services.{folder}.config")
    from distillery.config import ServiceSettings

    classes = [
        v for v in vars(module).values()
        if isinstance(v, type) and issubclass(v, ServiceSettings) and v is not ServiceSettings
        and v.__module__ == module.__name__ and v.section == folder
    ]
    assert classes, f"no settings class with section {folder!r} in distillery_services.{folder}.config"
    classes[0].load(DEPLOY / "distillery.yaml")
