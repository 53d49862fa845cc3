"""Prepare, here, the data the one-call GPU run needs (the GPU machine has neither the data set nor models).

    .venv/bin/python benchmarks/gpu/prepare_run.py      # -> build/gpu_run/ (git-ignored, ~5 MB; carried)

Writes ``articles.jsonl`` (real oracle-labelled sustainability articles: train, val and the 200 test
articles both backends score, with their split and targets), ``meta.json`` (filter, dimensions) and
``tokenizer/`` (MiniLM's WordPiece tokenizer: the finetune student's tokenizer in this run, since no Qwen
tokenizer may be downloaded; ids stay inside the Qwen-shaped vocabulary).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

OUT = ROOT / "build" / "gpu_run"
DATA = Path(os.environ.get("DISTILLERY_ORIGIN_DATA", ROOT.parent / "shared" / "datasets" / "origin")) / \
    "oracle" / "sustainability__v1__bulk-labeling__gemini.jsonl"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", type=int, default=1024)
    ap.add_argument("--val", type=int, default=128)
    ap.add_argument("--test", type=int, default=200)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    from distillery_services.trainer.datasets import build_dataset, records_from_jsonl
    from transformers import AutoTokenizer

    from distillery.filters import load_filter
    from distillery.students.encoder import resolve_encoder

    spec = load_filter(ROOT / "filters" / "sustainability" / "v1")
    ds = build_dataset(spec, records_from_jsonl(DATA), seed=0)
    args.out.mkdir(parents=True, exist_ok=True)
    counts = {}
    with open(args.out / "articles.jsonl", "w", encoding="utf-8") as fh:
        for split, n in (("train", args.train), ("val", args.val), ("test", args.test)):
            texts, targets = ds.arrays(split)
            if len(texts) < n:
                raise SystemExit(f"the {split} split has {len(texts)} articles, fewer than the {n} asked for")
            fh.writelines(json.dumps({"split": split, "text": text, "targets": [float(t) for t in target]}) + "\n"
                          for text, target in zip(texts[:n], targets[:n], strict=True))
            counts[split] = n
    AutoTokenizer.from_pretrained(resolve_encoder("all-MiniLM-L6-v2")).save_pretrained(args.out / "tokenizer")
    (args.out / "meta.json").write_text(json.dumps({"filter": spec.ref, "dimensions": spec.dimension_names,
                                                    "dataset_hash": ds.hash, "counts": counts}, indent=1))
    size = sum(f.stat().st_size for f in args.out.rglob("*") if f.is_file())
    print(f"wrote {args.out}: {counts}, {size / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
