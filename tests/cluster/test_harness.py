"""The harness's layers on their own (seconds): hosts and names, pods and restarts, pods from the chart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from .cluster import Cluster
from .netns import Network
from .pods import PodRunner, PodSpec
from .scenario import load_manifests

PY = sys.executable


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for its reaper counts as dead)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def _in(host, *argv) -> subprocess.CompletedProcess:
    return subprocess.run([*host.exec_prefix(), *argv], check=False, capture_output=True, text=True, timeout=90)


def test_hosts_reach_each_other_by_name_and_nothing_is_left(tmp_path):
    with Network() as net:
        a, b = net.add_host("alpha"), net.add_host("beta")
        net.write_hosts({"svc-b": [b.address]})
        assert a.address != b.address
        server = subprocess.Popen([*b.exec_prefix(), PY, "-c",
                                   ("import socket; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, "
                                   "socket.SO_REUSEADDR, 1); s.bind(('0.0.0.0', 7000)); s.listen(); "
                                   "c,_=s.accept(); c.sendall(b'hello'); c.close()")])
        try:
            probe = ("import socket, time\nfor _ in range(600):\n try:\n  s=socket.create_connection(('svc-b', 7000));"
                     " break\n except OSError: time.sleep(0.1)\nprint(s.recv(5).decode(), socket.gethostbyname('svc-b'))")
            out = _in(a, PY, "-c", probe)
            assert out.stdout.split() == ["hello", b.address], out.stderr
            # a name the pod's hosts file lacks fails at once (no DNS server reachable), it does not hang
            assert _in(a, "getent", "hosts", "not-a-service").returncode != 0
            # the root namespace's loopback is not the pod's
            assert _in(a, PY, "-c", "import socket; socket.create_connection(('127.0.0.1', 5432), timeout=1)"
                       ).returncode != 0
        finally:
            server.kill()
            server.wait()
        names = {h.netns for h in net.hosts.values()}
        bridge = net.bridge
    left = subprocess.run(["ip", "netns", "list"], check=False, capture_output=True, text=True).stdout
    assert not any(n in left for n in names)
    assert subprocess.run(["ip", "link", "show", bridge], check=False, capture_output=True).returncode != 0


@pytest.mark.parametrize("cgroups", [True, False], ids=["cgroups", "process-tree"])
def test_pods_restart_by_policy_and_a_kill_takes_the_whole_tree(tmp_path, cgroups):
    with Network() as net, PodRunner(net.tag, tmp_path, cgroups=cgroups) as runner:
        host = net.add_host("p")
        env = {"PATH": os.environ["PATH"]}
        # a pod that starts a child in its own session (as daemons do) and then blocks
        tree = ("import subprocess, time, sys; c = subprocess.Popen(['sleep', '300'], start_new_session=True);"
                "print(c.pid, flush=True); time.sleep(300)")
        always = runner.start(PodSpec("always", [PY, "-c", tree], env, tmp_path / "a"), host)
        done = runner.start(PodSpec("job", [PY, "-c", "print('ok')"], env, tmp_path / "j", "OnFailure"), host)
        failing = runner.start(PodSpec("fail", [PY, "-c", "raise SystemExit(3)"], env, tmp_path / "f", "OnFailure"),
                               host)
        assert runner.wait_done("job", 90) == 0
        # a pod's /tmp is its own folder, not the machine's
        marker = f"dcl-private-{os.getpid()}"
        runner.start(PodSpec("tmp", ["sh", "-c", f"echo x > /tmp/{marker}"], env, tmp_path / "t", "OnFailure",
                             private_tmp=tmp_path / "t-tmp"), host)
        assert runner.wait_done("tmp", 90) == 0
        assert (tmp_path / "t-tmp" / marker).exists() and not Path("/tmp", marker).exists()
        deadline = time.monotonic() + 90
        printed: list[str] = []
        while not printed and time.monotonic() < deadline:
            time.sleep(0.1)
            printed = [line for line in always.log_path.read_text().splitlines() if line.isdigit()]
        child = int(printed[0])
        time.sleep(1.5)  # the process-tree mode looks at the tree once a second
        runner.kill("always", signal.SIGKILL)
        deadline = time.monotonic() + 90
        while always.restarts < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert always.restarts == 1 and always.running
        assert not _alive(child)  # the daemonised child died with its pod
        while failing.restarts < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert failing.exits[0] == 3 and failing.restarts >= 1  # OnFailure restarts a failed pod
        assert done.restarts == 0 and done.done
        cgroup = always.cgroup
    assert not cgroup.exists()


def test_pods_from_the_chart_get_the_rendered_environment_and_their_own_files(tmp_path):
    manifests = load_manifests()
    with Cluster(manifests, tmp_path, {}) as cluster:
        planned = cluster.plan()
        cluster.allocate(planned)
        cluster.resolve_names({"kafka": ["10.0.0.9"]})
        specs = {name: cluster.container_process(cluster.pods[name]) for name, _ in planned}
        worker_address = cluster.pods["dist-distillery-trainer-ray-workers-0"].host.address
    inference = specs["dist-distillery-inference-0"]
    assert inference.argv == ["python", "-m", "distillery_services.inference"]  # the image's ENTRYPOINT
    # deploy/Dockerfile with the pod's service as SERVICE: its ENTRYPOINT, and its ENV under the chart's env
    assert specs["dist-distillery-prefilter-0"].argv == ["python", "-m", "distillery_services.prefilter"]
    env = inference.env
    assert env["DISTILLERY_HOME"].endswith("/var/lib/distillery") and env["NUMBA_CACHE_DIR"] == "/tmp/numba"
    # the Secret behind the token is resolved, the ConfigMap is a file where DISTILLERY_CONFIG says
    assert env["DISTILLERY_INFERENCE_AUTH_TOKEN"] == "cluster-test-token"
    config = Path(env["DISTILLERY_CONFIG"])
    assert str(config).startswith(str(tmp_path)) and config.name == "distillery.yaml"
    assert "inference" in yaml.safe_load(config.read_text())
    assert (Path(env["DISTILLERY_INFERENCE_FILTERS_DIR"]) / "uplifting" / "v1" / "filter.yaml").is_file()
    # each replica has its own state folder and /tmp; nothing of one pod is another's
    other = specs["dist-distillery-inference-1"].env
    assert env["DISTILLERY_INFERENCE_STATE_DIR"] != other["DISTILLERY_INFERENCE_STATE_DIR"]
    own_tmp = specs["dist-distillery-inference-0"].private_tmp
    assert own_tmp is not None and own_tmp != specs["dist-distillery-inference-1"].private_tmp
    ray_worker = specs["dist-distillery-trainer-ray-workers-0"].argv
    assert ray_worker[:2] == ["ray", "start"] and "--address=dist-distillery-trainer-ray-head-svc:6379" in ray_worker
    assert f"--node-ip-address={worker_address}" in ray_worker  # the pod's own address, as KubeRay passes it
