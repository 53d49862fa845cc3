"""A tiny deterministic student and model source for unit tests (no registry, no torch)."""

from __future__ import annotations

import threading
import time

import numpy as np

from services.inference.models import CHEAP, PRIMARY, ModelRef, Prediction


class KeywordModel:
    """Score = count of 'good' words x 2 per dimension; interval width configurable; optional delay."""

    def __init__(self, dimensions, version="v1", kind="lexical", width=1.0, delay=0.0, offset=0.0):
        self.dimensions = list(dimensions)
        self.version = version
        self.kind = kind
        self.width = width
        self.delay = delay
        self.offset = offset
        self.batches: list[int] = []
        self.calls = 0

    def predict(self, texts):
        self.calls += len(texts)
        self.batches.append(len(texts))
        if self.delay:
            time.sleep(self.delay)
        base = np.array([min(10.0, 2.0 * t.lower().count("good") + self.offset) for t in texts])
        raw = np.repeat(base[:, None], len(self.dimensions), axis=1)
        return Prediction(raw, raw.copy(), raw - self.width / 2, raw + self.width / 2)

    def cost(self, text):
        return max(1, len(text) // 4)


class DictSource:
    """Models by (filter, role); ``promote`` swaps what ``promoted`` reports."""

    def __init__(self):
        self.models: dict[tuple[str, str], KeywordModel] = {}
        self.lock = threading.Lock()

    def promote(self, filter_name, role, model):
        with self.lock:
            self.models[(filter_name, role)] = model

    def promoted(self, spec):
        with self.lock:
            return {role: ModelRef(spec.name, role, m.version, m.kind)
                    for (name, role), m in self.models.items() if name == spec.name}

    def load(self, spec, ref):
        with self.lock:
            return self.models[(spec.name, ref.role)]


__all__ = ["CHEAP", "PRIMARY", "DictSource", "KeywordModel"]


import types

import pytest


@pytest.fixture
def kit():
    """The helpers above (test files cannot import each other under --import-mode=importlib)."""
    return types.SimpleNamespace(CHEAP=CHEAP, PRIMARY=PRIMARY, DictSource=DictSource, KeywordModel=KeywordModel)
