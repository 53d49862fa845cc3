"""The cluster in a box: the rendered chart's pods and the external servers, each on its own host.

``Cluster`` owns every resource it creates (namespaces, bridge, cgroups, processes, the run folder) and
releases them in ``close()``, which runs on failure and on Ctrl-C/SIGTERM too (``with Cluster(...)``).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from typing_extensions import Self

from .chart import VENV, ChartError, Manifests, PodTemplate, expand, read_image
from .netns import PREFIX, Host, Network, remove_stale
from .pods import PodRunner, PodSpec, remove_stale_cgroups

BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
FORWARD = Path(__file__).resolve().parent / "forward.py"


class ClusterError(RuntimeError):
    """A step of the cluster did not happen in time; the message names it and holds the relevant log tail."""


@dataclass
class RunningPod:
    name: str
    template: PodTemplate
    host: Host
    env: dict[str, str]
    ports: dict[str, int] = field(default_factory=dict)  # container port name -> number
    root: Path | None = None  # the pod's own folder (its volumes and mount points)


class Cluster:
    def __init__(self, manifests: Manifests, run_dir: Path, externals: dict[str, str]):
        """``externals``: name the chart uses -> 'kafka' | 'gateway' | 's3' (which host answers it)."""
        self.m = manifests
        self.run_dir = run_dir
        self.externals = externals
        self.net = Network()
        self.runner = PodRunner(self.net.tag, run_dir / "logs")
        self.pods: dict[str, RunningPod] = {}
        self.names: dict[str, list[str]] = {}
        self._closed = False
        self._old_handlers: dict[int, object] = {}

    # -- lifecycle ------------------------------------------------------------------------------------
    def __enter__(self) -> Self:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # also when started with SIGINT ignored
            self._old_handlers[sig] = signal.signal(sig, self._on_signal)
        try:
            remove_stale()
            remove_stale_cgroups(PREFIX)
            (self.run_dir / "logs").mkdir(parents=True, exist_ok=True)
            self.net.create()
            self.runner.__enter__()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _on_signal(self, signum, _frame) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self.runner.shutdown()
        finally:
            self.net.destroy()
            for sig, handler in self._old_handlers.items():
                signal.signal(sig, handler)

    # -- hosts ----------------------------------------------------------------------------------------
    def host(self, name: str) -> Host:
        return self.net.add_host(name)

    def start_process(self, name: str, host: Host, argv: list[str], env: dict[str, str] | None = None,
                      restart: str = "Always", owner: str = "") -> None:
        cwd = self.run_dir / f"x-{name}"
        cwd.mkdir(parents=True, exist_ok=True)
        base = {"PATH": f"{VENV / 'bin'}:{BASE_PATH}", "HOME": str(cwd), "LANG": "C.UTF-8"}
        self.runner.start(PodSpec(name, argv, {**base, **(env or {})}, cwd, restart, owner), host)

    def start_forwarder(self, rules: list[str], name: str = "forwarder") -> None:
        """TCP forwarders in the root namespace (listen=backend,...), one process."""
        root = Host(name=name, netns="", address=self.net.gateway, veth="")
        self.start_process(name, root, [str(VENV / "bin" / "python"), str(FORWARD), *rules])

    # -- pods from the chart --------------------------------------------------------------------------
    def plan(self) -> list[tuple[str, PodTemplate]]:
        """(pod name, template) for every pod the rendered workloads ask for; hosts allocated, not started."""
        planned = []
        for tmpl in self.m.templates():
            for i in range(tmpl.replicas):
                name = f"{tmpl.owner}-{i}"
                planned.append((name, tmpl))
        return planned

    def allocate(self, planned: list[tuple[str, PodTemplate]]) -> None:
        for name, tmpl in planned:
            host = self.host(name)
            self.pods[name] = RunningPod(name, tmpl, host, {})

    def resolve_names(self, extra: dict[str, list[str]]) -> list[str]:
        """Service names -> addresses in every pod's hosts file; ClusterIP Services get a virtual IP whose
        forwarder spreads connections over the selected pods. Returns the forwarder rules."""
        rules = []
        names = dict(extra)
        for svc in self.m.services:
            members = [p for p in self.pods.values() if svc.selector and
                       all(p.template.labels.get(k) == v for k, v in svc.selector.items())]
            if svc.headless:
                addresses = [p.host.address for p in members]
            else:
                vip = self.net.add_vip()
                addresses = [vip]
                for port in svc.ports:
                    backends = [f"{p.host.address}:{_target_port(p, port)}" for p in members]
                    if backends:
                        rules.append(f"{vip}:{port['port']}=" + ",".join(backends))
            for alias in _aliases(svc.name):
                names[alias] = addresses
        head_svc = self.m.ray_head_service()
        if head_svc:
            heads = [p.host.address for p in self.pods.values() if p.template.ray_role == "head"]
            for alias in _aliases(head_svc):
                names[alias] = heads
        self.names = names
        self.net.write_hosts(names)
        return rules

    def start_pod(self, name: str) -> None:
        pod = self.pods[name]
        spec = self.container_process(pod)
        self.runner.start(spec, pod.host)

    def container_process(self, pod: RunningPod) -> PodSpec:
        tmpl = pod.template
        if tmpl.spec.get("initContainers"):
            raise ChartError(f"{tmpl.owner}: initContainers are not run by the harness")
        c = tmpl.spec["containers"][0]
        image = read_image(c["image"])
        root = self.run_dir / f"p{pod.host.netns.rsplit('-', 1)[-1]}"
        fs = root / "fs"
        mounts = self._mount(pod, c, root, fs)
        # /tmp is not remapped: the pod's folder is mounted over /tmp in its own mount namespace (a container's
        # /tmp is its own, with or without a volume there; Ray keeps its sockets and session there)
        private_tmp = (fs / "tmp").resolve() if "/tmp" in mounts else root / "tmp"
        mounts = [m for m in mounts if m != "/tmp"]

        def remap(value: str) -> str:
            value = value.replace("/opt/venv", str(VENV))
            for path in mounts:
                if value == path or value.startswith(path + "/"):
                    return str(fs) + value
            return value

        env: dict[str, str] = {}
        for key, value in image.env.items():
            env[key] = remap(value.replace("$PATH", BASE_PATH))
        env["HOSTNAME"] = pod.name
        for item in c.get("envFrom") or []:
            ref = item.get("secretRef") or item.get("configMapRef")
            store = self.m.secrets if "secretRef" in item else self.m.configmaps
            env.update({item.get("prefix", "") + k: v for k, v in (store.get(ref["name"]) or {}).items()})
        for item in c.get("env") or []:
            value = self._env_value(pod, item)
            if value is not None:
                env[item["name"]] = remap(expand(value, env))
        if tmpl.owner_kind == "Deployment":
            # a sitecustomize reports each third-party module the project's code loads to the pod's log, so the
            # test can check it against the image's extra
            from .images import AUDIT

            env["PYTHONPATH"] = ":".join(p for p in (str(AUDIT), env.get("PYTHONPATH", "")) if p)
        command = c.get("command") or []
        args = c.get("args") or []
        argv = (command or image.entrypoint) + (args or ([] if command else image.cmd))
        argv = [remap(expand(a, env)) for a in argv]
        if tmpl.ray_role:
            argv = self._ray_argv(pod, argv, c)
        if not argv:
            raise ChartError(f"{tmpl.owner}: no command (no ENTRYPOINT in the image and no command in the pod)")
        pod.env = env
        pod.root = root
        pod.ports = {p["name"]: int(p["containerPort"]) for p in c.get("ports") or [] if p.get("name")}
        workdir = Path(remap(c.get("workingDir") or image.workdir))
        if not str(workdir).startswith(str(root)):
            workdir = fs / str(workdir).lstrip("/")
        return PodSpec(pod.name, argv, env, workdir, tmpl.restart_policy, tmpl.owner, private_tmp)

    def _mount(self, pod: RunningPod, c: dict, root: Path, fs: Path) -> list[str]:
        volumes = {v["name"]: v for v in pod.template.spec.get("volumes") or []}
        paths = []
        for vm in c.get("volumeMounts") or []:
            vol = volumes.get(vm["name"])
            if vol is None:
                raise ChartError(f"{pod.template.owner}: volumeMount {vm['name']} has no volume")
            files = self.m.volume_files(vol)
            if files is not None:
                source = root / "vol" / vm["name"]
                for rel, content in files.items():
                    target = source / rel
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_text(content)
            elif "emptyDir" in vol:
                source = root / "vol" / vm["name"]
            elif "persistentVolumeClaim" in vol:
                source = self.run_dir / "pvc" / vol["persistentVolumeClaim"]["claimName"]
            else:
                raise ChartError(f"{pod.template.owner}: volume {vm['name']} of an unsupported kind {sorted(vol)}")
            source.mkdir(parents=True, exist_ok=True)
            if vm.get("subPath"):
                source = source / vm["subPath"]
            target = fs / vm["mountPath"].lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.is_symlink():
                target.symlink_to(source)
            paths.append(vm["mountPath"].rstrip("/") or "/")
        return sorted(paths, key=len, reverse=True)

    def _env_value(self, pod: RunningPod, item: dict) -> str | None:
        if "value" in item:
            return str(item["value"])
        src = item.get("valueFrom") or {}
        if "secretKeyRef" in src:
            return self.m.lookup(src["secretKeyRef"], "secret")
        if "configMapKeyRef" in src:
            return self.m.lookup(src["configMapKeyRef"], "configmap")
        if "fieldRef" in src:
            path = src["fieldRef"]["fieldPath"]
            fields = {"status.podIP": pod.host.address, "metadata.name": pod.name,
                      "metadata.namespace": "distillery", "spec.nodeName": "node-0"}
            if path not in fields:
                raise ChartError(f"{pod.template.owner}: fieldRef {path} is not provided by the harness")
            return fields[path]
        if "resourceFieldRef" in src:
            raise ChartError(f"{pod.template.owner}: resourceFieldRef is not provided by the harness")
        return ""

    def _ray_argv(self, pod: RunningPod, argv: list[str], c: dict) -> list[str]:
        """What KubeRay runs in a Ray node's container: its generated ``ray start`` (the head: ``--head`` on
        6379 with the client server on 10001; a worker: ``--address=<head svc>:6379``), the group's
        ``rayStartParams`` (``"true"`` renders as a bare flag), the pod's address as node address and the
        container's CPU limit as ``--num-cpus``. A container that sets ``command`` keeps it, followed by these."""
        tmpl = pod.template
        if not c.get("command"):
            argv = ["ray", "start", "--block"]
            argv += (["--head", "--port=6379", "--ray-client-server-port=10001"] if tmpl.ray_role == "head"
                     else [f"--address={self.m.ray_head_service()}:6379"])
        given = {a.split("=")[0] for a in argv}
        extra = {"node-ip-address": pod.host.address, **tmpl.ray_start_params}
        cpu = str(((c.get("resources") or {}).get("limits") or {}).get("cpu", ""))
        if cpu:
            extra.setdefault("num-cpus", str(int(cpu[:-1]) // 1000 if cpu.endswith("m") else int(float(cpu))))
        for key, value in extra.items():
            if f"--{key}" in given:
                continue
            valued = str(value).lower() != "true" or key in ("include-dashboard", "log-color")
            argv.append(f"--{key}={value}" if valued else f"--{key}")
        return argv

    # -- readiness ------------------------------------------------------------------------------------
    def ready(self, name: str) -> bool:
        """The pod's readinessProbe (grpc, tcpSocket or exec) passes; no probe: its process is running."""
        pod = self.pods[name]
        state = self.runner.pods.get(name)
        if state is None or not state.running:
            return False
        c = pod.template.spec["containers"][0]
        probe = c.get("readinessProbe")
        if pod.template.ray_role == "head":
            return _accepting(pod.host.address, 6379)
        if not probe:
            return True
        if "grpc" in probe:
            return _grpc_serving(pod.host.address, int(probe["grpc"]["port"]), probe["grpc"].get("service", ""))
        if "tcpSocket" in probe:
            port = probe["tcpSocket"]["port"]
            return _accepting(pod.host.address, pod.ports.get(port, port) if isinstance(port, str) else port)
        if "exec" in probe:
            proc = subprocess.run([*pod.host.exec_prefix(), *probe["exec"]["command"]], env=pod.env,
                                  check=False, capture_output=True, timeout=probe.get("timeoutSeconds", 5) + 5)
            return proc.returncode == 0
        raise ChartError(f"{pod.template.owner}: readinessProbe kind {sorted(probe)} is not supported")

    def wait_ready(self, names: list[str], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        pending = list(names)
        while pending and time.monotonic() < deadline:
            pending = [n for n in pending if not self.ready(n)]
            if pending:
                time.sleep(1.0)
        if pending:
            tails = "\n".join(f"--- {n} (restarts {self.runner.pods[n].restarts}, exits "
                              f"{self.runner.pods[n].exits}):\n{self.runner.pods[n].log_tail(15)}" for n in pending)
            raise ClusterError(f"{what}: not ready after {timeout:.0f}s: {', '.join(pending)}\n{tails}")

    def import_gaps(self) -> dict[str, list[str]]:
        """Per service pod: modules its process imported at the project's request that its image's extra does
        not install."""
        from . import images
        from .chart import service_of

        gaps: dict[str, list[str]] = {}
        for name, pod in self.pods.items():
            if pod.template.owner_kind != "Deployment" or name not in self.runner.pods:
                continue
            log = self.runner.pods[name].log_path.read_text(errors="replace").splitlines()
            modules = images.runtime_needs(log)
            service = service_of(pod.template.spec["containers"][0]["image"])
            gap = images.missing(modules, images.extra_of(service))
            if gap:
                gaps[name] = gap
        return gaps

    def log_tails(self, lines: int = 20) -> str:
        return "\n".join(f"--- {n} (restarts {p.restarts}, exits {p.exits}):\n{p.log_tail(lines)}"
                         for n, p in self.runner.pods.items())

    def keep_logs(self, dest: Path) -> None:
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(self.run_dir / "logs", dest)


def _aliases(name: str, namespace: str = "distillery") -> list[str]:
    return [name, f"{name}.{namespace}", f"{name}.{namespace}.svc", f"{name}.{namespace}.svc.cluster.local"]


def _target_port(pod: RunningPod, port: dict) -> int:
    target = port.get("targetPort", port["port"])
    if isinstance(target, int):
        return target
    c = pod.template.spec["containers"][0]
    for p in c.get("ports") or []:
        if p.get("name") == target:
            return int(p["containerPort"])
    raise ChartError(f"Service port {port.get('name')}: targetPort {target} is not a port of {pod.template.owner}")


def _accepting(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _grpc_serving(host: str, port: int, service: str = "") -> bool:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(f"{host}:{port}") as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service),
                                                              timeout=2)
        except grpc.RpcError:
            return False
    return reply.status == health_pb2.HealthCheckResponse.SERVING


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
