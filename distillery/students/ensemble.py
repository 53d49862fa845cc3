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

from distillery import parallel
from distillery.students.base import Student
from distillery.students.manifest import load_student, make_student, read_manifest, write_manifest
from distillery.students.params import check_params
from distillery.students.parts import encoder_choice, fit_member, member_inputs

SELF_DISTRIBUTED = frozenset({"finetune", "multi"})  # members that spread their own work (Ray Train, encoder)

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
        """Every member is an independent part (spread over the Ray cluster inside a training job); members
        that themselves train on Ray (``finetune``) run one after another, each on the whole cluster."""
        y = np.asarray(targets, dtype=np.float64)
        rng = np.random.default_rng(int(self.params["seed"]))
        texts = list(texts)
        k, kind = int(self.params["k"]), self.params["member_kind"]
        rows = [rng.integers(0, len(texts), len(texts)) if self.params["bootstrap"] else np.arange(len(texts))
                for _ in range(k)]
        if kind in SELF_DISTRIBUTED:
            self.members = []
            for i in range(k):
                member = make_student(kind, self.dimensions, filter=self.filter, **self._member_params(i))
                member.fit([texts[j] for j in rows[i]], y[rows[i]], val_texts, val_targets)
                self.members.append(member)
            return self
        runner = parallel.current()
        val_texts = list(val_texts) if val_texts is not None else None
        val_y = np.asarray(val_targets, dtype=np.float64) if val_targets is not None else None
        shared_texts, shared_val = runner.share(texts), runner.share(val_texts)
        first = make_student(kind, self.dimensions, filter=self.filter, **self._member_params(0))
        X, Xv = member_inputs(runner, first, texts, val_texts, shared_texts, shared_val, y)
        shared_y = runner.share(y)
        choice = encoder_choice(first)  # the runtime the embeddings really came from (auto resolved, int8 gated)
        self.members = runner.map(fit_member, [(kind, self.dimensions, self.filter, {**self._member_params(i), **choice}, X,
                                                shared_y, rows[i], Xv, val_y) for i in range(k)],
                                  stage="ensemble members")
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
