"""Transfer experiment: a latent space learned on the source filter's articles, with and without its predictions.

    .venv/bin/python benchmarks/transfer_latent.py [--targets uplifting-v1,ai-engineering-practice,investment-risk-v2]

The question: does more of the source than its predictions (the `transfer` student's ``prior`` and ``features``
modes) help a new filter with 100-400 labels? The source here is the sustainability/v1 articles (7.6k): their
hashed word+char TF-IDF (the lexical student's featuriser) reduced to 256 dimensions by truncated SVD (LSA), and a
ridge on all their labels (the source predictions, 8 dimensions). Variants, each scored like benchmarks/transfer.py
(5-fold CV, raw predictions clamped to 0-10, seeded samples of 100 and 200 labels plus the whole set):

- ``lexical``: the plain student (the baseline);
- ``lsa``: ridge on the 256 LSA dimensions; ``lsa_src``: ridge on LSA + source predictions;
- ``prior_lsa``: ridge on LSA + source predictions as the prior, a lexical student on the residual.

The source featuriser, SVD and ridge are fitted once and cached under $TMPDIR (the SVD takes minutes on 2 loaded
cores). Writes benchmarks/results/transfer_latent.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.transfer import SOURCE_DATA, TARGETS, target_set
from distillery.articles import head_tail_chars, read_jsonl
from distillery.students import compose_text, make_student

CACHE = Path(os.environ.get("TMPDIR", "/tmp")) / "transfer_latent_source.pkl"
VARIANTS = ("lexical", "lsa", "lsa_src", "prior_lsa")
RESULTS = ROOT / "benchmarks" / "results"


def source_parts():
    """(featuriser, svd, ridge) fitted on the source articles and labels; cached."""
    if CACHE.is_file():
        with CACHE.open("rb") as fh:
            return pickle.load(fh)[2:]
    from sklearn.decomposition import TruncatedSVD
    from sklearn.linear_model import Ridge

    from distillery.students.ngrams import HashedTfidf

    recs = [r for r in read_jsonl(SOURCE_DATA) if r.get("dimension_scores")]
    dims = list(recs[0]["dimension_scores"])
    recs = [r for r in recs if all(r["dimension_scores"].get(d) is not None for d in dims)]
    texts = [compose_text(r.get("title", ""), r.get("text", "")) for r in recs]
    y = np.array([[float(r["dimension_scores"][d]) for d in dims] for r in recs])
    hashed = HashedTfidf(word_max=2, char_min=3, char_max=5, char_wb=True, bits_word=20, bits_char=21, min_df=3)
    X = hashed.fit_transform([head_tail_chars(t, 3000) for t in texts])
    svd = TruncatedSVD(256, random_state=0).fit(X)
    ridge = Ridge(alpha=2.0, solver="sparse_cg", max_iter=2000, tol=1e-4).fit(X, y)
    with CACHE.open("wb") as fh:
        pickle.dump((texts, y, hashed, svd, ridge), fh)
    return hashed, svd, ridge


def fold_predict(variant, texts, y, tr, he, latent, alpha=1.0):
    from sklearn.linear_model import Ridge

    dims = [f"d{j}" for j in range(y.shape[1])]
    if variant == "lexical":
        return make_student("lexical", dims).fit([texts[i] for i in tr], y[tr]).predict([texts[i] for i in he])
    F = latent["lsa"] if variant == "lsa" else np.hstack([latent["lsa"], latent["src"] / 10])
    ridge = Ridge(alpha=alpha).fit(F[tr], y[tr])
    if variant != "prior_lsa":
        return ridge.predict(F[he])
    residual = make_student("lexical", dims).fit([texts[i] for i in tr], y[tr] - ridge.predict(F[tr]))
    return ridge.predict(F[he]) + residual.predict([texts[i] for i in he])


def cv_mae(variant, texts, y, parts, folds=5, seed=0) -> float:
    hashed, svd, ridge = parts
    X = hashed.transform([head_tail_chars(t, 3000) for t in texts])
    latent = {"lsa": svd.transform(X), "src": ridge.predict(X)}
    fold_of = np.random.default_rng(seed).permutation(len(texts)) % folds
    err = np.zeros_like(y)
    for k in range(folds):
        tr, he = np.flatnonzero(fold_of != k), np.flatnonzero(fold_of == k)
        err[he] = np.abs(np.clip(fold_predict(variant, texts, y, tr, he, latent), 0, 10) - y[he])
    return float(err.mean())


def curve(name, parts, sizes, repeats) -> list[dict]:
    texts, y, _ = target_set(TARGETS[name])
    rows = []
    for size in sizes:
        n = min(size, len(texts))
        if any(r["n"] == n for r in rows):
            continue
        reps = 1 if n == len(texts) else repeats
        row = {"n": n}
        for variant in VARIANTS:
            maes = []
            for r in range(reps):
                pick = np.sort(np.random.default_rng(100 + r).permutation(len(texts))[:n])
                maes.append(cv_mae(variant, [texts[i] for i in pick], y[pick], parts, seed=r))
            row[variant] = float(np.mean(maes))
        rows.append(row)
        print(name, json.dumps(row), flush=True)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--targets", default="uplifting-v1,ai-engineering-practice,investment-risk-v2")
    ap.add_argument("--sizes", default="100,200,400")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    parts = source_parts()
    sizes = [int(s) for s in args.sizes.split(",")]
    results = {"targets": {name: curve(name, parts, sizes, args.repeats) for name in args.targets.split(",")},
               "seconds": time.perf_counter() - t0, "load_average": os.getloadavg()[0],
               "command": "python benchmarks/transfer_latent.py " + " ".join(argv or sys.argv[1:])}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "transfer_latent.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    lines = ["# Transfer through a latent space learned on the source articles (experiment)", "",
             (f"`{results['command']}`; load average {results['load_average']:.1f} on 2 shared CPUs, "
             f"{results['seconds']:.0f} s (source parts cached)."), "",
             "| target | labels | lexical | lsa | lsa_src | prior_lsa | best gain |", "|---|---:|---:|---:|---:|---:|---:|"]
    for name, rows in results["targets"].items():
        for r in rows:
            best = min(r[v] for v in VARIANTS[1:])
            lines.append(f"| {name} | {r['n']} | " + " | ".join(f"{r[v]:.3f}" for v in VARIANTS)
                         + f" | {1 - best / r['lexical']:+.1%} |")
    (RESULTS / "transfer_latent.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
