"""How a trained student is calibrated and evaluated, and on which labels the final model is fitted.

Three modes (the summary, the registered metrics and the report say which one ran):

* ``holdout``: the dataset's 80/10/10 split; the model trains on the train split, calibration is fitted on
  validation, evaluation uses the (frozen) test split. Right for large label sets.
* ``cv``: k-fold cross-validation over *all* labels (folds keep near-duplicate groups together). Every article
  gets an out-of-fold prediction; the evaluation calibrates each fold with a calibration fitted on the other
  folds' out-of-fold predictions (so no article is scored by a map that saw it), and the final model is
  trained on every label with a calibration fitted on all out-of-fold predictions. With a few hundred labels
  this keeps the 20% the holdout split would set aside, at the cost of k extra fits.
* ``files``: validation and/or test articles come from files the user gives (``--val``/``--test``); the
  labels train the model (minus any article that is also in those files).

``auto`` (the default) is ``cv`` below :data:`CV_BELOW` labelled articles for lexical and probe students
(stack, ensemble, finetune and multi students cost k extra fits of several members or of a fine-tune, and
automatic retrains must compare on the frozen test split), else ``holdout``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from distillery import parallel
from distillery.calibration import DEFAULT_MAPS, Calibration
from distillery.students.parts import WHOLE_FIT_KINDS, fold_part

CV_BELOW = 1000
DEFAULT_FOLDS = 5
MODES = ("auto", "holdout", "cv")
# Kinds whose k extra fits cost too much for a default (several members, or fine-tuning): holdout unless asked.
SLOW_KINDS = frozenset({"finetune", "multi", "stack", "ensemble"})


def choose_mode(requested: str, n_examples: int, kind: str, has_files: bool, promote_if_better: bool) -> str:
    requested = requested or "auto"
    if requested not in MODES:
        raise ValueError(f"evaluation must be one of {', '.join(MODES)}, not {requested!r}")
    if has_files:
        if requested == "cv":
            raise ValueError("evaluation=cv uses every label for cross-validation; it cannot be combined with "
                             "--val/--test files")
        return "files"
    if requested != "auto":
        return requested
    if promote_if_better or kind in SLOW_KINDS or n_examples >= CV_BELOW:
        return "holdout"
    return "cv"


def fold_of(examples, folds: int, seed: int) -> np.ndarray:
    """Fold index per example; examples of one near-duplicate group share a fold."""
    rng = np.random.default_rng(seed)
    keys = [e.group if e.group >= 0 else f"id:{e.id}" for e in examples]
    unique = list(dict.fromkeys(keys))
    order = rng.permutation(len(unique))
    fold_of_key = {unique[i]: rank % folds for rank, i in enumerate(order)}
    return np.array([fold_of_key[k] for k in keys])


def cross_validate(make_student: Callable[[], Any], texts: list[str], y: np.ndarray, dimensions: list[str],
                   folds: int, seed: int, coverage: float, examples,
                   report: Callable[[float, str], None]) -> dict[str, Any]:
    """Out-of-fold predictions of ``folds`` students, a cross-fitted evaluation calibration, the final student
    (all labels) and its calibration (all out-of-fold predictions)."""
    if len(texts) < 2 * folds:
        raise ValueError(f"cross-validation needs at least {2 * folds} labelled articles, got {len(texts)}; "
                         "label more articles or set evaluation=holdout")
    assignment = fold_of(examples, folds, seed)
    oof = np.zeros_like(y, dtype=np.float64)
    runner = parallel.current()
    students = [make_student() for _ in range(folds + 1)]  # the folds' and the final one
    final_fitted = False
    if runner.distributed and students[0].kind in WHOLE_FIT_KINDS:
        # folds and the final fit are independent parts, run at once over the Ray cluster (kinds with parts of
        # their own run fold after fold below, each spreading its own parts and sharing the encoder's cache)
        report(0.0, f"cross-validation: {folds} folds and the final model as parallel parts")
        shared_texts, shared_y = runner.share(texts), runner.share(y)
        parts = [(students[k], shared_texts, shared_y, np.flatnonzero(assignment != k),
                  np.flatnonzero(assignment == k)) for k in range(folds)]
        final_part = (students[folds], shared_texts, shared_y, None, None)
        *held_preds, final = runner.map(_cv_part, [*parts, final_part], stage="cross-validation")
        for k in range(folds):
            oof[assignment == k] = held_preds[k]
        students[folds], final_fitted = final, True
    else:
        for k in range(folds):
            report(k / (folds + 1), f"cross-validation fold {k + 1}/{folds}")
            held = assignment == k
            oof[held] = fold_part(students[k], texts, y, np.flatnonzero(assignment != k), np.flatnonzero(held))
    calibrated, lower, upper = (np.zeros_like(oof) for _ in range(3))
    maps = tuple(getattr(students[0], "calibration_maps", DEFAULT_MAPS))
    # evaluation: each fold calibrated by a map fitted on the other folds only (one part per fold)
    applied = runner.map(_calibrate_fold, [(oof[assignment != k], y[assignment != k], oof[assignment == k],
                                            list(dimensions), coverage, maps) for k in range(folds)],
                         stage="cross-validated calibration")
    for k in range(folds):
        held = assignment == k
        calibrated[held], lower[held], upper[held] = applied[k]
    final = students[folds]
    if not final_fitted:
        report(folds / (folds + 1), f"training the final model on all {len(texts)} labelled articles")
        final.fit(texts, y, None, None)
    calibration = Calibration.fit(oof, y, dimensions, coverage=coverage, maps=maps)
    return {"student": final, "calibration": calibration, "oof_raw": oof, "calibrated": calibrated,
            "lower": lower, "upper": upper, "folds": folds}


def _calibrate_fold(raw: np.ndarray, y: np.ndarray, held_raw: np.ndarray, dimensions: list[str],
                    coverage: float, maps: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Calibrate one fold's predictions with a map fitted on the other folds' (one part)."""
    return Calibration.fit(raw, y, dimensions, coverage=coverage, maps=maps).apply(held_raw)


def _cv_part(student, texts, y, train_idx, held_idx):
    """A fold (held-out predictions) or, without indices, the final fit on every label (the student)."""
    if train_idx is None:
        return student.fit(texts, y, None, None)
    return fold_part(student, texts, y, train_idx, held_idx)


def with_files(dataset, val_examples, test_examples):
    """The dataset with validation and/or test articles replaced by the given ones; articles of those files
    (same id or same text) leave the training data, and the dataset's own val/test rows train when replaced."""
    held_ids = {e.id for e in [*val_examples, *test_examples]}
    held_texts = {e.input_text for e in [*val_examples, *test_examples]}
    examples = []
    for e in dataset.examples:
        if e.id in held_ids or e.input_text in held_texts:
            continue
        if (e.split == "val" and val_examples) or (e.split == "test" and test_examples):
            e = replace(e, split="train")
        examples.append(e)
    examples += [replace(e, split="val") for e in val_examples] + [replace(e, split="test") for e in test_examples]
    splits = {name: {"n": sum(1 for e in examples if e.split == name)} for name in ("train", "val", "test")}
    report = {**dataset.report, "splits": {**dataset.report.get("splits", {}), **splits}}
    return type(dataset)(dataset.filter_ref, dataset.dimensions, examples, report, dataset.hash)


def describe(mode: str, n_train: int, n_val: int, n_test: int, folds: int = 0, files: dict[str, str] | None = None,
             ) -> str:
    """One sentence for the CLI, the job message and the report."""
    if mode == "cv":
        return (f"{folds}-fold cross-validated calibration and evaluation on all {n_train} labelled articles; "
                f"the final model was trained on all of them")
    if mode == "files":
        given = ", ".join(f"{k} from {v}" for k, v in (files or {}).items())
        return f"trained on {n_train} articles; {n_val} validation and {n_test} test articles ({given})"
    return (f"held-out split: trained on {n_train}, calibrated on {n_val} validation and evaluated on {n_test} "
            "test articles")
