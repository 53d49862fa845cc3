"""Unit tests mirror the source tree, so a module's tests are found where the module is.

``tests/unit/<name>/`` holds the tests of the package ``distillery/<name>`` or of the service
``services/<name>`` (the two never share a name), ``tests/unit/benchmarks/`` those of ``benchmarks/``, and
``tests/unit/test_<module>.py`` those of the top-level module ``distillery/<module>.py``.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "tests" / "unit"
# Tests of the whole tree (import layers, this layout, function length), not of one module.
ABOUT_THE_TREE = {"test_layers.py", "test_layout.py", "test_function_length.py"}


def _packages(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir() if (p / "__init__.py").is_file()}


def test_every_unit_test_folder_mirrors_a_package():
    core, services = _packages(ROOT / "distillery"), _packages(ROOT / "services")
    assert not core & services, f"a core package and a service share a name: {core & services}"
    folders = {p.name for p in UNIT.iterdir() if p.is_dir() and p.name != "__pycache__"}
    stray = sorted(folders - core - services - {"benchmarks"})
    assert not stray, f"tests/unit/{stray}: no distillery/ or services/ package of that name"


def test_every_top_level_unit_test_tests_a_top_level_module():
    modules = {p.stem for p in (ROOT / "distillery").glob("*.py")}
    files = {p.name for p in UNIT.glob("test_*.py")} - ABOUT_THE_TREE
    stray = sorted(f for f in files if f.removeprefix("test_").removesuffix(".py") not in modules)
    assert not stray, f"{stray}: no distillery/<module>.py of that name; move them beside what they test"
