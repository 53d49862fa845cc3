"""Build hook: ship the example filter packages inside the wheel (``distillery/_shipped_filters``).

Also maps the services' package: the folder ``services/`` (the design's layout) installs as
``distillery_services``, so a wheel puts nothing generic at the top of site-packages.
Everything else is declared in pyproject.toml. The examples live at the repository root (``filters/``, where
deploy/Dockerfile, the Helm chart and the docs refer to them); an installed wheel has no repository root, so the
build copies them into the package, where ``distillery.filters.search`` finds them.
"""

import shutil
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py


class BuildWithFilters(build_py):
    def run(self):
        super().run()
        source = Path(__file__).resolve().parent / "filters"
        if source.is_dir():
            target = Path(self.build_lib) / "distillery" / "_shipped_filters"
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


SERVICES_PACKAGE = "distillery_services"
PACKAGES = find_packages(include=["distillery", "distillery.*"]) + [
    SERVICES_PACKAGE + name[len("services"):] for name in find_packages(include=["services", "services.*"])
]

setup(
    cmdclass={"build_py": BuildWithFilters},
    packages=PACKAGES,
    package_dir={SERVICES_PACKAGE: "services"},
)
