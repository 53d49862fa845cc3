"""Label efficiency: does choosing articles by student uncertainty reach a test MAE with fewer labels?

On the real sustainability/v1 oracle labels (7,608 articles, 8 dimensions): a fixed URL-grouped split;
every strategy starts from the same random seed set and adds the same number of labels per round; the
student is a bootstrap ensemble of `lexical` students. ``uncertainty`` ranks by the members' disagreement;
``diverse`` by the expected error learned from the members' out-of-bag errors (labelled neighbours' errors and a
gradient-boosted error regression, distillery.active.learned_expected_error) weighted by the disagreement of a
committee member of another family (a ridge on MiniLM embeddings, distillery.active.committee_expected_error),
per unit of estimated oracle cost, spread over the pool by weighted k-means in a TF-IDF/SVD embedding
(distillery.active); ``diverse_lexical`` is the same without the encoder member (the ``diverse`` of before);
``diverse_binned`` (not run by default) ranks by the binned error model of the members' mean score and spread;
``diverse_true_error`` (not run by default) ranks by each pool article's actual current error, which no real
selector knows: the ceiling of error-driven selection with this student. The students evaluated are the lexical
ensembles in every strategy; the encoder member only helps choose. MiniLM embeddings are cached under
build/embeddings (the first run embeds the 7.6k articles once, ~2 minutes on 2 cores).
Writes benchmarks/results/active_learning.{json,md,png}.

    .venv/bin/python benchmarks/active_learning.py [--data PATH] [--start 250] [--step 250] [--rounds 8] [--seeds 13,14,15,16,17,18]
        [--strategies random,uncertainty,diverse,diverse_lexical] [--cost-weight 1.0] [--focus 4]
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
from benchmarks._common import RESULTS, SUSTAINABILITY, group_split, write_results
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
    """Fit ``members`` bootstrap lexical students on ``labelled``; predict pool, test and (out of bag) labelled."""
    rng = np.random.default_rng(seed)
    pool_preds, test_preds, oob_preds = [], [], []
    for _ in range(members):
        pick = rng.integers(0, len(labelled), size=len(labelled))
        boot = labelled[pick]
        student = make_student("lexical", DIMS, char_ngram_max=0, max_chars=3000)
        student.fit([texts[i] for i in boot], y[boot])
        test_preds.append(student.predict([texts[i] for i in test]))
        pool_preds.append(student.predict([texts[i] for i in pool]) if len(pool) else np.zeros((0, len(DIMS))))
        oob = np.full((len(labelled), len(DIMS)), np.nan)
        out = np.setdiff1d(np.arange(len(labelled)), pick)
        if len(out):
            oob[out] = student.predict([texts[labelled[i]] for i in out])
        oob_preds.append(oob)
    return np.stack(pool_preds), np.stack(test_preds), np.stack(oob_preds)


def embedding(texts, train_idx, data: Path) -> np.ndarray:
    """The clustering embedding of the training pool, computed once per dataset (cached under /tmp)."""
    import hashlib

    key = hashlib.sha256(np.asarray(train_idx, dtype=np.int64).tobytes()).hexdigest()[:12]
    cache = Path(os.environ.get("TMPDIR", "/tmp")) / f"al_embedding_{data.stem}_{key}.npy"
    if cache.is_file():
        return np.load(cache)
    emb = active.lexical_embedding([texts[i] for i in train_idx])
    np.save(cache, emb)
    return emb


def encoder_embedding(texts: list[str]) -> np.ndarray:
    """MiniLM embeddings of every article: the probe student's encoder and its cache (2-3 s once filled)."""
    from distillery.students.probe import ProbeStudent

    return ProbeStudent(DIMS, cache_dir=ROOT / "build" / "embeddings").embed(texts)


def pick(strategy, pool, step, pool_preds, oob_preds, labelled, ctx, rng) -> list[int]:
    if strategy == "random":
        return active.select(list(pool), step, strategy, rng=rng)
    if strategy == "uncertainty":
        return active.select(list(pool), step, strategy, active.ensemble_disagreement(pool_preds), rng)
    rows, y = ctx["row_of"][pool], ctx["y"][labelled]
    if strategy in ("diverse", "diverse_lexical"):  # what distillery active-select ranks by (with / without committee)
        encoded = ctx["encoded"]
        encoder_preds = (active.encoder_member_predictions(encoded[labelled], y, encoded[pool])
                         if strategy == "diverse" else None)
        expected = active.diverse_expected_error(oob_preds, y, ctx["emb"][ctx["row_of"][labelled]], pool_preds,
                                                 ctx["emb"][rows], int(rng.integers(2**31)), encoder_preds)
    elif strategy == "diverse_true_error":  # the pool's *actual* errors (labels no selector has): an upper bound
        expected = np.abs(pool_preds.mean(axis=0) - ctx["y"][pool]).mean(axis=1) + 1e-3
    else:  # diverse_binned: the binned error model of the members' mean score and spread
        expected = active.expected_error(pool_preds, active.bootstrap_error_model(oob_preds, y))
    return active.select(list(pool), step, "diverse", expected, rng, embeddings=ctx["emb"][rows],
                         cost=ctx["cost"][pool], cost_weight=ctx["cost_weight"], focus=ctx["focus"])


def run_strategy(strategy, seed_set, texts, y, train_idx, test_idx, args, ctx) -> list[dict]:
    labelled = list(seed_set)
    rng = np.random.default_rng(args.seed + 1)
    curve = []
    for round_no in range(args.rounds + 1):
        pool = np.setdiff1d(train_idx, labelled)
        lab = np.asarray(labelled)
        pool_preds, test_preds, oob_preds = ensemble_predict(texts, y, lab, pool, test_idx, args.members,
                                                             args.seed + round_no)
        mae = float(np.abs(test_preds.mean(axis=0) - y[test_idx]).mean())
        curve.append({"labels": len(labelled), "oracle_tokens": float(ctx["cost"][lab].sum()),
                      "test_mae": round(mae, 4)})
        print(f"{strategy:11s} labels={len(labelled):5d} test MAE={mae:.4f}", flush=True)
        if round_no == args.rounds:
            break
        labelled += pick(strategy, pool, args.step, pool_preds, oob_preds, lab, ctx, rng)
    return curve


def needed(curve: list[dict], target: float, key: str) -> float | None:
    """``key`` (labels or oracle tokens) at which ``curve`` first reaches ``target``, linearly interpolated."""
    for prev, row in zip([None, *curve], curve):
        if row["test_mae"] <= target:
            if prev is None or prev["test_mae"] == row["test_mae"]:
                return row[key]
            t = (prev["test_mae"] - target) / (prev["test_mae"] - row["test_mae"])
            return prev[key] + t * (row[key] - prev[key])
    return None


def summarise(curves: dict) -> dict:
    final = curves["random"][-1]
    out = {"final_labels": final["labels"], "final_mae_random": final["test_mae"]}
    for strategy, curve in curves.items():
        if strategy == "random":
            continue
        step_labels = next((c["labels"] for c in curve if c["test_mae"] <= final["test_mae"]), None)
        labels, tokens = needed(curve, final["test_mae"], "labels"), needed(curve, final["test_mae"], "oracle_tokens")
        out[strategy] = {
            "final_mae": curve[-1]["test_mae"],
            "labels_to_match_random_final": step_labels,
            "label_saving": round(1 - step_labels / final["labels"], 3) if step_labels else None,
            "label_saving_interpolated": round(1 - labels / final["labels"], 3) if labels else None,
            "oracle_token_saving_interpolated": round(1 - tokens / final["oracle_tokens"], 3) if tokens else None,
        }
    return out


def run_seed(seed: int, args, strategies: list[str]) -> tuple[dict, int]:
    """Every strategy's curve on the split and seed set of ``seed``; also the number of test articles."""
    args = argparse.Namespace(**{**vars(args), "seed": seed})
    texts, y, split = load(args.data, seed)
    train_idx, test_idx = np.flatnonzero(split == "train"), np.flatnonzero(split == "test")
    row_of = np.full(len(texts), -1)
    row_of[train_idx] = np.arange(len(train_idx))
    ctx = {"y": y, "row_of": row_of, "cost": active.oracle_cost(texts), "cost_weight": args.cost_weight,
           "focus": args.focus, "emb": embedding(texts, train_idx, args.data),
           "encoded": encoder_embedding(texts) if "diverse" in strategies else None}
    seed_set = list(np.random.default_rng(seed).choice(train_idx, size=args.start, replace=False))
    return {s: run_strategy(s, seed_set, texts, y, train_idx, test_idx, args, ctx) for s in strategies}, len(test_idx)


def mean_curves(per_seed: list[dict]) -> dict:
    """Point-wise mean over seeds of every strategy's curve (the saving of one seed swings with random's last point)."""
    def mean(s: str, i: int, key: str) -> float:
        return float(np.mean([run[s][i][key] for run in per_seed]))

    return {s: [{"labels": point["labels"], "oracle_tokens": mean(s, i, "oracle_tokens"),
                 "test_mae": round(mean(s, i, "test_mae"), 4)} for i, point in enumerate(curve)]
            for s, curve in per_seed[0].items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=SUSTAINABILITY)
    ap.add_argument("--start", type=int, default=250)
    ap.add_argument("--step", type=int, default=250)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--members", type=int, default=4)
    ap.add_argument("--seeds", default="13,14,15,16,17,18", help="split + seed-set seeds; curves are averaged over "
                    "them (one seed's saving swings by +-8 points)")
    ap.add_argument("--strategies", default=",".join([*active.STRATEGIES, "diverse_lexical"]))
    ap.add_argument("--cost-weight", type=float, default=1.0, help="diverse: expected error / relative cost ** w")
    ap.add_argument("--focus", type=float, default=active.FOCUS, help="diverse: k-means weight exponent")
    ap.add_argument("--name", default="active_learning", help="results file stem")
    args = ap.parse_args()
    if not args.data.exists():
        print(f"error: dataset not found at {args.data}; pass --data PATH", file=sys.stderr)
        return 2
    started = time.perf_counter()
    strategies = ["random", *[s for s in args.strategies.split(",") if s != "random"]]
    seeds = [int(x) for x in args.seeds.split(",")]
    runs = [run_seed(seed, args, strategies) for seed in seeds]
    per_seed = {seed: {"curves": c, "summary": summarise(c), "test_articles": n} for seed, (c, n) in zip(seeds, runs)}
    curves = mean_curves([c for c, _ in runs])
    summary = summarise(curves)
    summary.update(seeds=seeds, seconds=round(time.perf_counter() - started, 1), load_average=os.getloadavg()[0])
    print(json.dumps(summary, indent=1))
    rows = [[row["labels"], *(f"{curves[s][i]['test_mae']:.4f}" for s in strategies)]
            for i, row in enumerate(curves["random"])]
    command = "python benchmarks/active_learning.py " + " ".join(sys.argv[1:])
    write_results(args.name, {"data": str(args.data), "student": f"lexical word n-grams, {args.members}-member "
                              "bootstrap ensemble", "cost_weight": args.cost_weight, "focus": args.focus,
                              "curves": curves, "summary": summary, "per_seed": per_seed},
                  ["labels", *(f"{s} MAE (mean of {len(seeds)} seeds)" for s in strategies)], rows, command)
    plot(curves, summary, RESULTS / f"{args.name}.png")
    return 0


def plot(curves: dict, summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for strategy, curve in curves.items():
        axes[0].plot([c["labels"] for c in curve], [c["test_mae"] for c in curve], marker="o", label=strategy)
        axes[1].plot([c["oracle_tokens"] / 1e6 for c in curve], [c["test_mae"] for c in curve], marker="o",
                     label=strategy)
    for ax, xlabel in zip(axes, ("oracle labels", "oracle input tokens (millions, estimated)")):
        ax.axhline(summary["final_mae_random"], color="grey", linestyle=":", linewidth=1)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("test MAE")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)


if __name__ == "__main__":
    sys.exit(main())
