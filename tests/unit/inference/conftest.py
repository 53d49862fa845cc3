"""A tiny deterministic student and model source for unit tests (no registry, no torch)."""

from __future__ import annotations

import threading
import time

import numpy as np
from distillery_services.inference.models import CHEAP, PRIMARY, ModelRef, Prediction, SharedOutput


class KeywordModel:
    """Score = count of 'good' words x 2 per dimension; interval width configurable; optional delay."""

    def __init__(self, dimensions, version="v1", kind="lexical", width=1.0, delay=0.0, offset=0.0, spread=None):
        self.dimensions = list(dimensions)
        self.version = version
        self.kind = kind
        self.width = width
        self.delay = delay
        self.offset = offset
        self.spread = spread  # an ensemble's member spread, the same for every dimension
        self.batches: list[int] = []
        self.calls = 0

    def predict(self, texts):
        self.calls += len(texts)
        self.batches.append(len(texts))
        if self.delay:
            time.sleep(self.delay)
        base = np.array([min(10.0, 2.0 * t.lower().count("good") + self.offset) for t in texts])
        raw = np.repeat(base[:, None], len(self.dimensions), axis=1)
        spread = None if self.spread is None else np.full_like(raw, self.spread)
        return Prediction(raw, raw.copy(), raw - self.width / 2, raw + self.width / 2, spread=spread)

    def cost(self, text):
        return max(1, len(text) // 4)


class CountingEncoder:
    """The shared expensive part: 'embeds' a text as its count of 'good' words, and counts its passes."""

    def __init__(self, delay=0.0):
        self.delay = delay
        self.passes: list[int] = []  # batch size of each forward pass
        self.lock = threading.Lock()

    def embed(self, texts):
        with self.lock:
            self.passes.append(len(texts))
        if self.delay:
            time.sleep(self.delay)
        return np.array([[t.lower().count("good")] for t in texts], dtype=np.float64)


class SharedKeywordModel:
    """KeywordModel's scores from a CountingEncoder that models of other filters may share (a SharedModel)."""

    def __init__(self, dimensions, encoder, version="v1", kind="probe", offset=0.0, width=1.0):
        self.dimensions = list(dimensions)
        self.encoder = encoder
        self.version = version
        self.kind = kind
        self.offset = offset
        self.width = width
        self.share_key = ("counting-encoder", id(encoder))
        self.share_label = f"encoder:counting-{id(encoder)}"

    def forward(self, texts):
        return SharedOutput(self.encoder.embed(texts))

    def finish(self, shared, rows):
        base = np.minimum(10.0, 2.0 * shared.value[list(rows), 0] + self.offset)
        raw = np.repeat(base[:, None], len(self.dimensions), axis=1)
        return Prediction(raw, raw.copy(), raw - self.width / 2, raw + self.width / 2)

    def predict(self, texts):
        return self.finish(self.forward(texts), range(len(texts)))

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


__all__ = ["CHEAP", "PRIMARY", "CountingEncoder", "DictSource", "KeywordModel", "SharedKeywordModel"]


import types

import pytest


@pytest.fixture
def kit():
    """The helpers above (test files cannot import each other under --import-mode=importlib)."""
    return types.SimpleNamespace(CHEAP=CHEAP, PRIMARY=PRIMARY, DictSource=DictSource, KeywordModel=KeywordModel,
                                 CountingEncoder=CountingEncoder, SharedKeywordModel=SharedKeywordModel)
