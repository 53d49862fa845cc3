"""The cluster tests run only through ``make test-cluster`` (DISTILLERY_TEST_CLUSTER=1): they need root
(network namespaces, cgroups) and take minutes, so ``make test`` does not collect them."""

from __future__ import annotations

import os
import shutil

import pytest

if os.environ.get("DISTILLERY_TEST_CLUSTER") != "1":
    collect_ignore_glob = ["test_*.py"]


@pytest.fixture(scope="session", autouse=True)
def _needs_root():
    if os.geteuid() != 0:
        pytest.fail("the cluster test needs root (ip netns, veth, cgroups); CI and the dev machines run as root")
    if not shutil.which("ip"):
        pytest.fail("the cluster test needs the `ip` command (iproute2)")
