"""Every DISTILLERY_* variable and config key the deployment files set is a real setting of the service.

pydantic-settings would ignore a misspelt variable; the services refuse unknown ones at start
(distillery.config.check_environment), so a wrong name in the chart, the compose file or the Dockerfile would
stop a pod. This test finds them before that: it renders the chart offline (every values file), reads the
compose file and deploy/Dockerfile, and loads each service's settings from exactly that environment and the
rendered config file.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml

from distillery.config import ConfigError, check_environment, service_settings_classes, valid_variables

helm = pytest.importorskip("helm_python", reason="helm-python-sdk not installed (dev extra)")

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "distillery"
VALUES_FILES = [None, *sorted((CHART / "ci").glob("*.yaml"))]
COMPONENT_TO_SECTION = {"prefilter": "prefilter", "oracle-gateway": "oracle_gateway", "trainer": "trainer",
                        "inference": "inference", "topics": "topics"}
# What a Secret reference resolves to when the settings are loaded (only its type matters here).
SECRET_PLACEHOLDER = "placeholder-secret-value-0123456789abcdef"


def _render(values_file: Path | None) -> list[dict]:
    # The defaults need one value: token auth is on and the chart never invents tokens.
    values = yaml.safe_load(values_file.read_text()) if values_file else {
        "security": {"auth": {"existingSecret": "grpc-auth"}}}
    out = helm.Chart.load(CHART).render(values, name="dist", namespace="ml", is_install=True)
    return [d for path, text in sorted(out.items()) if not path.endswith("NOTES.txt")
            for d in yaml.safe_load_all(text) if d]


def _pod_specs(docs: list[dict]):
    """(component, pod spec) of every Deployment, Job and StatefulSet, and the RayCluster's pods."""
    for doc in docs:
        if doc["kind"] in ("Deployment", "StatefulSet", "Job"):
            component = doc["metadata"]["labels"].get("app.kubernetes.io/component", "")
            yield component, doc["spec"]["template"]["spec"]
        elif doc["kind"] == "RayCluster":
            spec = doc["spec"]
            yield "ray-head", spec["headGroupSpec"]["template"]["spec"]
            for group in spec.get("workerGroupSpecs", []):
                yield "ray-worker", group["template"]["spec"]


def _env(container: dict) -> dict[str, str]:
    return {e["name"]: e.get("value", SECRET_PLACEHOLDER) if "valueFrom" not in e else SECRET_PLACEHOLDER
            for e in container.get("env", [])}


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict]]:
    return {(p.name if p else "defaults"): _render(p) for p in VALUES_FILES}


def test_every_distillery_variable_of_the_chart_is_a_setting_and_loads(rendered, tmp_path, monkeypatch):
    valid = valid_variables()
    classes = service_settings_classes()
    checked = 0
    for values_name, docs in rendered.items():
        config = next((d["data"]["distillery.yaml"] for d in docs
                       if d["kind"] == "ConfigMap" and "distillery.yaml" in d.get("data", {})), "")
        config_file = tmp_path / f"{values_name}.yaml"
        config_file.write_text(config)
        for component, pod in _pod_specs(docs):
            for container in pod["containers"]:
                env = _env(container)
                names = [n for n in env if n.startswith("DISTILLERY_")]
                unknown = [n for n in names if n not in valid]
                assert not unknown, f"{values_name}: {component} sets unknown {unknown}"
                section = COMPONENT_TO_SECTION.get(component)
                if section is None:
                    continue
                for name in [k for k in os.environ if k.startswith(("DISTILLERY_", "RAY_ADDRESS"))]:
                    monkeypatch.delenv(name)
                for name, value in env.items():
                    monkeypatch.setenv(name, value)
                monkeypatch.setenv("DISTILLERY_CONFIG", str(config_file))
                try:
                    classes[section].load()
                except ConfigError as exc:
                    pytest.fail(f"{values_name}: {component} does not start with the chart's settings: {exc}")
                for name in env:
                    monkeypatch.delenv(name)
                checked += 1
    assert checked >= 4 * len(rendered)


def test_compose_and_dockerfiles_use_real_setting_names():
    valid = valid_variables()
    compose = yaml.safe_load((ROOT / "deploy" / "docker-compose.yml").read_text())
    names = {k for svc in compose["services"].values() for k in (svc.get("environment") or {})
             if str(k).startswith("DISTILLERY_")}
    names |= set(re.findall(r"\b(DISTILLERY_[A-Z0-9_]+)=", (ROOT / "deploy" / "Dockerfile").read_text()))
    assert len(names) > 10
    unknown = sorted(n for n in names if n not in valid)
    assert not unknown, f"not settings of any service: {unknown}"


def test_the_compose_config_file_loads_for_every_service(monkeypatch):
    for name in [k for k in os.environ if k.startswith("DISTILLERY_")]:
        monkeypatch.delenv(name)
    for cls in service_settings_classes().values():
        cls.load(ROOT / "deploy" / "distillery.yaml")


def test_a_wrong_name_is_caught_with_the_closest_valid_one():
    with pytest.raises(ConfigError, match="DISTILLERY_TRAINER_REGISTRY_DIR.*DISTILLERY_TRAINER_REGISTRY_URI"):
        check_environment(environ={"DISTILLERY_TRAINER_REGISTRY_DIR": "/registry"})
