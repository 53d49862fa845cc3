"""``stack``: members of different kinds combined by a meta-model fitted on out-of-fold predictions.

Each member (e.g. ``lexical`` and ``probe``) is fitted ``folds`` times on the training set with one fold held
out, so every training article gets a prediction from a model that never saw it. A per-dimension ridge then
learns how to weigh *every* member's prediction of *every* dimension: the dimensions of a filter are strongly
correlated, so a member's view of one dimension helps the others (cross-dimension stacking). The members are
finally refitted on all the training data. Validation data, when given, is passed to the members (their own
model selection) and left alone by the meta-model, so calibration fitted on it afterwards stays honest.

The meta-model is one of:

- ``distribution`` (the default): per dimension a multinomial logistic head over the score values, whose median
  is the prediction (:mod:`distillery.students.distribution`; calibration may round it to the whole score,
  the ``whole`` map). Oracle scores are whole numbers in two humps for many dimensions; predicting the
  distribution instead of the mean cut the sustainability test MAE from 0.591 to 0.553.
- ``ridge``: fast and smooth, the conditional mean.
- ``boosted``: gradient-boosted trees under absolute error (non-linear, the median).

``meta_embeddings`` adds a probe member's frozen-encoder embedding to the meta-model's inputs, so it can learn
*where* each member is better.

:meth:`StackStudent.predict_with_spread` returns, per dimension, how unsure the prediction is: with distribution
heads the expected absolute error under the predicted distribution (on the real sustainability labels the
uncertain flag built on it picks a 10% share with 2.0x the MAE of the rest, the members' disagreement 1.9x);
with the other meta-models the members' disagreement (standard deviation of their predictions), like an
ensemble's.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from distillery import parallel
from distillery.students.base import Student
from distillery.students.distribution import CALIBRATION_MAPS, DistributionHeads
from distillery.students.manifest import load_student, make_student, read_manifest, write_manifest
from distillery.students.params import check_params
from distillery.students.parts import EMBEDDING_KINDS, encoder_choice, fit_member, member_inputs

DEFAULTS: dict[str, Any] = {
    # [{"kind": "lexical", "params": {...}}, ...]; a JSON string is accepted too (CLI and gRPC params).
    # The probe member's head is ridge: alone an MLP head is better (0.777 vs 0.791 validation MAE on the real
    # sustainability labels), but its out-of-fold predictions are noisier and the stack does worse with it
    # (test MAE 0.560 vs 0.553 under the distribution meta-model; benchmarks/results/accuracy_notes.md).
    "members": [{"kind": "lexical", "params": {}}, {"kind": "probe", "params": {"head": "ridge"}}],
    "folds": 5,
    "alphas": [0.1, 1.0, 10.0, 100.0],  # meta-model ridge strengths, chosen by leave-one-out per dimension
    "meta": "distribution",  # distribution | ridge | boosted
    "distribution_c": 1.0,  # inverse L2 strength of the distribution heads (1.0: best of 0.1/1/10 on validation)
    "meta_embeddings": False,  # also feed a probe member's embeddings to the meta-model
    "boosted_iterations": 300,
    "seed": 0,
}
META = ("distribution", "ridge", "boosted")


class StackStudent(Student):
    kind = "stack"

    def __init__(self, dimensions: Sequence[str], filter: str = "", cache_dir: Path | str | None = None,
                 **params: Any):
        super().__init__(dimensions)
        self.filter = filter
        self.cache_dir = cache_dir
        if isinstance(params.get("members"), str):
            try:
                params["members"] = json.loads(params["members"])
            except json.JSONDecodeError as exc:
                raise ValueError(f"stack student parameter members is not valid JSON: {exc}") from None
        self.params = check_params("stack", DEFAULTS, params)
        self.member_specs = check_members(self.params["members"])
        if int(self.params["folds"]) < 2:
            raise ValueError("a stack needs folds >= 2 to make out-of-fold predictions")
        if self.params["meta"] not in META:
            raise ValueError(f"stack meta must be one of {', '.join(META)}, got {self.params['meta']!r}")
        if self.params["meta_embeddings"] and self._embedding_member() is None:
            raise ValueError("meta_embeddings needs a probe member to take the embeddings from")
        self.members: list[Student] = []
        self._meta_coef: np.ndarray | None = None  # ridge: (n_features, n_dims)
        self._meta_intercept: np.ndarray | None = None
        self._meta_trees: list | None = None  # boosted: one model per dimension
        self._meta_heads: DistributionHeads | None = None  # distribution
        self.chosen_alphas: list[float] = []

    @property
    def calibration_maps(self) -> tuple[str, ...]:
        """A distribution meta-model's output is an interpolated median: rounding it is a candidate map."""
        return CALIBRATION_MAPS if self.params["meta"] == "distribution" else Student.calibration_maps

    def _embedding_member(self) -> int | None:
        return next((i for i, m in enumerate(self.member_specs) if m["kind"] == "probe"), None)

    def _make_member(self, i: int) -> Student:
        return make_student(self.member_specs[i]["kind"], self.dimensions, filter=self.filter,
                            **self._member_params(i))

    # -- Student -------------------------------------------------------------------------------------
    def fit(self, texts, targets, val_texts=None, val_targets=None) -> StackStudent:
        """Out-of-fold fits of every member and the final fits, all independent parts (spread over the Ray
        cluster inside a training job), then the meta-model on the out-of-fold predictions."""
        texts = list(texts)
        y = np.asarray(targets, dtype=np.float64)
        if y.shape != (len(texts), len(self.dimensions)):
            raise ValueError(f"targets must have shape ({len(texts)}, {len(self.dimensions)}), got {y.shape}")
        folds = min(int(self.params["folds"]), len(texts))
        if folds < 2:
            raise ValueError("a stack needs at least 2 training articles")
        rng = np.random.default_rng(int(self.params["seed"]))
        fold_of = rng.permutation(len(texts)) % folds
        val_texts = list(val_texts) if val_texts is not None else None
        val_y = np.asarray(val_targets, dtype=np.float64) if val_targets is not None else None
        runner = parallel.current()
        shared_texts, shared_val, shared_y = runner.share(texts), runner.share(val_texts), runner.share(y)
        inputs = []
        by_encoder: dict[str, tuple] = {}  # members on one encoder share its embeddings
        for m in range(len(self.member_specs)):
            member = self._make_member(m)
            key = getattr(getattr(member, "encoder", None), "namespace", f"texts-{m}") if (
                member.kind in EMBEDDING_KINDS) else "texts"
            if key not in by_encoder:
                X, Xv = member_inputs(runner, member, texts, val_texts, shared_texts, shared_val, y)
                by_encoder[key] = (X, Xv, encoder_choice(member))
            X, Xv, choice = by_encoder[key]
            spec = self.member_specs[m]  # the runtime really used (auto resolved, int8 gated), for every fit
            self.member_specs[m] = {**spec, "params": {**spec["params"], **choice}}
            inputs.append((member, X, Xv))
        everything = np.arange(len(texts))
        parts = []
        for f in range(folds):
            train_idx, held_idx = np.flatnonzero(fold_of != f), np.flatnonzero(fold_of == f)
            parts += [(m.kind, self.dimensions, self.filter, self._member_params(i), X, shared_y, train_idx, Xv,
                       val_y, held_idx) for i, (m, X, Xv) in enumerate(inputs)]
        parts += [(m.kind, self.dimensions, self.filter, self._member_params(i), X, shared_y, everything, Xv, val_y)
                  for i, (m, X, Xv) in enumerate(inputs)]
        results = runner.map(fit_member, parts, stage="stack members")
        n_members = len(self.member_specs)
        oof = np.zeros((n_members, len(texts), len(self.dimensions)))
        for f in range(folds):
            held_idx = np.flatnonzero(fold_of == f)
            for m in range(n_members):
                oof[m, held_idx] = results[f * n_members + m]
        self.members = list(results[folds * n_members:])
        self._fit_meta(self._meta_inputs(oof, texts), y)
        return self

    def _member_params(self, i: int) -> dict[str, Any]:
        params = dict(self.member_specs[i]["params"])
        if self.member_specs[i]["kind"] in {"probe", "multi"} and self.cache_dir is not None:
            params.setdefault("cache_dir", self.cache_dir)
        return params

    def _meta_inputs(self, member_preds: np.ndarray, texts: Sequence[str],
                     embeddings: np.ndarray | None = None) -> np.ndarray:
        X = _meta_features(member_preds)
        if not self.params["meta_embeddings"]:
            return X
        if embeddings is None:  # frozen encoder: the same embeddings in and out of fold (and cached)
            embeddings = self.members[self._embedding_member()].embed(list(texts))
        return np.hstack([X, embeddings])

    def _fit_meta(self, X: np.ndarray, y: np.ndarray) -> None:
        if self.params["meta"] == "distribution":
            runner = parallel.current()

            def on_runner(fn, Z, per_head):  # the heads as parts (over Ray inside a job), Z shared once
                shared_Z = runner.share(Z)
                return runner.map(fn, [(shared_Z, *args) for args in per_head], stage="stack meta")

            self._meta_heads = DistributionHeads.fit(X, y, float(self.params["distribution_c"]), on_runner)
            return
        if self.params["meta"] == "boosted":
            runner = parallel.current()
            shared_X = runner.share(X)
            settings = (int(self.params["boosted_iterations"]), int(self.params["seed"]))
            self._meta_trees = runner.map(fit_boosted_dimension, [(shared_X, y[:, d], settings)
                                                                  for d in range(y.shape[1])], stage="stack meta")
            return
        from sklearn.linear_model import RidgeCV

        alphas = [float(a) for a in self.params["alphas"]]
        coef = np.zeros((X.shape[1], y.shape[1]))
        intercept = np.zeros(y.shape[1])
        self.chosen_alphas = []
        for d in range(y.shape[1]):
            model = RidgeCV(alphas=alphas).fit(X, y[:, d])
            coef[:, d], intercept[d] = model.coef_, model.intercept_
            self.chosen_alphas.append(float(model.alpha_))
        self._meta_coef, self._meta_intercept = coef, intercept

    def _predict_all(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray | None]:
        """Every member's raw prediction (n_members, n, n_dims) and the probe embeddings when the meta uses
        them (each text is embedded once, for the probe member and the meta-model)."""
        if not self.members or (self._meta_coef is None and self._meta_trees is None and self._meta_heads is None):
            raise RuntimeError("stack student is not fitted")
        texts = list(texts)
        embeddings = None
        preds = []
        for i, member in enumerate(self.members):
            if self.params["meta_embeddings"] and i == self._embedding_member():
                embeddings = member.embed(texts)
                preds.append(member.predict_embeddings(embeddings))
            else:
                preds.append(member.predict(texts))
        return np.stack(preds), embeddings

    def predict_members(self, texts: Sequence[str]) -> np.ndarray:
        """Shape (n_members, n, n_dims): each member's raw prediction."""
        return self._predict_all(texts)[0]

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        return self.predict_with_spread(texts)[0]

    def predict_with_spread(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """The stacked prediction and its uncertainty, both (n, n_dims): the distribution heads' expected absolute
        error, or (other meta-models) the members' standard deviation."""
        if len(texts) == 0:
            empty = np.zeros((0, len(self.dimensions)))
            return empty, empty
        preds, embeddings = self._predict_all(texts)
        X = self._meta_inputs(preds, texts, embeddings)
        if self._meta_heads is not None:
            return self._meta_heads.predict_with_deviation(X)
        if self._meta_trees is not None:
            combined = np.stack([tree.predict(X) for tree in self._meta_trees], axis=1)
        else:
            combined = X @ self._meta_coef + self._meta_intercept
        return combined, preds.std(axis=0)

    def save(self, path: Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        for i, member in enumerate(self.members):
            member.save(path / f"member_{i:02d}")
        if self._meta_heads is not None:
            np.savez(path / "meta_distribution.npz", **self._meta_heads.arrays())
        elif self._meta_trees is not None:
            import joblib

            joblib.dump(self._meta_trees, path / "meta_trees.joblib", compress=3)
        else:
            np.savez(path / "meta.npz", coef=self._meta_coef, intercept=self._meta_intercept)
        write_manifest(path, self, {"n_members": len(self.members), "chosen_alphas": self.chosen_alphas})

    @classmethod
    def load(cls, path: Path) -> StackStudent:
        path = Path(path)
        manifest = read_manifest(path)
        student = cls(manifest["dimensions"], filter=manifest.get("filter", ""), **manifest.get("params", {}))
        student.members = [load_student(path / f"member_{i:02d}") for i in range(int(manifest["n_members"]))]
        if (path / "meta_distribution.npz").exists():
            with np.load(path / "meta_distribution.npz") as data:
                student._meta_heads = DistributionHeads.from_arrays(data, len(student.dimensions))
        elif (path / "meta_trees.joblib").exists():
            import joblib

            student._meta_trees = joblib.load(path / "meta_trees.joblib")
        else:
            with np.load(path / "meta.npz") as data:
                student._meta_coef, student._meta_intercept = data["coef"], data["intercept"]
        student.chosen_alphas = list(manifest.get("chosen_alphas", []))
        return student


def fit_boosted_dimension(X: np.ndarray, y: np.ndarray, settings: tuple[int, int]):
    """One dimension's absolute-error booster of a ``boosted`` meta-model (one part)."""
    from sklearn.ensemble import HistGradientBoostingRegressor

    iterations, seed = settings
    return HistGradientBoostingRegressor(loss="absolute_error", learning_rate=0.05, max_leaf_nodes=15,
                                         max_iter=iterations, random_state=seed).fit(X, y)


def _meta_features(member_preds: np.ndarray) -> np.ndarray:
    """(n_members, n, n_dims) -> (n, n_members * n_dims): every member's view of every dimension."""
    m, n, d = member_preds.shape
    return member_preds.transpose(1, 0, 2).reshape(n, m * d)


def check_members(members: Any) -> list[dict[str, Any]]:
    from distillery.students.manifest import KINDS

    if not isinstance(members, list) or not members:
        raise ValueError('stack student parameter members must be a non-empty list like '
                         '[{"kind": "lexical"}, {"kind": "probe"}]')
    checked = []
    for i, member in enumerate(members):
        if isinstance(member, str):
            member = {"kind": member}
        if not isinstance(member, dict) or "kind" not in member:
            raise ValueError(f"stack member {i} must be an object with a 'kind', got {member!r}")
        kind = member["kind"]
        if kind not in KINDS or kind in {"stack", "multi"}:
            allowed = ", ".join(k for k in KINDS if k not in {"stack", "multi"})
            raise ValueError(f"stack member {i} has kind {kind!r}; members may be: {allowed}")
        params = member.get("params", {}) or {}
        if not isinstance(params, dict):
            # ValueError, not TypeError: every caller reports ValueError as "bad student parameter"
            raise ValueError(f"stack member {i} params must be an object, got {params!r}")  # noqa: TRY004
        checked.append({"kind": kind, "params": params})
    return checked
