"""One training run of one filter, start to end: labels -> dataset -> student -> calibration -> test metrics ->
registry (and the promotion policy).

Used by the trainer service's job workers and by ``distillery train``; knows nothing of gRPC or Kafka.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
from distillery_services.trainer import validation
from distillery_services.trainer.datasets import (
    Dataset,
    FrozenSplit,
    build_dataset,
    frozen_test_ids,
    records_from_jsonl,
)
from distillery_services.trainer.evaluation import evaluate
from distillery_services.trainer.factory import resolve_kind, student_for, transfer_sources
from distillery_services.trainer.predictions import (
    cross_fitted_flags,
    model_reference,
    predict_with_spread,
    uncertain_flags,
)
from distillery_services.trainer.promotion import compare_and_promote
from distillery_services.trainer.request import Progress, TrainRequest, load_records, split_params
from distillery_services.trainer.runner import Reporter, finish_job, job_runner, ray_extra

from distillery import parallel
from distillery.calibration import DEFAULT_MAPS, Calibration
from distillery.filters.spec import FilterSpec
from distillery.registry import ModelRegistry
from distillery.students.parts import WHOLE_FIT_KINDS, fit_student_part

logger = logging.getLogger(__name__)


def run_training(spec: FilterSpec, req: TrainRequest, progress: Progress | None = None,
                 on_stage: parallel.StageCallback | None = None) -> dict[str, Any]:
    """Train, calibrate on validation, evaluate on test, register (and maybe promote); return the summary.

    With ``req.use_ray`` the job's parts run on Ray (see :func:`job_runner`) and ``on_stage`` hears about each
    stage's progress per node."""
    report = Reporter(progress)
    with job_runner(req, report, on_stage) as runner:
        return finish_job(train(spec, req, report), req, runner)


def train(spec: FilterSpec, req: TrainRequest, progress: Progress | None = None) -> dict[str, Any]:
    """:func:`run_training`'s steps in the current runner."""
    report = progress or (lambda p, m: None)
    started = time.monotonic()
    pipeline_params, student_params = split_params(req.params)
    report(0.01, "reading labels")
    records = load_records(spec, req, include_audit=pipeline_params.get("include_audit_labels", False))
    frozen = FrozenSplit.load(req.datasets_dir, spec.ref) if req.datasets_dir else None
    dataset = build_dataset(
        spec, records, seed=req.seed,
        near_duplicate_threshold=pipeline_params.get("near_duplicate_threshold", 0.85),
        near_duplicate_action=pipeline_params.get("near_duplicate_action", "drop"),
        min_examples=pipeline_params.get("min_examples", 10),
        progress=lambda m: report(0.05, m),
        frozen=frozen,
    )
    if req.val_path or req.test_path:
        dataset = _with_files(spec, dataset, req)
    if req.datasets_dir:
        dataset.save(req.datasets_dir)
        if frozen is None:  # the filter's first dataset freezes its test split
            frozen = FrozenSplit.from_dataset(dataset).save_if_absent(req.datasets_dir)
    splits = dataset.report["splits"]
    report(0.1, f"dataset {dataset.hash}: {splits['train']['n']} train / {splits['val']['n']} val / "
                f"{splits['test']['n']} test")
    return train_on_dataset(spec, dataset, req, student_params, pipeline_params, report, started,
                            compare_ids=frozen_test_ids(dataset, frozen))


def train_on_dataset(spec: FilterSpec, dataset: Dataset, req: TrainRequest, student_params: dict[str, Any],
                     pipeline_params: dict[str, Any], report: Progress, started: float | None = None,
                     compare_ids: list[str] | None = None):
    started = started or time.monotonic()
    mode = validation.choose_mode(pipeline_params.get("evaluation", "auto"), len(dataset.examples),
                                  resolve_kind(spec, req.kind), bool(req.val_path or req.test_path),
                                  req.promote_if_better)
    if mode == "cv":
        return _train_cross_validated(spec, dataset, req, student_params, pipeline_params, report, started,
                                      sources=transfer_sources(spec, req))
    tr_x, tr_y = dataset.arrays("train")
    va_x, va_y = dataset.arrays("val")
    te_x, te_y = dataset.arrays("test")
    if len(va_x) < 2 or len(te_x) < 2:
        raise ValueError(f"too few examples for validation/test splits ({len(va_x)}/{len(te_x)}); "
                         "label more articles")
    student = student_for(spec, req.kind, student_params, req.seed, req.embed_cache_dir,
                          transfer_sources(spec, req))
    report(0.12, f"training {student.kind} on {len(tr_x)} articles")
    if hasattr(student, "set_progress"):
        student.set_progress(lambda frac, msg: report(0.12 + 0.68 * frac, msg))
    runner = parallel.current()
    if runner.distributed and student.kind in WHOLE_FIT_KINDS:  # no parts of its own: the fit is one part
        student = runner.call(fit_student_part, student, runner.share(tr_x), tr_y, va_x, va_y,
                              stage=f"{student.kind} fit")
    else:
        student.fit(tr_x, tr_y, va_x, va_y)
    report(0.8, "calibrating on the validation split")
    val_raw, val_spread = predict_with_spread(student, va_x)
    calibration = Calibration.fit(val_raw, va_y, spec.dimension_names,
                                  coverage=pipeline_params.get("coverage", 0.9), maps=getattr(student, "calibration_maps", DEFAULT_MAPS))
    calibration.fit_error_model(val_raw, va_y, val_spread)
    report(0.88, "evaluating on the test split")
    test_raw, test_spread = predict_with_spread(student, te_x)
    calibrated, lower, upper = calibration.apply(test_raw)
    flagged = uncertain_flags(spec, calibration, test_raw, lower, upper, test_spread)
    files = {k: v for k, v in (("val", req.val_path), ("test", req.test_path)) if v}
    return _finish_training(spec, dataset, req, report, started, compare_ids, student, calibration, va_x, val_raw,
                            va_y, te_y, test_raw, (calibrated, lower, upper), tr_y.mean(axis=0), len(tr_x),
                            validation.describe(mode, len(tr_x), len(va_x), len(te_x), files=files), mode,
                            flagged=flagged)


def _with_files(spec: FilterSpec, dataset: Dataset, req: TrainRequest) -> Dataset:
    """``req.val_path`` / ``req.test_path`` articles as the validation / test splits (validated like labels)."""
    import hashlib

    def examples(path: str) -> list:
        if not path:
            return []
        held = build_dataset(spec, records_from_jsonl(path), seed=req.seed, min_examples=2)
        return held.examples

    val, test = examples(req.val_path), examples(req.test_path)
    out = validation.with_files(dataset, val, test)
    ids = ",".join(sorted(e.id for e in [*val, *test]))
    out.hash = hashlib.sha256(f"{dataset.hash}|{ids}".encode()).hexdigest()[:len(dataset.hash) or 16]
    out.report = {**out.report, "dataset_hash": out.hash, "held_out_files": {"val": req.val_path,
                                                                             "test": req.test_path}}
    return out


def _train_cross_validated(spec: FilterSpec, dataset: Dataset, req: TrainRequest, student_params: dict[str, Any],
                           pipeline_params: dict[str, Any], report: Progress, started: float,
                           sources: list[tuple[str, Any]] | None = None) -> dict[str, Any]:
    """Every label trains the final model; calibration and evaluation come from k-fold out-of-fold predictions."""
    examples = dataset.examples
    texts = [e.input_text for e in examples]
    y = np.array([e.targets for e in examples], dtype=np.float64).reshape(len(examples), len(dataset.dimensions))
    folds = int(pipeline_params.get("cv_folds", validation.DEFAULT_FOLDS))
    if folds < 2:
        raise ValueError(f"cv_folds must be at least 2, got {folds}")
    report(0.12, f"{folds}-fold cross-validation of {resolve_kind(spec, req.kind)} on {len(texts)} articles")
    cv = validation.cross_validate(
        lambda: student_for(spec, req.kind, student_params, req.seed, req.embed_cache_dir, sources), texts, y,
        spec.dimension_names, folds, req.seed, pipeline_params.get("coverage", 0.9), examples,
        lambda frac, msg: report(0.12 + 0.76 * frac, msg))
    report(0.88, "evaluating the out-of-fold predictions")
    cv["calibration"].fit_error_model(cv["oof_raw"], y)
    flagged = cross_fitted_flags(spec, cv, y, validation.fold_of(examples, folds, req.seed))
    description = validation.describe("cv", len(texts), 0, 0, folds=folds)
    summary = _finish_training(spec, dataset, req, report, started, [e.id for e in examples], cv["student"],
                               cv["calibration"], texts, cv["oof_raw"], y, y, cv["oof_raw"],
                               (cv["calibrated"], cv["lower"], cv["upper"]), y.mean(axis=0), len(texts),
                               description, "cv", flagged=flagged)
    summary["metrics"]["cv_folds"] = float(folds)
    return summary


def _finish_training(spec, dataset, req, report, started, compare_ids, student, calibration, val_texts, val_raw,
                     val_y, te_y, test_raw, test_calibrated, train_mean, n_train, description, mode, flagged=None):
    """Evaluate, register (and maybe promote) a trained student; the summary every mode returns."""
    calibrated, lower, upper = test_calibrated
    va_x, va_y, tr_n = val_texts, val_y, n_train
    result = evaluate(spec, te_y, test_raw, calibrated, lower, upper, train_mean=train_mean, flagged=flagged)
    metrics = dict(result["flat"])
    metrics["test_mae"] = result["mae"]
    metrics["test_mae_raw"] = result["mae_raw"]
    metrics["val_mae"] = float(np.abs(np.clip(val_raw, 0, 10) - va_y).mean())
    metrics["train_seconds"] = time.monotonic() - started
    if mode == "cv":  # every label trained the final model; n_cv of them were scored out of fold
        metrics["n_train"], metrics["n_val"], metrics["n_test"], metrics["n_cv"] = tr_n, 0, 0, len(te_y)
    else:
        metrics["n_train"], metrics["n_val"], metrics["n_test"] = tr_n, len(va_x), len(te_y)
    noise = dataset.report.get("label_noise")
    if noise:  # the student against the oracles' own disagreement (multi-oracle data only)
        metrics["inter_oracle_mae"] = float(noise["mean_abs_diff_all"])
    summary: dict[str, Any] = {"metrics": metrics, "dataset_hash": dataset.hash, "evaluation": result,
                               "evaluation_mode": mode, "evaluation_description": description,
                               "test": {"y": te_y, "calibrated": calibrated, "lower": lower, "upper": upper}}
    # cv: the out-of-fold predictions once (val_raw and test_raw are the same rows there)
    summary["reference_distribution"] = model_reference(spec, calibration, val_raw[:0] if mode == "cv" else val_raw,
                                                        test_raw)
    if req.registry_root:
        report(0.95, "registering the model")
        registry = ModelRegistry(req.registry_root)
        info = registry.register(spec, student, calibration, metrics, dataset.hash,
                                 extra={"dataset_report": {"n_examples": len(dataset.examples),
                                                           "splits": dataset.report["splits"]},
                                        "evaluation": {"mode": mode, "description": description},
                                        "seed": req.seed, **ray_extra()},
                                 reference=summary["reference_distribution"], samples=va_x)
        summary["model_version"] = info.version_id
        summary["uri"] = info.uri
        if req.promote:
            registry.promote(spec.name, info.version_id)
            summary["promoted"] = True
        elif req.promote_if_better:
            report(0.97, "comparing with the promoted model on the frozen test split")
            ids = compare_ids if compare_ids is not None else [e.id for e in dataset.split("test")]
            comparison = compare_and_promote(spec, registry, info.version_id, student, calibration, dataset, ids,
                                             req.promote_tolerance)
            metrics.update(comparison["metrics"])
            summary["promoted"] = bool(comparison["metrics"]["promoted"])
            summary["message"] = comparison["message"]
            logger.info("candidate %s vs promoted: %s", info.version_id, comparison["message"])
    summary["student"] = student
    summary["calibration"] = calibration
    report(1.0, f"done: test MAE {metrics['test_mae']:.3f} (mean predictor {metrics['mean_predictor_mae']:.3f})")
    return summary
