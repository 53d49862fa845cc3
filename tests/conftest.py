"""Shared fixtures. Real parts only: services run as processes on loopback, brokers and databases are real."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
FILTERS_DIR = REPO_ROOT / "filters"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("DS_BUILD_OPS", "0")
os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(REPO_ROOT / "build" / "torch_extensions"))


@pytest.fixture(scope="session")
def filters_dir() -> Path:
    return FILTERS_DIR


@pytest.fixture(scope="session")
def catalog(filters_dir):
    from distillery.filters import FilterCatalog

    return FilterCatalog.load(filters_dir)


# --- Kafka ------------------------------------------------------------------------------------------
# (owned by the bus module: a session-scoped embedded tansu broker, or DISTILLERY_TEST_KAFKA_BOOTSTRAP)
