"""Labelled synthetic articles shared by the student tests."""

from __future__ import annotations

import numpy as np
import pytest

from distillery.students import compose_text
from distillery.testing.labelled import generate

DIMS = ["climate", "evidence", "community"]


@pytest.fixture(scope="session")
def labelled():
    """``labelled(n, seed)`` -> (texts, targets of shape (n, 3)) over the dimensions climate, evidence, community."""

    def make(n: int, seed: int):
        records = generate(DIMS, n, seed=seed, noise=0.5)
        texts = [compose_text(r["title"], r["text"]) for r in records]
        return texts, np.array([[r["dimension_scores"][d] for d in DIMS] for r in records])

    return make


@pytest.fixture(scope="module")
def data(labelled):
    """(train, validation, test) splits of 200, 40 and 60 articles."""
    return labelled(200, 1), labelled(40, 2), labelled(60, 3)
