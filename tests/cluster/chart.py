"""The rendered chart as the harness reads it: pod templates -> processes with the container's environment.

``render`` runs Helm's own engine offline (helm-python-sdk, as tests/deploy does). ``Manifests`` resolves
what a kubelet would: the image's ENTRYPOINT/CMD and ENV (read from deploy/Dockerfile with the image's
service as its SERVICE build argument, target ``cpu``; images.image_config), the container's ``command``/``args``, ``env`` with ``valueFrom`` Secrets/ConfigMaps/fields and
``$(VAR)`` references, and every volume mount.

Images cannot run here, so two things are mapped, and only these:
* ``/opt/venv`` (the image's virtualenv) is the project's ``.venv``;
* every ``mountPath`` (and the image's WORKDIR) lives under the pod's own root folder
  (``<run>/<pod>/fs/<mountPath>``): environment values and arguments that name a mounted path are rewritten
  to it, and ``TMPDIR`` points at the pod's ``/tmp`` mount (a container's /tmp is its own). ConfigMap and
  Secret volumes are written there as files; an emptyDir is a folder of the pod; a PersistentVolumeClaim
  is the one folder shared by the pods that mount it (the only sharing the chart can declare).
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .images import DOCKERFILE, SERVICES, ImageConfig, image_config

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "distillery"
VENV = ROOT / ".venv"
RELEASE = "dist"
NAMESPACE = "distillery"


class ChartError(RuntimeError):
    """The rendered chart asks for something the harness cannot provide; the message says what."""


def render(values: dict, name: str = RELEASE, namespace: str = NAMESPACE) -> list[dict]:
    import helm_python as helm

    out = helm.Chart.load(CHART).render(values, name=name, namespace=namespace, is_install=True)
    docs = []
    for path, text in sorted(out.items()):
        if not path.endswith("NOTES.txt"):
            docs += [d for d in yaml.safe_load_all(text) if d]
    return docs


# -- images -------------------------------------------------------------------------------------------
Image = ImageConfig


def service_of(image: str) -> str:
    """``ghcr.io/llm-distillery/distillery-oracle-gateway:0.1.0`` -> ``oracle_gateway``."""
    repo = image.rsplit(":", 1)[0]
    return repo.rsplit("/", 1)[-1].split("distillery-", 1)[-1].replace("-", "_")


def read_image(image: str) -> Image:
    """ENTRYPOINT/CMD/ENV/WORKDIR of ``<registry>/<prefix>-<service>:<tag>[-cuda]``: deploy/Dockerfile built
    with ``--build-arg SERVICE=<service>``, target ``cuda`` for a ``-cuda`` tag and ``cpu`` otherwise."""
    service = service_of(image)
    if service not in SERVICES:
        raise ChartError(f"image {image}: {DOCKERFILE.relative_to(ROOT)} builds no service {service!r}")
    target = "cuda" if image.endswith("-cuda") else "cpu"
    try:
        return image_config(service, target)
    except KeyError as exc:
        raise ChartError(f"image {image}: {exc.args[0]}") from None


# -- manifests ----------------------------------------------------------------------------------------
@dataclass
class PodTemplate:
    """One pod to run: which workload owns it, its container and volumes, how many copies."""

    owner_kind: str
    owner: str
    replicas: int
    labels: dict[str, str]
    spec: dict
    restart_policy: str
    hook: str = ""  # helm.sh/hook of a Job ("pre-install", "post-install", ...)
    hook_weight: int = 0
    backoff_limit: int = 6
    ray_role: str = ""  # head | worker (RayCluster)
    ray_start_params: dict = field(default_factory=dict)


@dataclass
class ServiceInfo:
    name: str
    selector: dict[str, str]
    headless: bool
    ports: list[dict]


class Manifests:
    def __init__(self, docs: list[dict]):
        self.docs = docs
        self.secrets = {d["metadata"]["name"]: _secret_data(d) for d in docs if d["kind"] == "Secret"}
        self.configmaps = {d["metadata"]["name"]: dict(d.get("data") or {}) for d in docs
                           if d["kind"] == "ConfigMap"}
        self.services = [ServiceInfo(d["metadata"]["name"], d["spec"].get("selector") or {},
                                     d["spec"].get("clusterIP") == "None", d["spec"].get("ports") or [])
                         for d in docs if d["kind"] == "Service"]

    def of_kind(self, kind: str) -> list[dict]:
        return [d for d in self.docs if d["kind"] == kind]

    def templates(self) -> list[PodTemplate]:
        out = []
        for d in self.of_kind("Deployment") + self.of_kind("StatefulSet"):
            t = d["spec"]["template"]
            out.append(PodTemplate(d["kind"], d["metadata"]["name"], int(d["spec"].get("replicas", 1)),
                                   t["metadata"].get("labels") or {}, t["spec"],
                                   t["spec"].get("restartPolicy", "Always")))
        for d in self.of_kind("Job"):
            t = d["spec"]["template"]
            ann = d["metadata"].get("annotations") or {}
            out.append(PodTemplate("Job", d["metadata"]["name"], 1, t["metadata"].get("labels") or {}, t["spec"],
                                   t["spec"].get("restartPolicy", "Never"), hook=ann.get("helm.sh/hook", ""),
                                   hook_weight=int(ann.get("helm.sh/hook-weight", 0)),
                                   backoff_limit=int(d["spec"].get("backoffLimit", 6))))
        for d in self.of_kind("RayCluster"):
            name = d["metadata"]["name"]
            head = d["spec"]["headGroupSpec"]
            out.append(PodTemplate("RayCluster", name, 1, head["template"]["metadata"].get("labels") or {},
                                   head["template"]["spec"], "Always", ray_role="head",
                                   ray_start_params=head.get("rayStartParams") or {}))
            for group in d["spec"].get("workerGroupSpecs") or []:
                out.append(PodTemplate("RayCluster", f"{name}-{group['groupName']}", int(group.get("replicas", 1)),
                                       group["template"]["metadata"].get("labels") or {},
                                       group["template"]["spec"], "Always", ray_role="worker",
                                       ray_start_params=group.get("rayStartParams") or {}))
        return out

    def ray_head_service(self) -> str:
        """KubeRay names the head's Service ``<cluster>-head-svc``."""
        clusters = self.of_kind("RayCluster")
        return f"{clusters[0]['metadata']['name']}-head-svc" if clusters else ""

    # -- one container ------------------------------------------------------------------------------
    def lookup(self, ref: dict, kind: str) -> str | None:
        store = self.secrets if kind == "secret" else self.configmaps
        data = store.get(ref["name"])
        if data is None or ref["key"] not in data:
            if ref.get("optional"):
                return None
            raise ChartError(f"{kind} {ref['name']} key {ref['key']} is not in the rendered chart "
                             "(give it in the cluster values)")
        return data[ref["key"]]

    def volume_files(self, volume: dict) -> dict[str, str] | None:
        """Files of a ConfigMap/Secret volume (relative path -> content); None for other volume kinds."""
        if "configMap" in volume or "secret" in volume:
            kind = "configMap" if "configMap" in volume else "secret"
            src = volume[kind]
            name = src.get("name") or src.get("secretName")
            data = (self.configmaps if kind == "configMap" else self.secrets).get(name)
            if data is None:
                if src.get("optional"):
                    return {}
                raise ChartError(f"volume {volume['name']}: {kind} {name} is not in the rendered chart")
            items = src.get("items")
            if items:
                return {i["path"]: data[i["key"]] for i in items}
            return dict(data)
        return None


def _secret_data(doc: dict) -> dict[str, str]:
    data = {k: base64.b64decode(v).decode() for k, v in (doc.get("data") or {}).items()}
    data.update({k: str(v) for k, v in (doc.get("stringData") or {}).items()})
    return data


def expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes ``$(VAR)`` expansion (``$$(VAR)`` escapes it)."""
    return re.sub(r"\$?\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                  lambda m: m.group(0)[1:] if m.group(0).startswith("$$") else env.get(m.group(1), m.group(0)),
                  value)
