"""GPU part of the sustainability benchmark (runs on the device machine; needs build/gpu_bench).

    python3 benchmarks/train_finetune_gpu.py --out $OUT

1. Embeds every article with all-MiniLM-L6-v2 at 128+128 and 255+255 tokens (fp32) and writes the shards
   in the probe student's embedding-cache format (copy them to build/embeddings/<namespace>/).
2. Fine-tunes MiniLM end to end with the finetune student's own training loop
   (``distillery.students.finetune.train_loop``; bf16 autocast on CUDA, early stopping on validation MAE)
   and writes raw validation/test predictions; calibration and evaluation run afterwards on the CPU
   machine with benchmarks/train_sustainability.py --gpu-preds.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BENCH = ROOT / "build" / "gpu_bench"


def main() -> int:
    import torch
    from transformers import AutoModel

    from distillery.students.finetune import FinetuneStudent, predict_ids, train_loop

    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--variants", default="full510,full256,lora510")
    ap.add_argument("--limit", type=int, default=0, help="smoke run on the first N articles")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--seeds", default="0", help="comma-separated seeds; each variant is trained once per seed")
    ap.add_argument("--skip-embeddings", action="store_true")
    ap.add_argument("--tag", default="", help="suffix of the output files")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = json.loads((BENCH / "meta.json").read_text())
    data = np.load(BENCH / "data.npz")
    ids_arr, lengths, targets, splits, keys = (data["ids"], data["lengths"], data["targets"], data["splits"],
                                               data["keys"])
    if args.limit:
        pick = np.concatenate([np.flatnonzero(splits == s)[: args.limit] for s in ("train", "val", "test")])
        ids_arr, lengths, targets, splits, keys = ids_arr[pick], lengths[pick], targets[pick], splits[pick], keys[pick]
    full = [ids_arr[i, 1: lengths[i] - 1].astype(np.int64).tolist() for i in range(len(lengths))]
    cls_id, sep_id = int(ids_arr[0, 0]), int(ids_arr[0, lengths[0] - 1])

    def cut(head, tail):
        res = []
        for ids in full:
            if len(ids) > head + tail:
                ids = ids[:head] + ids[len(ids) - tail:]
            res.append([cls_id] + ids + [sep_id])
        return res

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    summary = {"device": torch.cuda.get_device_name(0) if cuda else "cpu", "torch": torch.__version__}
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    model = AutoModel.from_pretrained(BENCH / "minilm").float().to(device).eval()
    budgets = {} if args.skip_embeddings else {"128+128": (128, 128), "256+256": (meta["head"], meta["tail"])}
    for label, (h, t) in budgets.items():
        ids = cut(h, t)
        t0 = time.perf_counter()
        vecs = np.zeros((len(ids), model.config.hidden_size), dtype=np.float32)
        order = np.argsort([len(x) for x in ids])
        with torch.inference_mode():
            for s in range(0, len(order), 256):
                idx = order[s: s + 256]
                w = max(len(ids[i]) for i in idx)
                x = torch.zeros((len(idx), w), dtype=torch.long)
                m = torch.zeros((len(idx), w), dtype=torch.long)
                for r, i in enumerate(idx):
                    x[r, : len(ids[i])] = torch.tensor(ids[i])
                    m[r, : len(ids[i])] = 1
                x, m = x.to(device), m.to(device)
                hdn = model(input_ids=x, attention_mask=m).last_hidden_state
                mm = m.unsqueeze(-1).float()
                pooled = torch.nn.functional.normalize((hdn * mm).sum(1) / mm.sum(1), dim=-1)
                vecs[idx] = pooled.cpu().numpy()
        sync()
        dt = time.perf_counter() - t0
        ns = meta["namespaces"][label]
        np.savez(out / f"emb_{ns}.npz", keys=keys, vectors=vecs)
        summary[f"embed_{label}_articles_per_s"] = len(ids) / dt
        print(f"embedded {len(ids)} at {label} in {dt:.1f}s", flush=True)
    del model

    tr, va, te = (splits == "train"), (splits == "val"), (splits == "test")
    variants = {
        "full510": {"lora_r": 0, "lr": 5e-5, "head_lr": 1e-3, "head_tokens": meta["head"], "tail_tokens": meta["tail"]},
        "full256": {"lora_r": 0, "lr": 5e-5, "head_lr": 1e-3, "head_tokens": 128, "tail_tokens": 128},
        "lora510": {"lora_r": 16, "lr": 5e-4, "head_lr": 1e-3, "head_tokens": meta["head"], "tail_tokens": meta["tail"]},
    }
    preds = {}
    runs = [(name, int(seed)) for seed in args.seeds.split(",") for name in args.variants.split(",")]
    for base_name, seed in runs:
        v = variants[base_name]
        name = base_name if seed == 0 else f"{base_name}-s{seed}"
        student = FinetuneStudent(meta["dimensions"], base_model=str(BENCH / "minilm"), use_ray=False,
                                  epochs=args.epochs, batch_size=32, patience=1, seed=seed, **v)
        ids = cut(v["head_tokens"], v["tail_tokens"])
        sel = lambda mask, ids=ids: [ids[i] for i in np.flatnonzero(mask)]
        config = {"params": student.params, "train_ids": sel(tr), "val_ids": sel(va),
                  "train_targets": targets[tr].tolist(), "val_targets": targets[va].tolist(),
                  "train_texts": [], "val_texts": []}
        t0 = time.perf_counter()
        result = train_loop(config)
        fit_s = time.perf_counter() - t0
        net = result["model"]
        net.load_state_dict(result["state"])
        t0 = time.perf_counter()
        test_pred = predict_ids(net, sel(te), 0, device, batch_size=128, bf16=cuda)
        sync()
        rate = te.sum() / (time.perf_counter() - t0)
        val_pred = predict_ids(net, sel(va), 0, device, batch_size=128, bf16=cuda)
        preds[f"{name}_val"], preds[f"{name}_test"] = val_pred, test_pred
        test_mae = float(np.abs(np.clip(test_pred, 0, 10) - targets[te]).mean())
        summary[name] = {"fit_seconds": fit_s, "history": result["history"], "test_mae_raw": test_mae,
                         "predict_articles_per_s": float(rate), "params": v}
        print(f"{name}: fit {fit_s:.0f}s, best val {result['best_val_mae']:.3f}, test raw {test_mae:.3f}",
              flush=True)
        del net, result
        if cuda:
            torch.cuda.empty_cache()
    np.savez(out / f"finetune_preds{args.tag}.npz", **preds)
    (out / f"gpu_summary{args.tag}.json").write_text(json.dumps(summary, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
