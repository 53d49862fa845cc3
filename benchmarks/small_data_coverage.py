"""Interval coverage with few labels: conformal intervals from cross-validation vs a small calibration split.

    .venv/bin/python benchmarks/small_data_coverage.py [--targets ai-engineering-practice,uplifting-v1]

On the small real label sets of benchmarks/transfer.py, the trainer's cross-validated mode
(services/trainer/validation.py: out-of-fold predictions of every label, each fold calibrated on the others') is
compared with the held-out mode's 80/10/10 split (intervals fitted on the ~10% validation split, measured on the
~10% test split; repeated over 5 seeds). Target: 90% coverage, within 0.88-0.92. Lexical student. Writes
benchmarks/results/small_data_coverage.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from distillery_services.trainer.validation import cross_validate

from benchmarks.transfer import TARGETS, target_set
from distillery.calibration import Calibration, coverage
from distillery.students import make_student

RESULTS = ROOT / "benchmarks" / "results"


@dataclass
class Row:
    id: str
    group: int = -1


def holdout(texts, y, dims, seed):
    order = np.random.default_rng(seed).permutation(len(texts))
    n_val = n_test = max(2, len(texts) // 10)
    val, test, train = order[:n_val], order[n_val:n_val + n_test], order[n_val + n_test:]
    student = make_student("lexical", dims).fit([texts[i] for i in train], y[train])
    cal = Calibration.fit(student.predict([texts[i] for i in val]), y[val], dims)
    _, lower, upper = cal.apply(student.predict([texts[i] for i in test]))
    return float(coverage(y[test], lower, upper).mean()), float((upper - lower).mean()), len(val)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--targets", default="ai-engineering-practice,uplifting-v1")
    ap.add_argument("--folds", type=int, default=5)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    out: dict = {"targets": {}}
    for name in args.targets.split(","):
        texts, y, dims = target_set(TARGETS[name])
        cv = cross_validate(lambda d=dims: make_student("lexical", d), texts, y, dims, args.folds, 0, 0.9,
                            [Row(str(i)) for i in range(len(texts))], lambda f, m: None)
        cv_cov = coverage(y, cv["lower"], cv["upper"])
        runs = [holdout(texts, y, dims, seed) for seed in range(5)]
        out["targets"][name] = {
            "n": len(texts),
            "cv": {"coverage": float(cv_cov.mean()), "per_dimension": dict(zip(dims, map(float, cv_cov))),
                   "width": float((cv["upper"] - cv["lower"]).mean()),
                   "mae": float(np.abs(cv["calibrated"] - y).mean())},
            "holdout": {"coverage_mean": float(np.mean([r[0] for r in runs])),
                        "coverage_min": float(min(r[0] for r in runs)), "coverage_max": float(max(r[0] for r in runs)),
                        "width": float(np.mean([r[1] for r in runs])), "n_calibration": runs[0][2]},
        }
        print(name, json.dumps(out["targets"][name]), flush=True)
    out["seconds"], out["load_average"], out["cpus"] = time.perf_counter() - t0, os.getloadavg()[0], os.cpu_count()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "small_data_coverage.json").write_text(json.dumps(out, indent=2), encoding="utf-8")
    lines = ["# Interval coverage with few labels (lexical student, 90% target)", "",
             f"{os.cpu_count()} shared CPUs, load average {out['load_average']:.1f}.", "",
             ("| label set | labels | cv coverage | cv width | holdout coverage (5 seeds: mean, min-max) | holdout "
             "calibration articles |"), "|---|---:|---:|---:|---|---:|"]
    for name, r in out["targets"].items():
        h = r["holdout"]
        lines.append(f"| {name} | {r['n']} | {r['cv']['coverage']:.3f} | {r['cv']['width']:.2f} | "
                     f"{h['coverage_mean']:.3f} ({h['coverage_min']:.3f}-{h['coverage_max']:.3f}) | "
                     f"{h['n_calibration']} |")
    (RESULTS / "small_data_coverage.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
