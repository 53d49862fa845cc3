"""Transfer to a new filter: does a related filter's student help a filter with 100-400 labels?

    .venv/bin/python benchmarks/transfer.py [--targets ai-engineering-practice,uplifting-v1] [--sizes 100,200,400]
        [--source-kind lexical|stack] [--source sustainability-v1|uplifting-v1|...] [--name transfer]

Source: a ``lexical`` student (``--source-kind stack``: the default ``stack``, lexical + MiniLM probe, whose
embeddings are cached under build/embeddings) trained on all real ``sustainability/v1`` labels (7.6k; cached
under build/transfer). Targets: the small real label sets in ../shared/datasets/origin/oracle/ (one label per article:
the first file in name order that scores it; preview-only records are skipped). For each target and size, a
seeded sample of that many articles (all of them when the set is smaller) is scored by 5-fold cross-validation:
the plain ``lexical`` student against ``transfer`` students (modes ``prior`` and ``features``) with the same base,
and ``lexical_distribution``: the features mode *without* sources (a ``stack`` of the one lexical member with the
same distribution heads), which separates what the sources add from what the distribution heads add.
MAE is of the raw predictions clamped to 0-10 (no calibration: it would be fitted on the same few labels); for
students whose raw output is a distribution's interpolated median, of that median (the raw value rounded).
Writes benchmarks/results/<name>.json, .md and .png (the learning curves; name ``transfer`` by default).
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

from distillery.filters import load_filter
from distillery.students import compose_text, load_student, make_student

ORIGIN = Path(os.environ.get("DISTILLERY_ORIGIN_DATA", ROOT.parent / "shared" / "datasets" / "origin")) / "oracle"
SOURCE_DATA = ORIGIN / "sustainability__v1__bulk-labeling__gemini.jsonl"
TARGETS = {"ai-engineering-practice": "ai-engineering-practice__v1__*", "uplifting-v1": "uplifting__v1__*",
           "investment-risk-v2": "investment-risk__v2__*",
           # new versions of a filter, with the same dimensions as an older one (tens of labels each)
           "uplifting-v4": "uplifting__v4__*", "sustainability-tech-innovation-v2": "sustainability_tech_innovation__v2__*",
           "sustainability-tech-deployment-v1": "sustainability_tech_deployment__v1__*"}
# --source: the bulk sustainability labels, or an older filter's small label set (any TARGETS key)
DEFAULT_SOURCE = "sustainability-v1"
SOURCE_ROOT = ROOT / "build" / "transfer"
EMBED_CACHE = ROOT / "build" / "embeddings"
RESULTS = ROOT / "benchmarks" / "results"
VARIANTS = ("lexical", "transfer_prior", "transfer_features", "lexical_distribution")
TRANSFER_C = 0.3  # the transfer student's distribution_c default, for the no-transfer twin too


class Memo:
    """A frozen source student whose predictions are computed once per article (the folds share articles)."""

    def __init__(self, student):
        self.student, self.memo = student, {}
        self.dimensions = student.dimensions

    def predict(self, texts):
        missing = [t for t in dict.fromkeys(texts) if t not in self.memo]
        if missing:
            self.memo.update(zip(missing, self.student.predict(missing)))
        return np.stack([self.memo[t] for t in texts])


def source_student(kind: str = "lexical", name: str = DEFAULT_SOURCE):
    folder = SOURCE_ROOT / (f"source_sustainability_{kind}" if name == DEFAULT_SOURCE else f"source_{name}_{kind}")
    if (folder / "manifest.json").is_file():
        return load_student(folder)
    if name == DEFAULT_SOURCE:
        spec = load_filter(ROOT / "filters" / "sustainability" / "v1")
        ds = build_dataset(spec, records_from_jsonl(SOURCE_DATA), seed=0)
        texts, y, dims, ref = ([e.input_text for e in ds.examples], np.array([e.targets for e in ds.examples]),
                               spec.dimension_names, spec.ref)
    else:
        (texts, y, dims), ref = target_set(TARGETS[name]), name
    student = make_student(kind, dims, filter=ref, **({"cache_dir": EMBED_CACHE} if kind == "stack" else {}))
    student.fit(texts, y)
    student.save(folder)
    return student


def target_set(pattern: str) -> tuple[list[str], np.ndarray, list[str]]:
    by_id: dict[str, dict] = {}
    for path in sorted(ORIGIN.glob(pattern)):
        for line in path.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            if record.get("text_is_preview") or not record.get("dimension_scores"):
                continue
            by_id.setdefault(record["id"], record)
    records = list(by_id.values())
    dims = list(records[0]["dimension_scores"])
    records = [r for r in records if all(r["dimension_scores"].get(d) is not None for d in dims)]
    texts = [compose_text(r.get("title", ""), r.get("text") or r.get("content", "")) for r in records]
    return texts, np.array([[float(r["dimension_scores"][d]) for d in dims] for r in records]), dims


def make(variant: str, dims: list[str], source, source_name: str = DEFAULT_SOURCE) -> object:
    if variant == "lexical":
        return make_student("lexical", dims)
    if variant == "lexical_distribution":
        return make_student("stack", dims, members=[{"kind": "lexical"}], distribution_c=TRANSFER_C)
    student = make_student("transfer", dims, mode=variant.removeprefix("transfer_"))
    return student.set_sources([source], [source_name])


def cross_validated_mae(variant, texts, y, dims, source, folds, seed, source_name=DEFAULT_SOURCE) -> float:
    fold_of = np.random.default_rng(seed).permutation(len(texts)) % folds
    errors = np.zeros_like(y)
    for k in range(folds):
        train, held = np.flatnonzero(fold_of != k), np.flatnonzero(fold_of == k)
        student = make(variant, dims, source, source_name).fit([texts[i] for i in train], y[train])
        pred = student.predict([texts[i] for i in held])
        if "whole" in student.calibration_maps:
            pred = np.rint(pred)  # the predicted distribution's median
        pred = np.clip(pred, 0, 10)
        errors[held] = np.abs(pred - y[held])
    return float(errors.mean())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--targets", default="ai-engineering-practice,uplifting-v1")
    ap.add_argument("--sizes", default="100,200,400")
    ap.add_argument("--repeats", type=int, default=2, help="seeded samples per size (all labels: one)")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--source-kind", choices=("lexical", "stack"), default="lexical")
    ap.add_argument("--source", choices=(DEFAULT_SOURCE, *TARGETS), default=DEFAULT_SOURCE,
                    help="the source filter's labels: the bulk sustainability set or an older filter's small set")
    ap.add_argument("--name", default="transfer", help="results file stem")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    source = Memo(source_student(args.source_kind, args.source))
    results: dict = {"source": f"{args.source} {args.source_kind}", "folds": args.folds, "targets": {},
                     "command": "python benchmarks/transfer.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    for name in args.targets.split(","):
        texts, y, dims = target_set(TARGETS[name])
        curve = []
        for size in (int(s) for s in args.sizes.split(",")):
            n = min(size, len(texts))
            if any(row["n"] == n for row in curve):
                continue  # a set smaller than this size was already scored whole
            repeats = 1 if n == len(texts) else args.repeats
            row = {"size": size, "n": n, "repeats": repeats}
            for variant in VARIANTS:
                maes = []
                for r in range(repeats):
                    pick = np.sort(np.random.default_rng(100 + r).permutation(len(texts))[:n])
                    maes.append(cross_validated_mae(variant, [texts[i] for i in pick], y[pick], dims, source,
                                                    args.folds, seed=r, source_name=args.source))
                row[variant] = float(np.mean(maes))
            row["mean_predictor"] = float(np.abs(y - y.mean(axis=0)).mean())
            for variant in VARIANTS[1:]:
                row[f"{variant}_gain"] = 1.0 - row[variant] / row["lexical"]
            curve.append(row)
            print(name, json.dumps(row), flush=True)
        results["targets"][name] = {"n_labels": len(texts), "dimensions": dims, "curve": curve}
    results["seconds"] = time.perf_counter() - t0
    results["load_average"], results["cpus"] = os.getloadavg()[0], os.cpu_count()
    write(results, args.name)
    return 0


def write(results: dict, stem: str = "transfer") -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    lines = [f"# Transfer to a new filter (source: {results['source']} student, trained on all its labels)", "",
             f"`{results['command']}`", "",
             (f"{results['folds']}-fold cross-validated MAE (raw predictions clamped to 0-10) on seeded samples of "
              f"each small real label set; {results['cpus']} shared CPUs, load average "
              f"{results['load_average']:.1f}; {results['seconds']:.0f} s in all."), "",
             ("| target | labels used | lexical | transfer prior | transfer features | gain over lexical (prior / "
              "features) | lexical + distribution heads, no transfer | gain of the sources alone |"),
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, target in results["targets"].items():
        for row in target["curve"]:
            alone = 1.0 - row["transfer_features"] / row["lexical_distribution"]
            lines.append(f"| {name} | {row['n']} | {row['lexical']:.3f} | {row['transfer_prior']:.3f} | "
                         f"{row['transfer_features']:.3f} | {row['transfer_prior_gain']:+.1%} / "
                         f"{row['transfer_features_gain']:+.1%} | {row['lexical_distribution']:.3f} | {alone:+.1%} |")
    (RESULTS / f"{stem}.md").write_text("\n".join(lines) + f"\n\n![learning curves]({stem}.png)\n",
                                        encoding="utf-8")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results["targets"]), figsize=(5 * len(results["targets"]), 4), squeeze=False)
    for ax, (name, target) in zip(axes[0], results["targets"].items()):
        ns = [row["n"] for row in target["curve"]]
        for variant in VARIANTS:
            ax.plot(ns, [row[variant] for row in target["curve"]], marker="o", label=variant)
        ax.set_title(name)
        ax.set_xlabel("labels")
        ax.set_ylabel("cross-validated MAE")
        ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / f"{stem}.png", dpi=90)
    print("\n".join(lines))


if __name__ == "__main__":
    raise SystemExit(main())
