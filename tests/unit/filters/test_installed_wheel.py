"""An installed wheel has no repository root: its example filters ship inside the package and every CLI
command finds them (after ./filters); its state goes to the current folder, never into site-packages."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]

PROBE = """
import json, sys
from distillery.config import DEFAULT_FILTERS_DIR, DEFAULT_STATE_DIR
from distillery.filters.search import discover, search_path
import distillery
print(json.dumps({"package": distillery.__file__, "filters_dir": str(DEFAULT_FILTERS_DIR),
                  "state_dir": str(DEFAULT_STATE_DIR), "path": [str(p) for p in search_path()],
                  "names": discover().names()}))
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(out), str(ROOT)], capture_output=True, text=True, timeout=300, check=False)
    if build.returncode != 0:
        pytest.fail(f"building the wheel failed: {build.stderr[-2000:]}")
    [whl] = out.glob("*.whl")
    return whl


def test_the_wheel_ships_the_example_filters(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    shipped = {n.split("/")[2] for n in names if n.startswith("distillery/_shipped_filters/") and
               n.endswith("/filter.yaml")}
    examples = {p.parent.parent.name for p in (ROOT / "filters").glob("*/v*/filter.yaml")}
    assert shipped == examples and examples


def test_an_installed_wheel_finds_shipped_and_local_filters(wheel, tmp_path):
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    work = tmp_path / "project"
    (work / "filters" / "belonging" / "v1").mkdir(parents=True)
    from distillery.filters.scaffold import new_filter

    new_filter("belonging", 3, work / "filters", force=True)
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=work, capture_output=True, text=True, timeout=120,
                         env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"}, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    import json

    info = json.loads(out.stdout)
    assert info["package"].startswith(str(site))  # the wheel's copy, not the checkout
    assert info["filters_dir"] == str(site / "distillery" / "_shipped_filters")
    assert info["state_dir"] == str(work / ".distillery")  # never inside site-packages
    assert info["path"] == ["filters", str(site / "distillery" / "_shipped_filters")]
    assert "belonging" in info["names"] and "uplifting" in info["names"]
