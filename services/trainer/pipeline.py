"""One training run, start to end: labels -> dataset -> student -> calibration -> test metrics -> registry.

Used by the trainer service's job workers and by ``distillery train``; knows nothing of gRPC or Kafka.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from distillery.calibration import Calibration
from distillery.filters.spec import FilterSpec
from distillery.registry import ModelRegistry
from distillery.students import make_student
from services.trainer.datasets import Dataset, build_dataset, records_from_jsonl, records_from_store
from services.trainer.evaluation import evaluate

logger = logging.getLogger(__name__)

Progress = Callable[[float, str], None]
PIPELINE_PARAMS = {"near_duplicate_threshold": float, "near_duplicate_action": str, "coverage": float,
                   "min_examples": int}


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


def resolve_kind(spec: FilterSpec, kind: str) -> str:
    return kind or spec.student.kind


def student_for(spec: FilterSpec, kind: str, params: dict[str, Any], seed: int = 0, embed_cache_dir: str = ""):
    """Build the untrained student; spec settings (encoder, token budget) apply unless params override them."""
    kind = resolve_kind(spec, kind)
    params = dict(params)
    extra: dict[str, Any] = {}
    if kind == "probe":
        params.setdefault("encoder", spec.student.encoder)
        params.setdefault("head_tokens", spec.student.truncation.head_tokens)
        params.setdefault("tail_tokens", spec.student.truncation.tail_tokens)
        params.setdefault("seed", seed)
        if embed_cache_dir:
            extra["cache_dir"] = embed_cache_dir
    elif kind == "finetune":
        params.setdefault("base_model", spec.student.base_model)
        params.setdefault("head_tokens", spec.student.truncation.head_tokens)
        params.setdefault("tail_tokens", spec.student.truncation.tail_tokens)
        params.setdefault("seed", seed)
    elif kind == "ensemble":
        params.setdefault("seed", seed)
    return make_student(kind, spec.dimension_names, filter=spec.ref, **params, **extra)


def load_records(spec: FilterSpec, req: TrainRequest):
    if req.labels_path:
        return records_from_jsonl(req.labels_path)
    return records_from_store(req.label_store_url, spec.name, spec.version)


def run_training(spec: FilterSpec, req: TrainRequest, progress: Progress | None = None) -> dict[str, Any]:
    """Train, calibrate on validation, evaluate on test, register (and maybe promote); return the summary."""
    report = progress or (lambda p, m: None)
    started = time.monotonic()
    pipeline_params, student_params = split_params(req.params)
    report(0.01, "reading labels")
    records = load_records(spec, req)
    dataset = build_dataset(
        spec, records, seed=req.seed,
        near_duplicate_threshold=pipeline_params.get("near_duplicate_threshold", 0.85),
        near_duplicate_action=pipeline_params.get("near_duplicate_action", "drop"),
        min_examples=pipeline_params.get("min_examples", 10),
        progress=lambda m: report(0.05, m),
    )
    if req.datasets_dir:
        dataset.save(req.datasets_dir)
    splits = dataset.report["splits"]
    report(0.1, f"dataset {dataset.hash}: {splits['train']['n']} train / {splits['val']['n']} val / "
                f"{splits['test']['n']} test")
    return train_on_dataset(spec, dataset, req, student_params, pipeline_params, report, started)


def train_on_dataset(spec: FilterSpec, dataset: Dataset, req: TrainRequest, student_params: dict[str, Any],
                     pipeline_params: dict[str, Any], report: Progress, started: float | None = None):
    started = started or time.monotonic()
    tr_x, tr_y = dataset.arrays("train")
    va_x, va_y = dataset.arrays("val")
    te_x, te_y = dataset.arrays("test")
    if len(va_x) < 2 or len(te_x) < 2:
        raise ValueError(f"too few examples for validation/test splits ({len(va_x)}/{len(te_x)}); "
                         "label more articles")
    student = student_for(spec, req.kind, student_params, req.seed, req.embed_cache_dir)
    report(0.12, f"training {student.kind} on {len(tr_x)} articles")
    fit_kwargs = {}
    if hasattr(student, "set_progress"):
        student.set_progress(lambda frac, msg: report(0.12 + 0.68 * frac, msg))
    student.fit(tr_x, tr_y, va_x, va_y, **fit_kwargs)
    report(0.8, "calibrating on the validation split")
    val_raw = student.predict(va_x)
    calibration = Calibration.fit(val_raw, va_y, spec.dimension_names,
                                  coverage=pipeline_params.get("coverage", 0.9))
    report(0.88, "evaluating on the test split")
    test_raw = student.predict(te_x)
    calibrated, lower, upper = calibration.apply(test_raw)
    result = evaluate(spec, te_y, test_raw, calibrated, lower, upper, train_mean=tr_y.mean(axis=0))
    metrics = dict(result["flat"])
    metrics["test_mae"] = result["mae"]
    metrics["test_mae_raw"] = result["mae_raw"]
    metrics["val_mae"] = float(np.abs(np.clip(val_raw, 0, 10) - va_y).mean())
    metrics["train_seconds"] = time.monotonic() - started
    metrics["n_train"], metrics["n_val"], metrics["n_test"] = len(tr_x), len(va_x), len(te_x)
    noise = dataset.report.get("label_noise")
    if noise:  # the student against the oracles' own disagreement (multi-oracle data only)
        metrics["inter_oracle_mae"] = float(noise["mean_abs_diff_all"])
    summary: dict[str, Any] = {"metrics": metrics, "dataset_hash": dataset.hash, "evaluation": result}
    if req.registry_root:
        report(0.95, "registering the model")
        registry = ModelRegistry(req.registry_root)
        info = registry.register(spec, student, calibration, metrics, dataset.hash,
                                 extra={"dataset_report": {"n_examples": len(dataset.examples),
                                                           "splits": dataset.report["splits"]},
                                        "seed": req.seed})
        summary["model_version"] = info.version_id
        summary["uri"] = info.uri
        if req.promote:
            registry.promote(spec.name, info.version_id)
            summary["promoted"] = True
    summary["student"] = student
    summary["calibration"] = calibration
    report(1.0, f"done: test MAE {metrics['test_mae']:.3f} (mean predictor {metrics['mean_predictor_mae']:.3f})")
    return summary


def summary_json(summary: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in summary.items() if k not in {"student", "calibration"}}, indent=2,
                      default=float)


def default_dirs(state_dir: Path) -> dict[str, str]:
    return {
        "registry_root": str(state_dir / "registry"),
        "datasets_dir": str(state_dir / "datasets"),
        "embed_cache_dir": str(state_dir / "embeddings"),
        "label_store_url": str(state_dir / "labels.sqlite"),
    }
