"""The chart's training Ray cluster: KubeRay head/worker groups (GPU workers for fine-tuning) with the model cache
and the registry's storage on every node, the trainer's RAY_ADDRESS pointing at it, and the one-off RayJob."""

from __future__ import annotations

import pytest

from tests.deploy.test_chart import DEFAULTS, _by_kind, _containers, render

pytest.importorskip("helm_python", reason="helm-python-sdk not installed (dev extra)")

RAY = {"mode": "kuberay", "modelCache": {"existingClaim": "models"},
       "kuberay": {"gpuWorkers": {"enabled": True, "gpu": 2}}}


def _values(**ray) -> dict:
    return {**DEFAULTS, "services": {"trainer": {"ray": {**RAY, **ray}}}}


def _env(container) -> dict:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def _pods(cluster_spec) -> dict:
    pods = {"head": cluster_spec["headGroupSpec"]["template"]["spec"]}
    pods.update({g["groupName"]: g["template"]["spec"] for g in cluster_spec["workerGroupSpecs"]})
    return pods


def test_every_ray_node_gets_the_model_cache_offline_and_the_registry():
    docs = render(_values())
    cluster = _by_kind(docs, "RayCluster")["dist-distillery-trainer-ray"]["spec"]
    pods = _pods(cluster)
    assert set(pods) == {"head", "workers", "gpu-workers"}
    for name, pod in pods.items():
        container = pod["containers"][0]
        env = _env(container)
        assert env["DISTILLERY_MODEL_CACHE"] == "/models", name
        assert env["HF_HUB_OFFLINE"] == "1", name
        assert env["DISTILLERY_REGISTRY_URI"] == "/registry", name  # checkpoints go where every node can reach
        mounts = {m["name"]: m for m in container["volumeMounts"]}
        assert mounts["model-cache"]["mountPath"] == "/models" and mounts["model-cache"]["readOnly"] is True
        assert mounts["registry"]["mountPath"] == "/registry"
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes["model-cache"]["persistentVolumeClaim"]["claimName"] == "models"
        assert "medium" not in volumes["tmp"]["emptyDir"], "Ray's /tmp must be disk, not the pod's memory"
    gpu = pods["gpu-workers"]
    assert str(gpu["containers"][0]["resources"]["limits"]["nvidia.com/gpu"]) == "2"
    assert gpu["runtimeClassName"] == "nvidia" and gpu["containers"][0]["image"].endswith("-cuda")
    assert "nvidia.com/gpu" not in str(pods["workers"]["containers"][0]["resources"])
    assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "1"
    assert "command" not in pods["workers"]["containers"][0], "KubeRay generates the workers' ray start"

    trainer = _containers(_by_kind(docs, "Deployment")["dist-distillery-trainer"])[0]
    env = _env(trainer)
    assert env["RAY_ADDRESS"] == "ray://dist-distillery-trainer-ray-head-svc:10001"
    assert env["DISTILLERY_MODEL_CACHE"] == "/models"
    assert any(m["name"] == "model-cache" for m in trainer["volumeMounts"])


def test_a_model_cache_uri_needs_no_volume_and_an_s3_registry_reaches_the_nodes():
    values = _values(modelCache={"uri": "s3://models-bucket/hf"})
    values["services"]["trainer"]["registry"] = {"uri": "s3://reg/models",
                                                 "s3": {"endpoint": "http://minio:9000", "existingSecret": "s3"}}
    cluster = _by_kind(render(values), "RayCluster")["dist-distillery-trainer-ray"]["spec"]
    for name, pod in _pods(cluster).items():
        env = _env(pod["containers"][0])
        assert env["DISTILLERY_MODEL_CACHE"] == "s3://models-bucket/hf", name
        assert env["DISTILLERY_REGISTRY_URI"] == "s3://reg/models", name
        assert env["AWS_ENDPOINT_URL_S3"] == "http://minio:9000", name
        assert env["AWS_ACCESS_KEY_ID"]["secretKeyRef"]["name"] == "s3", name  # credentials from the Secret only
        assert {v["name"] for v in pod["volumes"]}.isdisjoint({"model-cache", "registry"}), name


def test_ray_job_trains_one_filter_once_on_its_own_cluster():
    docs = render(_values(rayJob={"enabled": True, "filter": "uplifting/v1", "kind": "stack",
                                  "params": {"folds": 5}, "promote": True}))
    job = _by_kind(docs, "RayJob")["dist-distillery-trainer-train-uplifting-v1"]["spec"]
    entry = job["entrypoint"]
    assert entry.startswith("distillery train --filter \"uplifting/v1\"")
    for part in ('--kind "stack"', '--param "folds=5"', "--promote", '--registry "$DISTILLERY_REGISTRY_URI"'):
        assert part in entry
    assert job["shutdownAfterJobFinishes"] is True
    head = job["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
    assert any(m["mountPath"] == "/app/filters" for m in head["containers"][0]["volumeMounts"])


def test_a_ray_job_without_a_filter_is_refused():
    with pytest.raises(Exception, match="rayJob.filter is required"):
        render(_values(rayJob={"enabled": True}))
