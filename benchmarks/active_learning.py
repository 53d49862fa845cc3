"""Label efficiency: does choosing articles by student uncertainty reach a test MAE with fewer labels?

On the real sustainability/v1 oracle labels (7,608 articles, 8 dimensions): a fixed URL-grouped split;
both strategies start from the same random seed set and add the same number of labels per round; the
student is a bootstrap ensemble of `lexical` students (its members' disagreement is the uncertainty).

    .venv/bin/python benchmarks/active_learning.py [--data PATH] [--start 250] [--step 250] [--rounds 8]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks._common import SUSTAINABILITY, group_split, write_results
from distillery import active
from distillery.articles import read_jsonl
from distillery.students import compose_text, make_student

DIMS = ["climate_impact_potential", "technical_credibility", "economic_viability", "deployment_readiness",
        "systemic_impact", "justice_equity", "innovation_quality", "evidence_strength"]


def load(path: Path, seed: int):
    texts, y, split = [], [], []
    for rec in read_jsonl(path):
        scores = rec.get("dimension_scores") or {}
        if not all(d in scores for d in DIMS):
            continue
        texts.append(compose_text(rec.get("title", ""), rec.get("text", "")))
        y.append([float(scores[d]) for d in DIMS])
        split.append(group_split(rec.get("url") or rec.get("id", ""), seed))
    return texts, np.asarray(y), np.asarray(split)


def ensemble_predict(texts, y, labelled, pool, test, members, seed):
    """Fit ``members`` bootstrap lexical students on ``labelled``; predict pool and test."""
    rng = np.random.default_rng(seed)
    pool_preds, test_preds = [], []
    for m in range(members):
        boot = rng.choice(labelled, size=len(labelled), replace=True)
        student = make_student("lexical", DIMS, char_ngram_max=0, max_chars=3000)
        student.fit([texts[i] for i in boot], y[boot])
        test_preds.append(student.predict([texts[i] for i in test]))
        pool_preds.append(student.predict([texts[i] for i in pool]) if len(pool) else np.zeros((0, len(DIMS))))
    return np.stack(pool_preds), np.stack(test_preds)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=SUSTAINABILITY)
    ap.add_argument("--start", type=int, default=250)
    ap.add_argument("--step", type=int, default=250)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--members", type=int, default=4)
    ap.add_argument("--seed", type=int, default=13)
    args = ap.parse_args()
    if not args.data.exists():
        print(f"error: dataset not found at {args.data}; pass --data PATH", file=sys.stderr)
        return 2
    texts, y, split = load(args.data, args.seed)
    train_idx, test_idx = np.flatnonzero(split == "train"), np.flatnonzero(split == "test")
    rng = np.random.default_rng(args.seed)
    seed_set = list(rng.choice(train_idx, size=args.start, replace=False))
    curves: dict[str, list[dict]] = {}
    started = time.perf_counter()
    for strategy in active.STRATEGIES:
        labelled = list(seed_set)
        srng = np.random.default_rng(args.seed + 1)
        curve = []
        for round_no in range(args.rounds + 1):
            pool = np.setdiff1d(train_idx, labelled)
            pool_preds, test_preds = ensemble_predict(texts, y, np.asarray(labelled), pool, test_idx,
                                                      args.members, args.seed + round_no)
            mae = float(np.abs(test_preds.mean(axis=0) - y[test_idx]).mean())
            curve.append({"labels": len(labelled), "test_mae": round(mae, 4)})
            print(f"{strategy:11s} labels={len(labelled):5d} test MAE={mae:.4f}", flush=True)
            if round_no == args.rounds:
                break
            unc = active.ensemble_disagreement(pool_preds) if strategy == "uncertainty" else None
            labelled += active.select(list(pool), args.step, strategy, unc, srng)
        curves[strategy] = curve
    # Labels random sampling needs to reach the MAE uncertainty sampling reached at each budget.
    rows = []
    for r, u in zip(curves["random"], curves["uncertainty"]):
        rows.append([r["labels"], f"{r['test_mae']:.4f}", f"{u['test_mae']:.4f}",
                     f"{(r['test_mae'] - u['test_mae']):+.4f}"])
    final_u = curves["uncertainty"][-1]["test_mae"]
    final_r = curves["random"][-1]["test_mae"]
    reached = next((c["labels"] for c in curves["random"] if c["test_mae"] <= final_u), None)
    # The label-efficiency figure: labels uncertainty sampling needs to match random's final MAE.
    needed = next((c["labels"] for c in curves["uncertainty"] if c["test_mae"] <= final_r), None)
    summary = {
        "final_labels": curves["uncertainty"][-1]["labels"],
        "final_mae_uncertainty": final_u,
        "final_mae_random": curves["random"][-1]["test_mae"],
        "random_labels_to_match_uncertainty": reached,
        "uncertainty_labels_to_match_random_final": needed,
        "label_saving": (round(1 - needed / curves["random"][-1]["labels"], 3) if needed else None),
        "test_articles": len(test_idx),
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(summary)
    write_results(
        "active_learning",
        {"data": str(args.data), "student": f"lexical word n-grams, {args.members}-member bootstrap ensemble",
         "curves": curves, "summary": summary},
        ["labels", "random MAE", "uncertainty MAE", "gain"], rows,
        "python benchmarks/active_learning.py " + " ".join(sys.argv[1:]),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
