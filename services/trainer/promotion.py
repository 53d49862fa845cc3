"""The promotion policy of automatic retrains: a candidate replaces the promoted model only when it scores
better on the same frozen test articles."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from distillery_services.trainer.datasets import (
    Dataset,
)

from distillery.filters.spec import FilterSpec
from distillery.registry import ModelRegistry

logger = logging.getLogger(__name__)


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
