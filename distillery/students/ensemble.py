"""``ensemble``: k members of another kind, trained on bootstrap resamples (or only with different seeds).

The prediction is the members' mean; their standard deviation (:meth:`EnsembleStudent.predict_with_spread`)
is an uncertainty signal that the registry's :class:`~distillery.registry.LoadedModel` reports. The inference
service returns it per dimension (``DimensionScore.spread``) and flags a result uncertain when it exceeds the
filter's ``student.uncertain_member_spread``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from distillery.students.base import Student
from distillery.students.manifest import load_student, make_student, read_manifest, write_manifest
from distillery.students.params import check_params

DEFAULTS: dict[str, Any] = {
    "member_kind": "lexical",
    "k": 5,
    "bootstrap": True,
    "seed": 0,
    "member_params": {},  # passed to every member (a JSON object when given as a string)
}


class EnsembleStudent(Student):
    kind = "ensemble"

    def __init__(self, dimensions: Sequence[str], filter: str = "", **params: Any):
        super().__init__(dimensions)
        self.filter = filter
        if isinstance(params.get("member_params"), str):
            import json

            params["member_params"] = json.loads(params["member_params"] or "{}")
        self.params = check_params("ensemble", DEFAULTS, params)
        if self.params["member_kind"] == "ensemble":
            raise ValueError("an ensemble's members cannot be ensembles")
        if int(self.params["k"]) < 2:
            raise ValueError("an ensemble needs k >= 2 members")
        self.members: list[Student] = []

    def _member_params(self, i: int) -> dict[str, Any]:
        params = dict(self.params["member_params"])
        if self.params["member_kind"] in {"probe", "finetune"}:
            params.setdefault("seed", int(self.params["seed"]) + i)
        return params

    def fit(self, texts, targets, val_texts=None, val_targets=None) -> EnsembleStudent:
        y = np.asarray(targets, dtype=np.float64)
        rng = np.random.default_rng(int(self.params["seed"]))
        texts = list(texts)
        self.members = []
        for i in range(int(self.params["k"])):
            idx = rng.integers(0, len(texts), len(texts)) if self.params["bootstrap"] else np.arange(len(texts))
            member = make_student(self.params["member_kind"], self.dimensions, filter=self.filter,
                                  **self._member_params(i))
            member.fit([texts[j] for j in idx], y[idx], val_texts, val_targets)
            self.members.append(member)
        return self

    def predict_members(self, texts: Sequence[str]) -> np.ndarray:
        """Shape (k, n, n_dims)."""
        if not self.members:
            raise RuntimeError("ensemble student is not fitted")
        return np.stack([m.predict(texts) for m in self.members])

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        return self.predict_members(texts).mean(axis=0)

    def predict_with_spread(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Mean prediction and the members' standard deviation, both (n, n_dims)."""
        preds = self.predict_members(texts)
        return preds.mean(axis=0), preds.std(axis=0)

    def save(self, path: Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        for i, member in enumerate(self.members):
            member.save(path / f"member_{i:02d}")
        write_manifest(path, self, {"members": len(self.members)})

    @classmethod
    def load(cls, path: Path) -> EnsembleStudent:
        path = Path(path)
        manifest = read_manifest(path)
        student = cls(manifest["dimensions"], filter=manifest.get("filter", ""), **manifest.get("params", {}))
        student.members = [load_student(path / f"member_{i:02d}") for i in range(int(manifest["members"]))]
        return student
