"""charts/distillery rendered offline (helm-python-sdk: Helm's own engine, no cluster) with several values
files; every manifest validated against the Kubernetes schemas (kubernetes-validate), the custom resources
checked structurally (their rules with promtool), values.schema.json checked to reject bad values clearly."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

helm = pytest.importorskip("helm_python", reason="helm-python-sdk not installed (dev extra)")
kv = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate not installed (dev extra)")

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "distillery"
KUBE_VERSION = "1.30.0"
VALUES_FILES = [None, *sorted((CHART / "ci").glob("*.yaml"))]
CRDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
    ("ray.io/v1", "RayCluster"),
    ("cert-manager.io/v1", "Certificate"),
}


def render(values: dict | None = None, namespace: str = "ml") -> list[dict]:
    chart = helm.Chart.load(CHART)
    out = chart.render(values or {}, name="dist", namespace=namespace, is_install=True)
    docs = []
    for path, text in sorted(out.items()):
        if path.endswith("NOTES.txt"):
            continue
        docs += [d for d in yaml.safe_load_all(text) if d]
    return docs


# The defaults plus the one value they require: token auth is on by default and the chart never invents tokens.
ROLE_TOKENS = {"scoring": "scoring-test-token", "labelling": "labelling-test-token", "admin": "admin-test-token"}
DEFAULTS = {"security": {"auth": {"tokens": ROLE_TOKENS}}}


def _values(path: Path | None) -> dict:
    return yaml.safe_load(path.read_text()) if path else DEFAULTS


def _by_kind(docs, kind):
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def _containers(deploy):
    return deploy["spec"]["template"]["spec"]["containers"]


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict]]:
    return {(p.name if p else "defaults"): render(_values(p)) for p in VALUES_FILES}


def test_lint_is_clean():
    report = helm.lint(str(CHART), strict=True, kube_version=f"v{KUBE_VERSION}")
    problems = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
    assert not problems, problems


@pytest.mark.parametrize("values_file", [p.name if p else "defaults" for p in VALUES_FILES])
def test_every_manifest_is_valid(rendered, values_file):
    docs = rendered[values_file]
    assert docs
    names = set()
    for doc in docs:
        key = (doc["kind"], doc["metadata"]["name"])
        assert key not in names, f"duplicate {key}"
        names.add(key)
        if (doc["apiVersion"], doc["kind"]) in CRDS:
            assert doc["metadata"]["name"] and isinstance(doc["spec"], dict)
            continue
        try:
            kv.validate(doc, KUBE_VERSION, strict=True)
        except kv.ValidationError as exc:  # pragma: no cover - the assertion message is the point
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']}: {exc.message} at {list(exc.path)}")


def test_defaults_render_one_of_each_per_service(rendered):
    docs = rendered["defaults"]
    services = ("prefilter", "oracle-gateway", "trainer", "inference")
    for kind in ("Deployment", "NetworkPolicy", "ServiceMonitor"):
        assert set(_by_kind(docs, kind)) == {f"dist-distillery-{s}" for s in services}, kind
    # Each service: a ClusterIP Service and a headless one (gRPC clients balancing over every pod).
    assert set(_by_kind(docs, "Service")) == {f"dist-distillery-{s}{h}" for s in services for h in ("", "-headless")}
    assert set(_by_kind(docs, "HorizontalPodAutoscaler")) == {"dist-distillery-inference", "dist-distillery-prefilter"}
    assert set(_by_kind(docs, "PodDisruptionBudget")) >= {"dist-distillery-inference", "dist-distillery-prefilter"}
    configmaps = _by_kind(docs, "ConfigMap")
    assert "dist-distillery-config" in configmaps and "dist-distillery-filters" in configmaps
    assert _by_kind(docs, "PrometheusRule") and _by_kind(docs, "PersistentVolumeClaim")


def test_hpa_scales_on_queue_depth_and_kafka_lag(rendered):
    hpa = _by_kind(rendered["defaults"], "HorizontalPodAutoscaler")
    inference = {m["type"] for m in hpa["dist-distillery-inference"]["spec"]["metrics"]}
    assert inference == {"Resource", "Pods", "External"}
    prefilter = {m["type"] for m in hpa["dist-distillery-prefilter"]["spec"]["metrics"]}
    assert "External" in prefilter
    deploys = _by_kind(rendered["defaults"], "Deployment")
    assert "replicas" not in deploys["dist-distillery-inference"]["spec"], "HPA owns the replica count"


def test_pods_are_non_root_read_only_with_grpc_health_probes(rendered):
    for values_file, docs in rendered.items():
        tls = values_file != "minimal-values.yaml"
        for name, deploy in _by_kind(docs, "Deployment").items():
            pod = deploy["spec"]["template"]["spec"]
            assert pod["securityContext"]["runAsNonRoot"] is True
            for c in _containers(deploy):
                assert c["securityContext"]["readOnlyRootFilesystem"] is True
                assert c["securityContext"]["allowPrivilegeEscalation"] is False
                for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                    spec = c[probe]
                    if tls:  # kubelet's grpc probe cannot speak TLS: an exec health check with the CA
                        assert "grpc_health" in "\n".join(spec["exec"]["command"]), (values_file, name, probe)
                    else:
                        assert spec["grpc"]["port"] == c["ports"][0]["containerPort"], (values_file, name, probe)


def test_tls_and_token_auth_are_on_by_default(rendered):
    docs = rendered["defaults"]
    for deploy in _by_kind(docs, "Deployment").values():
        env = {e["name"]: e for e in _containers(deploy)[0]["env"]}
        assert any(k.endswith("_TLS_CERT_FILE") for k in env), deploy["metadata"]["name"]
        token = next(v for k, v in env.items() if k.endswith("_AUTH_TOKEN"))
        assert token["valueFrom"]["secretKeyRef"]["name"] == "dist-distillery-grpc-auth"
        for role in ("SCORING", "LABELLING", "ADMIN"):
            ref = next(v for k, v in env.items() if k.endswith(f"_AUTH_{role}_TOKEN"))["valueFrom"]["secretKeyRef"]
            assert ref == {"name": "dist-distillery-grpc-auth", "key": f"{role.lower()}-token", "optional": True}
        assert next(v for k, v in env.items() if k.endswith("_AUTH_REQUIRED"))["value"] == "true"
        assert next(v for k, v in env.items() if k.endswith("_REFLECTION"))["value"] == "false"
    minimal = rendered["minimal-values.yaml"]
    for deploy in _by_kind(minimal, "Deployment").values():
        env = {e["name"] for e in _containers(deploy)[0]["env"]}
        assert not any(k.endswith(("_TLS_CERT_FILE", "_AUTH_TOKEN")) for k in env)


def test_gpu_values_schedule_on_gpus(rendered):
    docs = rendered["gpu-values.yaml"]
    deploys = _by_kind(docs, "Deployment")
    for name, count in (("dist-distillery-inference", 1), ("dist-distillery-trainer", 2)):
        pod = deploys[name]["spec"]["template"]["spec"]
        assert pod["runtimeClassName"] == "nvidia"
        assert pod["nodeSelector"]["nvidia.com/gpu.present"] == "true"
        assert any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])
        c = pod["containers"][0]
        assert str(c["resources"]["limits"]["nvidia.com/gpu"]) == str(count)
        assert c["image"].endswith("-cuda")
    prefilter = deploys["dist-distillery-prefilter"]["spec"]["template"]["spec"]
    assert "runtimeClassName" not in prefilter and "nvidia.com/gpu" not in json.dumps(prefilter)
    ray = _by_kind(docs, "RayCluster")["dist-distillery-trainer-ray"]
    worker = ray["spec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]
    assert str(worker["resources"]["limits"]["nvidia.com/gpu"]) == "1"
    trainer_env = {e["name"]: e.get("value") for e in _containers(deploys["dist-distillery-trainer"])[0]["env"]}
    assert trainer_env["RAY_ADDRESS"] == "ray://dist-distillery-trainer-ray-head-svc:10001"
    assert _by_kind(docs, "Certificate"), "cert-manager Certificate expected"


def test_secrets_come_from_secrets_only(rendered):
    docs = rendered["secrets-values.yaml"]
    secrets = _by_kind(docs, "Secret")
    assert secrets["dist-distillery-provider-keys"]["stringData"] == {"OPENAI_API_KEY": "sk-test-not-a-real-key"}
    non_secret = json.dumps([d for d in docs if d["kind"] != "Secret"])
    for value in ("sk-test-not-a-real-key", "not-a-real-password", "a-test-token-of-enough-length", "pw@postgres"):
        assert value not in non_secret, f"{value} leaked outside a Secret"
    oracle = _by_kind(docs, "Deployment")["dist-distillery-oracle-gateway"]
    env = {e["name"]: e for e in _containers(oracle)[0]["env"]}
    assert env["OPENAI_API_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "dist-distillery-provider-keys"
    for other in ("dist-distillery-inference", "dist-distillery-prefilter", "dist-distillery-trainer"):
        env = {e["name"] for e in _containers(_by_kind(docs, "Deployment")[other])[0]["env"]}
        assert "OPENAI_API_KEY" not in env, f"{other} must not see provider keys"
    # existingSecret: no chart-managed Secret, the Deployment points at the user's.
    minimal = rendered["minimal-values.yaml"]
    assert "dist-distillery-provider-keys" not in _by_kind(minimal, "Secret")
    oracle = _by_kind(minimal, "Deployment")["dist-distillery-oracle-gateway"]
    env = {e["name"]: e for e in _containers(oracle)[0]["env"]}
    assert env["OPENAI_API_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "my-provider-keys"
    assert env["DISTILLERY_KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "my-kafka"


def test_network_policies_allow_only_what_each_service_needs(rendered):
    policies = _by_kind(rendered["defaults"], "NetworkPolicy")

    def egress_ports(name):
        return {p["port"] for rule in policies[name]["spec"]["egress"] for p in rule.get("ports", [])}

    assert 443 in egress_ports("dist-distillery-oracle-gateway"), "the gateway must reach the providers"
    for name in ("dist-distillery-inference", "dist-distillery-prefilter", "dist-distillery-trainer"):
        assert 443 not in egress_ports(name), f"{name} must not reach the internet"
    assert 5432 in egress_ports("dist-distillery-trainer") and 5432 not in egress_ports("dist-distillery-inference")
    assert 6379 in egress_ports("dist-distillery-oracle-gateway")
    for policy in policies.values():
        assert set(policy["spec"]["policyTypes"]) == {"Ingress", "Egress"}


def test_filters_and_dashboards_ship_as_configmaps(rendered):
    docs = rendered["defaults"]
    filters = _by_kind(docs, "ConfigMap")["dist-distillery-filters"]["data"]
    expected = {p.relative_to(ROOT / "filters").as_posix().replace("/", "__")
                for p in (ROOT / "filters").rglob("*") if p.is_file()}
    assert expected and set(filters) == expected
    deploy = _by_kind(docs, "Deployment")["dist-distillery-inference"]
    items = next(v for v in deploy["spec"]["template"]["spec"]["volumes"] if v["name"] == "filters")["configMap"]
    assert {i["path"] for i in items["items"]} == {k.replace("__", "/") for k in expected}
    dashboards = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["labels"].get("grafana_dashboard") == "1"]
    assert len(dashboards) == len(list((CHART / "dashboards").glob("*.json"))) == 5
    for cm in dashboards:
        (body,) = cm["data"].values()
        assert json.loads(body)["panels"]


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_prometheus_rule_resource_passes_promtool(rendered, tmp_path):
    (rule,) = _by_kind(rendered["defaults"], "PrometheusRule").values()
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    out = subprocess.run(["promtool", "check", "rules", str(path)], check=False, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    alerts = {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r}
    assert "DistilleryServiceDown" in alerts


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"services": {"inference": {"replicas": -1}}}, "/services/inference/replicas"),
        ({"security": {"auth": {"mode": "password"}}}, "/security/auth/mode"),
        ({"services": {"trainer": {"ray": {"mode": "external"}}}}, "/services/trainer/ray/address"),
        ({"services": {"inference": {"gpu": {"enabled": True, "count": 0}}}}, "/services/inference/gpu/count"),
        ({"podSecurityContext": {"runAsNonRoot": False}}, "/podSecurityContext/runAsNonRoot"),
        ({"image": {"tag": ""}}, "/image/tag"),
        ({"servics": {}}, "servics"),
    ],
)
def test_schema_rejects_bad_values_with_a_clear_message(values, message):
    with pytest.raises(helm.HelmValuesError) as info:
        render(values)
    assert message in str(info.value)


@pytest.mark.parametrize("folder", ["prefilter", "oracle_gateway", "trainer", "inference"])
def test_rendered_config_is_valid_for_each_service(rendered, folder, tmp_path):
    """The chart's distillery.yaml loads with each service's settings class."""
    import importlib

    from distillery.config import ServiceSettings

    module = importlib.import_module(f"distillery_services.{folder}.config")
    classes = [
        v for v in vars(module).values()
        if isinstance(v, type) and issubclass(v, ServiceSettings) and v.__module__ == module.__name__
        and v.section == folder
    ]
    assert classes
    for values_file, docs in rendered.items():
        config = _by_kind(docs, "ConfigMap")["dist-distillery-config"]["data"]["distillery.yaml"]
        path = tmp_path / f"{values_file}.yaml"
        path.write_text(config)
        classes[0].load(path)


def test_token_auth_needs_stable_tokens_and_says_how():
    """No lookup, no random value: pure defaults fail with what to set; the same values render the same Secret."""
    with pytest.raises(Exception, match="existingSecret") as info:
        render({})
    assert "tokens" in str(info.value) and "docs/operations.md" in str(info.value)
    first, second = (_by_kind(render(DEFAULTS), "Secret")["dist-distillery-grpc-auth"] for _ in range(2))
    assert first == second
    assert first["stringData"] == {f"{role}-token": value for role, value in ROLE_TOKENS.items()}
    template = (CHART / "templates" / "secret.yaml").read_text()
    assert "lookup \"" not in template and "randAlpha" not in template


def test_an_existing_token_secret_is_used_as_is():
    docs = render({"security": {"auth": {"existingSecret": "my-grpc-tokens"}}})
    assert "dist-distillery-grpc-auth" not in _by_kind(docs, "Secret")
    for deploy in _by_kind(docs, "Deployment").values():
        refs = [e["valueFrom"]["secretKeyRef"] for e in _containers(deploy)[0]["env"]
                if e["name"].endswith("_TOKEN") and "AUTH" in e["name"]]
        assert {r["name"] for r in refs} == {"my-grpc-tokens"}
        assert {r["key"] for r in refs} == {"token", "scoring-token", "labelling-token", "admin-token"}
