"""``multi``: one shared encoder and trunk, one head per filter, trained jointly on all filters' labels.

Inputs go through the frozen encoder once (embeddings cached by content hash) and a shared MLP trunk
that every filter's labels train together (cross-filter transfer); each filter has its own linear head.
Scoring all filters costs one forward pass: :meth:`MultiStudent.predict` returns every filter's columns.

Columns are named ``<filter_ref>:<dimension>``; targets may be NaN where an article was not labelled for
a filter (masked out of the loss). :meth:`MultiStudent.view` gives a per-filter student (its dimensions,
its columns) that the registry stores under that filter; loading it back gives the view again.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from distillery import parallel
from distillery.students.base import Student
from distillery.students.manifest import read_manifest, write_manifest
from distillery.students.params import check_params

DEFAULTS: dict[str, Any] = {
    "encoder": "all-MiniLM-L6-v2",
    "head_tokens": 128,
    "tail_tokens": 128,
    "hidden": 256,
    "dropout": 0.1,
    "lr": 2e-3,
    "weight_decay": 1e-4,
    "epochs": 200,
    "batch_size": 128,
    "patience": 15,
    "seed": 0,
}


def qualified(filter_ref: str, dimension: str) -> str:
    return f"{filter_ref}:{dimension}"


class MultiStudent(Student):
    kind = "multi"

    def __init__(self, dimensions: Sequence[str], filter: str = "", cache_dir: Path | str | None = None,
                 **params: Any):
        super().__init__(dimensions)
        bad = [d for d in self.dimensions if ":" not in d]
        if bad:
            raise ValueError(f"multi student columns must be '<filter_ref>:<dimension>', got {bad[:3]}")
        self.filter = filter
        self.params = check_params("multi", DEFAULTS, params)
        self.cache_dir = cache_dir or os.environ.get("DISTILLERY_EMBED_CACHE") or None
        self.filters = list(dict.fromkeys(d.split(":", 1)[0] for d in self.dimensions))
        self._net = None
        self._encoder = None
        self._fingerprint: str | None = None

    def columns(self, filter_ref: str) -> list[int]:
        cols = [i for i, d in enumerate(self.dimensions) if d.split(":", 1)[0] == filter_ref]
        if not cols:
            raise ValueError(f"this multi student has no head for {filter_ref}; heads: {', '.join(self.filters)}")
        return cols

    @property
    def encoder(self):
        if self._encoder is None:
            from distillery.students.encoder import shared_encoder

            p = self.params
            self._encoder = shared_encoder(p["encoder"], p["head_tokens"], p["tail_tokens"], self.cache_dir)
        return self._encoder

    def _build(self, dim_in: int):
        import torch

        p = self.params
        sizes = [len(self.columns(f)) for f in self.filters]

        class Net(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.trunk = torch.nn.Sequential(torch.nn.Linear(dim_in, int(p["hidden"])), torch.nn.GELU(),
                                                 torch.nn.Dropout(float(p["dropout"])))
                self.heads = torch.nn.ModuleList(torch.nn.Linear(int(p["hidden"]), n) for n in sizes)

            def forward(self, x):
                h = self.trunk(x)
                return torch.cat([head(h) for head in self.heads], dim=1)  # filter order = column order

        torch.manual_seed(int(p["seed"]))
        return Net()

    def _order(self) -> list[int]:
        return [c for f in self.filters for c in self.columns(f)]

    def fit(self, texts, targets, val_texts=None, val_targets=None) -> MultiStudent:
        y = np.asarray(targets, dtype=np.float64)
        if y.shape != (len(texts), len(self.dimensions)):
            raise ValueError(f"targets must have shape ({len(texts)}, {len(self.dimensions)}), got {y.shape}")
        has_val = val_texts is not None and len(val_texts) > 0
        both = self.encoder.encode(list(texts) + (list(val_texts) if has_val else []))  # one encoder pass
        X, Xv = both[: len(texts)], (both[len(texts):] if has_val else None)
        Yv = np.asarray(val_targets, dtype=np.float64) if has_val else None
        runner = parallel.current()
        # the shared trunk trains jointly on every filter's labels: one part (the encoder pass was spread)
        state = runner.call(train_multi_part, list(self.dimensions), dict(self.params), runner.share(X), y,
                            None if Xv is None else runner.share(Xv), Yv, stage="multi trunk")
        net = self._build(X.shape[1])
        net.load_state_dict(state)
        self._net = net.eval()
        self._fingerprint = None
        return self

    def fit_embeddings(self, X: np.ndarray, y: np.ndarray, Xv: np.ndarray | None = None,
                       Yv: np.ndarray | None = None) -> MultiStudent:
        """Train trunk and heads on embeddings ``X`` (targets ``y``, NaN where unlabelled)."""
        import torch

        y = np.asarray(y, dtype=np.float64)
        order = self._order()
        Y = torch.tensor(y[:, order] / 10.0, dtype=torch.float32)
        if Xv is not None:
            Xv = torch.tensor(np.asarray(Xv, dtype=np.float32))
            Yv = np.asarray(Yv, dtype=np.float64)[:, order]
        net = self._build(X.shape[1])
        opt = torch.optim.AdamW(net.parameters(), lr=float(self.params["lr"]),
                                weight_decay=float(self.params["weight_decay"]))
        Xt = torch.tensor(X)
        rng = np.random.default_rng(int(self.params["seed"]))
        best, best_state, bad = np.inf, None, 0
        bs = int(self.params["batch_size"])
        for _epoch in range(int(self.params["epochs"])):
            net.train()
            perm = rng.permutation(len(Xt))
            for s in range(0, len(perm), bs):
                idx = torch.tensor(perm[s: s + bs])
                target = Y[idx]
                mask = ~torch.isnan(target)
                pred = net(Xt[idx])
                loss = ((pred - torch.nan_to_num(target)) ** 2 * mask).sum() / mask.sum().clamp(min=1)
                opt.zero_grad()
                loss.backward()
                opt.step()
            if Xv is None:
                continue
            net.eval()
            with torch.no_grad():
                pv = net(Xv).numpy() * 10.0
            err = np.abs(np.clip(pv, 0, 10) - Yv)
            mae = float(np.nanmean(err))
            if mae < best - 1e-4:
                best, bad = mae, 0
                best_state = {k: v.clone() for k, v in net.state_dict().items()}
            else:
                bad += 1
                if bad > int(self.params["patience"]):
                    break
        if best_state is not None:
            net.load_state_dict(best_state)
        self._net = net.eval()
        self._fingerprint = None
        return self

    def predict_embeddings(self, X: np.ndarray) -> np.ndarray:
        import torch

        if self._net is None:
            raise RuntimeError("multi student is not fitted")
        with torch.no_grad():
            out = self._net(torch.tensor(np.asarray(X, dtype=np.float32))).numpy().astype(np.float64) * 10.0
        result = np.empty_like(out)
        result[:, self._order()] = out
        return result

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        """Every filter's columns from one encoder pass, shape (n, len(self.dimensions))."""
        if len(texts) == 0:
            return np.zeros((0, len(self.dimensions)))
        return self.predict_embeddings(self.encoder.encode(list(texts)))

    def view(self, filter_ref: str) -> MultiView:
        return MultiView(self, filter_ref)

    def fingerprint(self) -> str:
        """Identity of the trained weights (columns, params, trunk and heads), for serving.

        Each filter's view is registered as its own registry version, so two filters' promoted versions
        are one model exactly when their fingerprints match: the inference service then runs the trunk
        once for both. Computed once; a fitted student's weights do not change afterwards.
        """
        if self._net is None:
            raise RuntimeError("multi student is not fitted")
        if self._fingerprint is None:
            digest = hashlib.sha256(json.dumps([self.dimensions, self.params], sort_keys=True,
                                               default=str).encode())
            for name, tensor in sorted(self._net.state_dict().items()):
                digest.update(name.encode())
                digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
            self._fingerprint = digest.hexdigest()[:24]
        return self._fingerprint

    def save(self, path: Path, view: str = "") -> None:
        import torch

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        torch.save(self._net.state_dict(), path / "multi.pt")
        write_manifest(path, self, {"view": view, "columns": self.dimensions,
                                    "embedding_dim": int(self._net.trunk[0].in_features)})
        if view:  # the manifest's dimensions are the view's, so the registry's checks see one filter
            manifest = json.loads((path / "manifest.json").read_text())
            manifest["dimensions"] = [d.split(":", 1)[1] for d in self.dimensions
                                      if d.split(":", 1)[0] == view]
            manifest["filter"] = view
            (path / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))

    @classmethod
    def load(cls, path: Path):
        import torch

        path = Path(path)
        manifest = read_manifest(path)
        student = cls(manifest["columns"], **manifest.get("params", {}))
        net = student._build(int(manifest["embedding_dim"]))
        net.load_state_dict(torch.load(path / "multi.pt", map_location="cpu", weights_only=True))
        student._net = net.eval()
        return student.view(manifest["view"]) if manifest.get("view") else student


def train_multi_part(dimensions: list[str], params: dict[str, Any], X: np.ndarray, y: np.ndarray,
                     Xv: np.ndarray | None, Yv: np.ndarray | None):
    """Train a multi student's network on embeddings (one part, on any node); return its weights."""
    net = MultiStudent(dimensions, **params).fit_embeddings(X, y, Xv, Yv)._net
    return {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}


class MultiView(Student):
    """One filter's head of a multi student (what the registry stores under that filter)."""

    kind = "multi"

    def __init__(self, multi: MultiStudent, filter_ref: str):
        self.multi = multi
        self.filter = filter_ref
        self._cols = multi.columns(filter_ref)
        super().__init__([multi.dimensions[i].split(":", 1)[1] for i in self._cols])
        self.params = multi.params

    def fit(self, texts, targets, val_texts=None, val_targets=None):
        raise ValueError("train the multi student itself (all filters jointly), then take views")

    @property
    def column_indices(self) -> list[int]:
        """This filter's columns in the multi student's full output (``multi.predict_embeddings``)."""
        return list(self._cols)

    def predict_embeddings(self, X: np.ndarray) -> np.ndarray:
        return self.multi.predict_embeddings(X)[:, self._cols]

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        return self.multi.predict(texts)[:, self._cols]

    def save(self, path: Path) -> None:
        self.multi.save(path, view=self.filter)

    @classmethod
    def load(cls, path: Path):
        return MultiStudent.load(path)
