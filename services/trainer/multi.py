"""One multi student trained on several filters' labels jointly, one calibrated and registered view per filter."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from distillery_services.trainer.datasets import (
    Dataset,
    FrozenSplit,
    build_joint_dataset,
)
from distillery_services.trainer.evaluation import evaluate
from distillery_services.trainer.factory import multi_fingerprint, multi_student_for
from distillery_services.trainer.predictions import model_reference, uncertain_flags
from distillery_services.trainer.request import Progress, TrainRequest, load_records, split_params
from distillery_services.trainer.runner import Reporter, finish_job, job_runner, ray_extra

from distillery import parallel
from distillery.calibration import Calibration
from distillery.filters.spec import FilterSpec
from distillery.registry import ModelRegistry, new_version_id


def run_multi_training(specs: list[FilterSpec], req: TrainRequest, progress: Progress | None = None,
                       on_stage: parallel.StageCallback | None = None) -> dict[str, Any]:
    """:func:`train_multi` as a job: on Ray when ``req.use_ray`` (see :func:`job_runner`)."""
    report = Reporter(progress)
    with job_runner(req, report, on_stage) as runner:
        summary = train_multi(specs, req, report)
        return finish_job(summary, req, runner)


def train_multi(specs: list[FilterSpec], req: TrainRequest, progress: Progress | None = None) -> dict[str, Any]:
    """Train one multi student on several filters' labels jointly; calibrate, evaluate and register one view
    per filter (all with the same version id), promote them all when asked; return the summary.

    The summary's ``metrics`` hold the mean over filters of the headline figures plus every filter's own
    figures as ``<filter_ref>:<metric>``; ``filters`` holds each filter's summary (metrics, view, calibration,
    evaluation, test arrays).
    """
    report = progress or (lambda p, m: None)
    started = time.monotonic()
    pipeline_params, student_params = split_params(req.params)
    student = multi_student_for(specs, student_params, req.seed, req.embed_cache_dir)  # bad params fail first
    joint = _joint_dataset(specs, req, pipeline_params, report)
    tr_x, tr_y = joint.arrays("train")
    va_x, va_y = joint.arrays("val")
    te_x, te_y = joint.arrays("test")
    report(0.12, f"training multi on {len(tr_x)} articles for {', '.join(joint.filters)}")
    student.fit(tr_x, tr_y, va_x, va_y)
    report(0.8, "calibrating each filter on its validation articles")
    val_raw, test_raw = student.predict(va_x), student.predict(te_x)  # one pass scores every filter
    fingerprint = multi_fingerprint(student)
    runner = parallel.current()  # each filter's head is calibrated and evaluated as its own part
    val_pair, test_pair, shared_tr_y = runner.share((va_y, val_raw)), runner.share((te_y, test_raw)), runner.share(tr_y)
    views = runner.map(_evaluate_view, [(spec, student.columns(spec.ref), _dataset_facts(joint.datasets[spec.ref]),
                                         pipeline_params, val_pair, test_pair, shared_tr_y, len(tr_x))
                                        for spec in specs], stage="per-filter calibration")
    per_filter: dict[str, dict[str, Any]] = {}
    for spec, view in zip(specs, views):
        per_filter[spec.ref] = {**view, "view": student.view(spec.ref)}
    metrics = _joint_metrics(per_filter, time.monotonic() - started, len(tr_x), len(va_x), len(te_x))
    summary: dict[str, Any] = {"metrics": metrics, "dataset_hash": joint.hash, "filters": per_filter,
                               "multi_fingerprint": fingerprint, "joint_report": joint.report}
    if req.registry_root:
        report(0.95, "registering one version per filter")
        summary.update(_register_views(specs, req, student, joint, per_filter, fingerprint, metrics))
    summary["student"] = student
    report(1.0, f"done: mean test MAE {metrics['test_mae']:.3f} over {len(specs)} filters (mean predictor "
                f"{metrics['mean_predictor_mae']:.3f})")
    return summary


def _joint_dataset(specs: list[FilterSpec], req: TrainRequest, pipeline_params: dict[str, Any], report: Progress):
    """Every filter's labels as one joint dataset (saved, and a filter's first one freezing its test split);
    ValueError when a filter has too few validation or test examples."""
    report(0.01, "reading labels")
    include_audit = pipeline_params.get("include_audit_labels", False)
    records = {spec.ref: load_records(spec, req, include_audit=include_audit) for spec in specs}
    frozen = {spec.ref: FrozenSplit.load(req.datasets_dir, spec.ref) if req.datasets_dir else None
              for spec in specs}
    joint = build_joint_dataset(
        specs, records, seed=req.seed,
        near_duplicate_threshold=pipeline_params.get("near_duplicate_threshold", 0.85),
        near_duplicate_action=pipeline_params.get("near_duplicate_action", "drop"),
        min_examples=pipeline_params.get("min_examples", 10),
        progress=lambda m: report(0.05, m), frozen=frozen,
    )
    if req.datasets_dir:
        for spec in specs:
            dataset = joint.datasets[spec.ref]
            dataset.save(req.datasets_dir)
            if frozen[spec.ref] is None:  # a filter's first dataset freezes its test split
                FrozenSplit.from_dataset(dataset).save_if_absent(req.datasets_dir)
    for spec in specs:
        splits = joint.datasets[spec.ref].report["splits"]
        if splits["val"]["n"] < 2 or splits["test"]["n"] < 2:
            raise ValueError(f"too few examples of {spec.ref} in the validation/test splits "
                             f"({splits['val']['n']}/{splits['test']['n']}); label more articles for it")
    n = {name: joint.report["splits"][name]["n"] for name in ("train", "val", "test")}
    report(0.1, f"joint dataset {joint.hash}: {n['train']} train / {n['val']} val / {n['test']} test articles, "
                f"{len(specs)} filters")
    return joint


def _joint_metrics(per_filter: dict[str, dict[str, Any]], train_seconds: float, n_train: int, n_val: int,
                   n_test: int) -> dict[str, Any]:
    """The mean over filters of the headline figures, and every filter's own as ``<filter_ref>:<metric>``."""
    metrics: dict[str, Any] = {}
    for key in ("test_mae", "test_mae_raw", "val_mae", "mean_predictor_mae", "coverage", "interval_width"):
        metrics[key] = float(np.mean([f["metrics"][key] for f in per_filter.values()]))
    metrics["train_seconds"] = train_seconds
    metrics["n_train"], metrics["n_val"], metrics["n_test"] = n_train, n_val, n_test
    for ref, f in per_filter.items():
        metrics.update({f"{ref}:{k}": v for k, v in f["metrics"].items()})
    return metrics


def _register_views(specs: list[FilterSpec], req: TrainRequest, student, joint, per_filter: dict[str, dict[str, Any]],
                    fingerprint: str, metrics: dict[str, Any]) -> dict[str, Any]:
    """Register each filter's view under one version id (and promote them all when asked); the summary's
    additions. Each filter's summary gains its ``uri``."""
    registry = ModelRegistry(req.registry_root)
    version_id = new_version_id()
    multi = {"model_id": version_id, "fingerprint": fingerprint, "filters": joint.filters,
             "columns": list(student.dimensions), "dataset_hash": joint.hash,
             "datasets": joint.report["datasets"]}
    for spec in specs:
        f = per_filter[spec.ref]
        dataset = joint.datasets[spec.ref]
        f["metrics"]["train_seconds"] = metrics["train_seconds"]
        info = registry.register(spec, student.view(spec.ref), f["calibration"], f["metrics"], dataset.hash,
                                 extra={"dataset_report": {"n_examples": len(dataset.examples),
                                                           "splits": dataset.report["splits"]},
                                        "seed": req.seed, "multi": multi, **ray_extra()},
                                 reference=f["reference_distribution"], version_id=version_id,
                                 samples=dataset.arrays("val")[0])
        f["uri"] = info.uri
    added: dict[str, Any] = {"model_version": version_id}
    if req.promote:
        for spec in specs:
            registry.promote(spec.name, version_id)
        added["promoted"] = True
    return added


def _dataset_facts(dataset: Dataset) -> dict[str, Any]:
    return {"hash": dataset.hash, "label_noise": dataset.report.get("label_noise")}


def _evaluate_view(spec: FilterSpec, cols: list[int], dataset: dict[str, Any], pipeline_params: dict[str, Any],
                   val: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray], train_y: np.ndarray,
                   n_train_articles: int) -> dict[str, Any]:
    """One filter of a multi student (one part): calibrate on its validation rows, evaluate on its test rows."""
    def own(pair):  # the rows labelled for this filter, its columns
        y, raw = pair
        mask = ~np.isnan(y[:, cols[0]])
        return y[mask][:, cols], raw[mask][:, cols]

    va_y, val_raw = own(val)
    te_y, test_raw = own(test)
    tr_y = train_y[~np.isnan(train_y[:, cols[0]])][:, cols]
    calibration = Calibration.fit(val_raw, va_y, spec.dimension_names, coverage=pipeline_params.get("coverage", 0.9))
    calibration.fit_error_model(val_raw, va_y)
    calibrated, lower, upper = calibration.apply(test_raw)
    flagged = uncertain_flags(spec, calibration, test_raw, lower, upper)
    result = evaluate(spec, te_y, test_raw, calibrated, lower, upper, train_mean=tr_y.mean(axis=0), flagged=flagged)
    metrics = dict(result["flat"])
    metrics["test_mae"] = result["mae"]
    metrics["test_mae_raw"] = result["mae_raw"]
    metrics["val_mae"] = float(np.abs(np.clip(val_raw, 0, 10) - va_y).mean())
    metrics["n_train"], metrics["n_val"], metrics["n_test"] = len(tr_y), len(va_y), len(te_y)
    metrics["n_train_joint"] = n_train_articles  # the articles the shared trunk learnt from
    noise = dataset["label_noise"]
    if noise:
        metrics["inter_oracle_mae"] = float(noise["mean_abs_diff_all"])
    return {"metrics": metrics, "evaluation": result, "calibration": calibration,
            "dataset_hash": dataset["hash"], "reference_distribution": model_reference(spec, calibration, val_raw,
                                                                                    test_raw),
            "test": {"y": te_y, "calibrated": calibrated, "lower": lower, "upper": upper}}
