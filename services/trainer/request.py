"""What a training run is asked to do: the request, its pipeline parameters, where its labels come from."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from distillery_services.trainer.datasets import (
    records_from_jsonl,
    records_from_store,
)

from distillery.filters.spec import FilterSpec

Progress = Callable[[float, str], None]


def _boolean(value: Any) -> bool:
    text = str(value).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(value)


_boolean.__name__ = "bool (true/false)"
PIPELINE_PARAMS = {"near_duplicate_threshold": float, "near_duplicate_action": str, "coverage": float,
                   "min_examples": int, "include_audit_labels": _boolean,
                   # services/trainer/validation.py: auto | holdout | cv, and the folds of cv
                   "evaluation": str, "cv_folds": int}


@dataclass
class TrainRequest:
    """Everything one run needs; plain data so that it crosses a process boundary."""

    kind: str = ""
    labels_path: str = ""
    label_store_url: str = ""
    seed: int = 0
    params: dict[str, str] = field(default_factory=dict)
    promote: bool = False
    registry_root: str = ""
    datasets_dir: str = ""
    embed_cache_dir: str = ""
    # promote only when the new model beats the promoted one on the frozen test split (automatic retrains)
    promote_if_better: bool = False
    promote_tolerance: float = 0.0
    # multi students: every filter trained jointly (refs, request order) and a labels JSONL per filter ref
    # (a filter without one reads the label store)
    filters: list[str] = field(default_factory=list)
    labels_paths: dict[str, str] = field(default_factory=dict)
    # Ray: the trainer service and `distillery train` run every job on Ray (use_ray), on the cluster at
    # ray_address (empty: $RAY_ADDRESS, else a local Ray); used as a library, the parts run in this process
    use_ray: bool = False
    ray_address: str = ""
    job_id: str = ""  # names the job's artefact folder on the registry's storage
    # the user's own validation / test articles (JSONL, like labels_path) instead of splits of the labels
    val_path: str = ""
    test_path: str = ""
    # filters whose promoted students warm-start this one (empty: the spec's student.transfer_from)
    transfer_from: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def split_params(params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Separate pipeline settings (dataset, calibration) from student hyper-parameters."""
    pipeline, student = {}, {}
    for key, value in params.items():
        if key in PIPELINE_PARAMS:
            try:
                pipeline[key] = PIPELINE_PARAMS[key](value)
            except (TypeError, ValueError):
                raise ValueError(f"parameter {key}={value!r} must be {PIPELINE_PARAMS[key].__name__}") from None
        else:
            student[key] = value
    return pipeline, student


def load_records(spec: FilterSpec, req: TrainRequest, include_audit: bool = False):
    path = req.labels_paths.get(spec.ref, "") if req.filters else req.labels_path
    if path:
        return records_from_jsonl(path)
    return records_from_store(req.label_store_url, spec.name, spec.version, include_audit=include_audit)


def check_labels_exist(spec: FilterSpec, labels_path: str, label_store_url: str) -> None:
    """Fail fast (ValueError) when a filter of a multi request has no labels at all where it will read them.

    A JSONL is scanned only up to its first record with all of the filter's dimensions; the label store
    answers with a COUNT. Too few labels are still caught later, when the dataset is built.
    """
    if labels_path:
        from distillery.articles import read_jsonl

        dims = spec.dimension_names
        for rec in read_jsonl(Path(labels_path)):
            scores = rec.get("dimension_scores") or rec.get("scores") or {}
            if isinstance(scores, dict) and all(scores.get(d) is not None for d in dims):
                return
        raise ValueError(f"{labels_path} has no article labelled with all dimensions of {spec.ref} "
                         f"({', '.join(dims)}); give that filter's labels file")
    try:
        from distillery.store.labels import AUDIT_REASONS, LabelStore

        store = LabelStore.open(label_store_url)
    except Exception:  # noqa: BLE001 - an unreachable store is reported by the job itself, in detail
        return
    try:
        n = store.count(spec.name, spec.version, exclude_reasons=AUDIT_REASONS)
    finally:
        store.close()
    if n == 0:
        raise ValueError(f"{spec.ref} has no labels in the label store ({label_store_url}); label articles "
                         "for it first or give its labels as a JSONL file")


def summary_json(summary: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in summary.items() if k not in {"student", "calibration", "filters"}},
                      indent=2, default=float)


def default_dirs(state_dir: Path) -> dict[str, str]:
    return {
        "registry_root": str(state_dir / "registry"),
        "datasets_dir": str(state_dir / "datasets"),
        "embed_cache_dir": str(state_dir / "embeddings"),
        "label_store_url": str(state_dir / "labels.sqlite"),
    }
