"""The `uncertain` flag on the real sustainability/v1 labels: does the flagged share have >= 2x the error?

    .venv/bin/python benchmarks/uncertain_flag.py [--shares 0.05,0.1,0.2]

The lexical student on the seeded grouped split of benchmarks/train_sustainability.py (80/10/10); calibration
and the error model are fitted on the validation split as the trainer does (services/trainer/training.py), the
threshold comes from the spec's share on validation, and every figure is on the test split. Writes
benchmarks/results/uncertain_flag.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from distillery_services.trainer.datasets import build_dataset, records_from_jsonl

from distillery.calibration import Calibration
from distillery.filters import load_filter
from distillery.students import make_student
from distillery.uncertainty import flag, flagged_report

DATA = Path(os.environ.get("DISTILLERY_ORIGIN_DATA", ROOT.parent / "shared" / "datasets" / "origin")) / \
    "oracle" / "sustainability__v1__bulk-labeling__gemini.jsonl"
RESULTS = ROOT / "benchmarks" / "results"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shares", default="0.05,0.1,0.2")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    spec = load_filter(ROOT / "filters" / "sustainability" / "v1")
    ds = build_dataset(spec, records_from_jsonl(DATA), seed=args.seed)
    (tr_x, tr_y), (va_x, va_y), (te_x, te_y) = (ds.arrays(s) for s in ("train", "val", "test"))
    student = make_student("lexical", spec.dimension_names)
    t0 = time.perf_counter()
    student.fit(tr_x, tr_y, va_x, va_y)
    fit_s = time.perf_counter() - t0
    val_raw, test_raw = student.predict(va_x), student.predict(te_x)
    calibration = Calibration.fit(val_raw, va_y, spec.dimension_names)
    model = calibration.fit_error_model(val_raw, va_y)
    calibrated, lower, upper = calibration.apply(test_raw)
    expected = calibration.expected_error(test_raw, lower, upper)
    width_rule = ((upper - lower) > spec.student.uncertain_interval_width).any(axis=1)
    rows = {"interval width > 4 (previous rule)": flagged_report(te_y, calibrated, width_rule)}
    for share in (float(s) for s in args.shares.split(",")):
        rows[f"error model, share {share:g}"] = {**flagged_report(te_y, calibrated, flag(expected, model, share, None)),
                                                 "threshold": model.threshold(share)}
    result = {"dataset_hash": ds.hash, "n_val": len(va_x), "n_test": len(te_x), "fit_seconds": fit_s,
              "test_mae": float(np.abs(calibrated - te_y).mean()), "rows": rows,
              "load_average": os.getloadavg()[0], "cpus": os.cpu_count()}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "uncertain_flag.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    lines = ["# The `uncertain` flag on real sustainability/v1 labels (lexical student)", "",
             (f"Test split of the seeded grouped split ({len(te_x)} articles; error model and threshold fitted on "
             f"{len(va_x)} validation articles). Test MAE {result['test_mae']:.3f}. Machine: {os.cpu_count()} "
             f"shared CPUs, load average {result['load_average']:.1f}."), "",
             "| rule | flagged share | MAE flagged | MAE unflagged | ratio |", "|---|---:|---:|---:|---:|"]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['share']:.1%} | {r['mae_flagged']:.3f} | {r['mae_unflagged']:.3f} | "
                     f"{r['mae_ratio']:.2f}x |")
    (RESULTS / "uncertain_flag.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
