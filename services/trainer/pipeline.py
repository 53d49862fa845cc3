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
from distillery.filters.postprocess import overall_scores
from distillery.filters.spec import FilterSpec
from distillery.registry import ModelRegistry, new_version_id, reference_distribution
from distillery.students import make_student
from distillery.students.multi import qualified
from services.trainer.datasets import (
    Dataset,
    FrozenSplit,
    build_dataset,
    build_joint_dataset,
    frozen_test_ids,
    records_from_jsonl,
    records_from_store,
)
from services.trainer.evaluation import evaluate

logger = logging.getLogger(__name__)

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
                   "min_examples": int, "include_audit_labels": _boolean}


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
    if kind == "multi":
        raise ValueError(f"a multi student trains several filters jointly: name {spec.ref} and at least one "
                         "more filter (StartJob `filters`, or `distillery train --filter A --filter B`)")
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
    elif kind == "stack":
        params.setdefault("seed", seed)
        params["members"] = stack_members_for(spec, params.get("members"))
        if embed_cache_dir:
            extra["cache_dir"] = embed_cache_dir
    return make_student(kind, spec.dimension_names, filter=spec.ref, **params, **extra)


def stack_members_for(spec: FilterSpec, members: Any) -> Any:
    """A stack's members with the spec's encoder and token budget filled in for its probe members."""
    from distillery.students.stack import DEFAULTS as STACK_DEFAULTS
    from distillery.students.stack import check_members

    if isinstance(members, str):
        try:
            members = json.loads(members)
        except json.JSONDecodeError as exc:
            raise ValueError(f"stack student parameter members is not valid JSON: {exc}") from None
    checked = check_members(STACK_DEFAULTS["members"] if members is None else members)
    for member in checked:
        if member["kind"] == "probe":
            member["params"] = {"encoder": spec.student.encoder,
                                "head_tokens": spec.student.truncation.head_tokens,
                                "tail_tokens": spec.student.truncation.tail_tokens, **member["params"]}
    return checked


def load_records(spec: FilterSpec, req: TrainRequest, include_audit: bool = False):
    path = req.labels_paths.get(spec.ref, "") if req.filters else req.labels_path
    if path:
        return records_from_jsonl(path)
    return records_from_store(req.label_store_url, spec.name, spec.version, include_audit=include_audit)


def multi_student_for(specs: list[FilterSpec], params: dict[str, Any], seed: int = 0, embed_cache_dir: str = ""):
    """The untrained multi student of ``specs``: columns ``<ref>:<dim>`` in request order; the first filter's
    spec settings (encoder, token budget) apply unless ``params`` override them (one encoder serves all)."""
    if len(specs) < 2:
        raise ValueError("a multi student trains several filters jointly: name at least two filters")
    names = [s.name for s in specs]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"name each filter once in a multi student (the registry promotes per filter name); "
                         f"repeated: {', '.join(twice)}")
    first = specs[0].student
    params = dict(params)
    params.setdefault("encoder", first.encoder)
    params.setdefault("head_tokens", first.truncation.head_tokens)
    params.setdefault("tail_tokens", first.truncation.tail_tokens)
    params.setdefault("seed", seed)
    columns = [qualified(s.ref, d) for s in specs for d in s.dimension_names]
    return make_student("multi", columns, **params, **({"cache_dir": embed_cache_dir} if embed_cache_dir else {}))


def multi_fingerprint(student) -> str:
    """The identity of a fitted multi student's weights (what the inference side compares to share a pass)."""
    if hasattr(student, "fingerprint"):
        return student.fingerprint()
    import hashlib

    digest = hashlib.sha256(json.dumps([student.dimensions, student.params], sort_keys=True, default=str).encode())
    for name, tensor in sorted(student._net.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:24]


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


def run_multi_training(specs: list[FilterSpec], req: TrainRequest,
                       progress: Progress | None = None) -> dict[str, Any]:
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
    tr_x, tr_y = joint.arrays("train")
    va_x, va_y = joint.arrays("val")
    te_x, te_y = joint.arrays("test")
    report(0.12, f"training multi on {len(tr_x)} articles for {', '.join(joint.filters)}")
    student.fit(tr_x, tr_y, va_x, va_y)
    report(0.8, "calibrating each filter on its validation articles")
    val_raw, test_raw = student.predict(va_x), student.predict(te_x)  # one pass scores every filter
    fingerprint = multi_fingerprint(student)
    per_filter: dict[str, dict[str, Any]] = {}
    for spec in specs:
        cols = student.columns(spec.ref)
        dataset = joint.datasets[spec.ref]
        per_filter[spec.ref] = _evaluate_view(spec, student, cols, dataset, pipeline_params,
                                              (va_y, val_raw), (te_y, test_raw), tr_y, len(tr_x))
    metrics: dict[str, Any] = {}
    for key in ("test_mae", "test_mae_raw", "val_mae", "mean_predictor_mae", "coverage", "interval_width"):
        metrics[key] = float(np.mean([f["metrics"][key] for f in per_filter.values()]))
    metrics["train_seconds"] = time.monotonic() - started
    metrics["n_train"], metrics["n_val"], metrics["n_test"] = len(tr_x), len(va_x), len(te_x)
    for ref, f in per_filter.items():
        metrics.update({f"{ref}:{k}": v for k, v in f["metrics"].items()})
    summary: dict[str, Any] = {"metrics": metrics, "dataset_hash": joint.hash, "filters": per_filter,
                               "multi_fingerprint": fingerprint, "joint_report": joint.report}
    if req.registry_root:
        report(0.95, "registering one version per filter")
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
                                            "seed": req.seed, "multi": multi},
                                     reference=f["reference_distribution"], version_id=version_id,
                                     samples=dataset.arrays("val")[0])
            f["uri"] = info.uri
        summary["model_version"] = version_id
        if req.promote:
            for spec in specs:
                registry.promote(spec.name, version_id)
            summary["promoted"] = True
    summary["student"] = student
    report(1.0, f"done: mean test MAE {metrics['test_mae']:.3f} over {len(specs)} filters (mean predictor "
                f"{metrics['mean_predictor_mae']:.3f})")
    return summary


def _evaluate_view(spec: FilterSpec, student, cols: list[int], dataset: Dataset, pipeline_params: dict[str, Any],
                   val: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray], train_y: np.ndarray,
                   n_train_articles: int) -> dict[str, Any]:
    """One filter of a multi student: calibrate on its validation rows, evaluate on its test rows."""
    def own(pair):  # the rows labelled for this filter, its columns
        y, raw = pair
        mask = ~np.isnan(y[:, cols[0]])
        return y[mask][:, cols], raw[mask][:, cols]

    va_y, val_raw = own(val)
    te_y, test_raw = own(test)
    tr_y = train_y[~np.isnan(train_y[:, cols[0]])][:, cols]
    calibration = Calibration.fit(val_raw, va_y, spec.dimension_names, coverage=pipeline_params.get("coverage", 0.9))
    calibrated, lower, upper = calibration.apply(test_raw)
    result = evaluate(spec, te_y, test_raw, calibrated, lower, upper, train_mean=tr_y.mean(axis=0))
    metrics = dict(result["flat"])
    metrics["test_mae"] = result["mae"]
    metrics["test_mae_raw"] = result["mae_raw"]
    metrics["val_mae"] = float(np.abs(np.clip(val_raw, 0, 10) - va_y).mean())
    metrics["n_train"], metrics["n_val"], metrics["n_test"] = len(tr_y), len(va_y), len(te_y)
    metrics["n_train_joint"] = n_train_articles  # the articles the shared trunk learnt from
    noise = dataset.report.get("label_noise")
    if noise:
        metrics["inter_oracle_mae"] = float(noise["mean_abs_diff_all"])
    return {"metrics": metrics, "evaluation": result, "calibration": calibration, "view": student.view(spec.ref),
            "dataset_hash": dataset.hash, "reference_distribution": model_reference(spec, calibration, val_raw,
                                                                                    test_raw),
            "test": {"y": te_y, "calibrated": calibrated, "lower": lower, "upper": upper}}


def run_training(spec: FilterSpec, req: TrainRequest, progress: Progress | None = None) -> dict[str, Any]:
    """Train, calibrate on validation, evaluate on test, register (and maybe promote); return the summary."""
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
    summary["reference_distribution"] = model_reference(spec, calibration, val_raw, test_raw)
    if req.registry_root:
        report(0.95, "registering the model")
        registry = ModelRegistry(req.registry_root)
        info = registry.register(spec, student, calibration, metrics, dataset.hash,
                                 extra={"dataset_report": {"n_examples": len(dataset.examples),
                                                           "splits": dataset.report["splits"]},
                                        "seed": req.seed},
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


def model_reference(spec: FilterSpec, calibration: Calibration, val_raw, test_raw) -> dict[str, Any]:
    """Band shares of the model's calibrated, served-range predictions on its validation+test split: the
    distribution the live score histograms are compared with for drift (stored with the model version)."""
    raw = np.concatenate([np.asarray(val_raw, dtype=np.float64).reshape(-1, len(spec.dimension_names)),
                          np.asarray(test_raw, dtype=np.float64).reshape(-1, len(spec.dimension_names))])
    calibrated, _, _ = calibration.apply(raw)
    calibrated = np.clip(calibrated, 0.0, 10.0)  # what the inference engine exports
    overall, _ = overall_scores(spec, calibrated)
    return reference_distribution(spec.dimension_names, calibrated, overall)


def calibrated_mae(calibrated: np.ndarray, y: np.ndarray) -> float:
    """Mean over dimensions of the calibrated predictions' MAE (the figure model comparisons use)."""
    return float(np.abs(np.asarray(calibrated, dtype=np.float64) - y).mean(axis=0).mean())


def compare_and_promote(spec: FilterSpec, registry: ModelRegistry, version_id: str, student, calibration,
                        dataset: Dataset, ids: list[str], tolerance: float = 0.0) -> dict[str, Any]:
    """Score the candidate and the promoted model on the same frozen test articles; promote the candidate
    when its calibrated MAE is strictly lower (or, with ``tolerance`` > 0, at most ``tolerance`` higher).

    Without a promoted model for this filter version the candidate is promoted. With fewer than 2 frozen
    test articles left, the candidate's whole test split is used (and said so).
    """
    current = registry.promoted(spec.name)
    if current is None or current.filter_version != spec.version or current.version_id == version_id:
        registry.promote(spec.name, version_id)
        return {"metrics": {"promoted": 1.0},
                "message": f"promoted: no model of {spec.ref} was promoted before"}
    wanted = set(ids)
    rows = [e for e in dataset.examples if e.id in wanted]
    where = f"{len(rows)} frozen test articles"
    if len(rows) < 2:
        rows = dataset.split("test")
        where = f"{len(rows)} test articles (the frozen test split has fewer than 2 left)"
    texts = [e.input_text for e in rows]
    y = np.array([e.targets for e in rows], dtype=np.float64).reshape(len(rows), len(spec.dimension_names))
    candidate_cal, _, _ = calibration.apply(np.asarray(student.predict(texts), dtype=np.float64))
    candidate_mae = calibrated_mae(candidate_cal, y)
    try:
        loaded = registry.load(current)
        if list(loaded.dimensions) != list(spec.dimension_names):
            raise ValueError(f"its dimensions {loaded.dimensions} differ from {spec.dimension_names}")
        _, promoted_cal, _, _ = loaded.predict(texts)
        promoted_mae = calibrated_mae(promoted_cal, y)
    except Exception as exc:  # noqa: BLE001 - an unusable promoted model loses the comparison
        logger.warning("the promoted model %s cannot be evaluated (%s); promoting the candidate",
                       current.version_id, exc)
        registry.promote(spec.name, version_id)
        return {"metrics": {"candidate_test_mae": candidate_mae, "promoted": 1.0, "comparison_n": float(len(rows))},
                "message": f"promoted: the promoted model {current.version_id} could not be evaluated ({exc})"}
    better = candidate_mae < promoted_mae or (tolerance > 0 and candidate_mae <= promoted_mae + tolerance)
    if better:
        registry.promote(spec.name, version_id)
    verdict = (f"promoted: candidate MAE {candidate_mae:.4f} vs promoted {current.version_id} "
               f"{promoted_mae:.4f}" if better else
               f"kept {current.version_id}: candidate MAE {candidate_mae:.4f} is not below {promoted_mae:.4f}"
               + (f" (+{tolerance:g} tolerance)" if tolerance > 0 else ""))
    return {"metrics": {"candidate_test_mae": candidate_mae, "promoted_test_mae": promoted_mae,
                        "promoted": 1.0 if better else 0.0, "comparison_n": float(len(rows))},
            "message": f"{verdict} on {where}"}


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
