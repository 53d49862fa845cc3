"""Prepare the GPU run of the sustainability benchmark: token ids, targets, splits and an fp16 MiniLM copy.

    .venv/bin/python benchmarks/prepare_gpu_bench.py        # writes build/gpu_bench/ (git-ignored)

The device machine has no copy of the data set nor of the model; this folder travels with the `run`
call (``carry: ["build/gpu_bench"]``). Token ids are head+tail cut exactly as the CPU encoder cuts them,
and each article carries the content key of its input text, so embeddings computed there land in the
same cache (build/embeddings) that benchmarks/train_sustainability.py reads here.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from distillery_services.trainer.datasets import build_dataset, records_from_jsonl

from distillery.filters import load_filter
from distillery.students.encoder import Encoder, resolve_encoder, text_key

sys.path.insert(0, str(ROOT / "benchmarks"))
from train_sustainability import DATA

OUT = ROOT / "build" / "gpu_bench"


def main() -> int:
    spec = load_filter(ROOT / "filters" / "sustainability" / "v1")
    ds = build_dataset(spec, records_from_jsonl(DATA), seed=0)
    enc = Encoder("all-MiniLM-L6-v2", 256, 256)
    enc._load()  # scales the budget to the model's 510 tokens
    texts, splits, targets = [], [], []
    for name in ("train", "val", "test"):
        x, y = ds.arrays(name)
        texts += x
        splits += [name] * len(x)
        targets.append(y)
    ids = enc._token_ids(texts)
    width = max(len(i) for i in ids)
    arr = np.zeros((len(ids), width), dtype=np.int16)
    lengths = np.array([len(i) for i in ids], dtype=np.int32)
    for row, i in enumerate(ids):
        arr[row, : len(i)] = i
    OUT.mkdir(parents=True, exist_ok=True)
    namespaces = {f"{h}+{t}": Encoder("all-MiniLM-L6-v2", h, t).namespace for h, t in ((128, 128), (256, 256))}
    np.savez_compressed(OUT / "data.npz", ids=arr, lengths=lengths, targets=np.concatenate(targets),
                        splits=np.array(splits), keys=np.array([text_key(t) for t in texts]))
    (OUT / "meta.json").write_text(json.dumps({"dataset_hash": ds.hash, "dimensions": spec.dimension_names,
                                               "head": enc.head_tokens, "tail": enc.tail_tokens,
                                               "namespaces": namespaces}))
    model_dir = OUT / "minilm"
    if not model_dir.exists():
        import torch
        from transformers import AutoModel, AutoTokenizer

        src = resolve_encoder("all-MiniLM-L6-v2")
        model = AutoModel.from_pretrained(src, dtype=torch.float16)
        model.save_pretrained(model_dir)
        AutoTokenizer.from_pretrained(src).save_pretrained(model_dir)
    size = sum(f.stat().st_size for f in OUT.rglob("*") if f.is_file())
    print(f"wrote {OUT}: {len(texts)} articles, ids {arr.shape}, {size / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
