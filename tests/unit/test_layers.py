"""The layers of docs/architecture.md hold: import-linter's contracts, and engines that run without gRPC, Kafka or
the generated messages."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / ".importlinter"

ENTRY_POINTS = {"cli", "demo", "stream_demo", "runtime", "dashboards", "protos"}

# The engines of each service: plain Python that a servicer or a stage drives.
ENGINES = [
    "distillery_services.prefilter.engine",
    "distillery_services.oracle_gateway.engine",
    "distillery_services.oracle_gateway.budget",
    "distillery_services.oracle_gateway.ratelimit",
    "distillery_services.oracle_gateway.jobs",
    "distillery_services.oracle_gateway.batch",
    "distillery_services.oracle_gateway.synthesize",
    "distillery_services.oracle_gateway.consensus",
    "distillery_services.oracle_gateway.providers",
    "distillery_services.inference.engine",
    "distillery_services.inference.batcher",
    "distillery_services.inference.audit",
    "distillery_services.trainer.request",
    "distillery_services.trainer.factory",
    "distillery_services.trainer.training",
    "distillery_services.trainer.multi",
    "distillery_services.trainer.promotion",
    "distillery_services.trainer.predictions",
    "distillery_services.trainer.runner",
    "distillery_services.trainer.validation",
    "distillery_services.trainer.jobs",
    "distillery_services.trainer.datasets",
    "distillery_services.trainer.evaluation",
    "distillery_services.trainer.reports",
    "distillery_services.trainer.retrain",
]


def _contract_modules(key: str) -> set[str]:
    parser = configparser.ConfigParser()
    parser.read(CONFIG)
    section = parser["importlinter:contract:core-below-services"]
    return {line.strip() for line in section[key].splitlines() if line.strip()}


def test_import_contracts_are_kept():
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if lint is None:
        pytest.skip("import-linter is not installed (it is in the dev extra: make setup)")
    result = subprocess.run([lint, "--config", str(CONFIG), "--no-cache"], check=False, cwd=ROOT, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_every_core_module_is_bound_by_the_contracts():
    """A new module under distillery/ must be classified: core (bound by the contracts) or an entry point."""
    core = {name.removeprefix("distillery.") for name in _contract_modules("source_modules")}
    forbidden = {name.removeprefix("distillery.") for name in _contract_modules("forbidden_modules")}
    assert ENTRY_POINTS <= forbidden
    present = {p.stem for p in (ROOT / "distillery").glob("*.py") if p.stem != "__init__"}
    present |= {p.name for p in (ROOT / "distillery").iterdir() if (p / "__init__.py").is_file()}
    unclassified = sorted(present - core - ENTRY_POINTS)
    assert not unclassified, f"add these to .importlinter (core) or to the entry points: {unclassified}"


@pytest.mark.parametrize("module", ENGINES)
def test_engine_imports_without_grpc_or_kafka(module):
    """Engines import in a process where grpc, kafka, confluent_kafka and the generated messages (distillery.v1)
    cannot be imported at all."""
    script = textwrap.dedent(f"""
        import importlib, importlib.abc, sys

        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("grpc", "kafka", "confluent_kafka") or name.startswith("distillery.v1"):
                    raise ImportError(f"{{name}} is blocked: engines must not import it")
                return None

        sys.meta_path.insert(0, Block())
        importlib.import_module({module!r})
    """)
    result = subprocess.run([sys.executable, "-c", script], check=False, cwd=ROOT, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
