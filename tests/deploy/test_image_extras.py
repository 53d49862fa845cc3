"""Every module a service's code imports when it loads is installed by its image (the extra deploy/Dockerfile
installs for it).

The cluster test (tests/cluster) runs the services from the project's virtualenv, which holds every extra;
an image holds one. This closes the gap statically: starting at ``services/<name>``, follow the module-level
imports of project modules, collect the third-party top-level modules, map them to distributions, and check
each is in the dependency closure of ``llm-distillery[<extra>]`` (imports guarded by ``except ImportError``
and ``if TYPE_CHECKING`` are optional). Imports inside functions depend on configuration: the cluster test
checks those that the scenario's processes actually ran (tests/cluster/test_cluster.py).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# the image/extra helpers shared with the cluster test (tests/ is not a package)
_spec = importlib.util.spec_from_file_location("cluster_images", ROOT / "tests" / "cluster" / "images.py")
images = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = images  # its dataclasses look their module up
_spec.loader.exec_module(images)
SERVICES = list(images.SERVICES)
PROJECT = images.PROJECT


def third_party_imports(service: str) -> dict[str, str]:
    """Top-level third-party module -> the project module that imports it first."""
    seen, todo, found = set(), [f"distillery_services.{service}"], {}
    for path in (ROOT / "services" / service).glob("**/*.py"):
        todo.append("distillery_services." + ".".join(path.relative_to(ROOT / "services").with_suffix("").parts))
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        file = images.module_file(name)
        if file is None:
            continue
        package = name if file.name == "__init__.py" else name.rpartition(".")[0]
        for imported in images.imports_of(file, package, module_level_only=True):
            top = imported.split(".")[0]
            if top in PROJECT:
                parts = imported.split(".")
                todo += [".".join(parts[:i]) for i in range(1, len(parts) + 1)]
            elif top and top not in sys.stdlib_module_names and top != "__future__":
                found.setdefault(top, name)
    return found


@pytest.mark.parametrize("service", SERVICES)
def test_every_import_of_a_service_is_installed_by_its_image(service):
    extra = images.extra_of(service)
    gaps = images.missing(third_party_imports(service), extra)
    assert not gaps, (f"deploy/Dockerfile installs .[{extra}] for {service}, which lacks: " + "; ".join(gaps)
                      + ". Add them to that extra in pyproject.toml or guard the import.")


def test_the_scan_follows_project_modules_to_their_third_party_imports():
    found = third_party_imports("inference")
    assert "grpc" in found and "numpy" in found
    assert "torch" not in third_party_imports("prefilter")  # the prefilter image has no torch
