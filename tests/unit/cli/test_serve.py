"""`distillery serve NAME --help` shows that service's own flags, not the generic `serve` help."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

CLI = Path(sys.executable).parent / "distillery"


@pytest.mark.parametrize("service, flag", [("prefilter", "--max-request-articles"), ("inference", "--port")])
def test_serve_service_help_lists_the_service_flags(service, flag):
    out = subprocess.run([str(CLI), "serve", service, "--help"], check=False, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert f"usage: distillery serve {service}" in out.stdout and flag in out.stdout


def test_serve_help_without_a_service_lists_the_services():
    out = subprocess.run([str(CLI), "serve", "--help"], check=False, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    assert "services: prefilter, oracle_gateway, trainer, inference" in out.stdout
    missing = subprocess.run([str(CLI), "serve"], check=False, capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "services:" in missing.stdout
