"""GPU scoring throughput of a Qwen2.5-0.5B-shaped regression student (random weights, no download).

Measures articles/s at 512 tokens with the ``torch`` backend (bf16, SDPA, inference_mode; eager and
torch.compile) and prints each as a fraction of the FLOP limit: 2 x non-embedding parameters x tokens per article
against this device's measured bf16 matmul rate. Goal: >= 50% of that limit.

    python benchmarks/gpu_throughput.py [--tokens 512] [--batch-sizes 64,128,256] [--seconds 8]

On a machine without CUDA it prints why it skips and writes the reason to the JSON result (exit 0).
Results: benchmarks/results/gpu_throughput.json and .md. The vLLM backend, serving a registered student, is
measured against this same limit by the prepared GPU run, benchmarks/gpu/run_gpu.py (which reuses the
helpers here).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
QWEN05_SHAPE = {
    "vocab_size": 151936, "hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24,
    "num_attention_heads": 14, "num_key_value_heads": 2, "max_position_embeddings": 32768,
    "rope_theta": 1000000.0, "tie_word_embeddings": True, "rms_norm_eps": 1e-6,
}


def write(result: dict, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "gpu_throughput.json").write_text(json.dumps(result, indent=2))
    lines = ["| backend | batch | articles/s | achieved TFLOP/s | fraction of FLOP limit |",
             "|---|---|---|---|---|"]
    for r in result.get("runs", []):
        lines.append(f"| {r['backend']} | {r.get('batch', '')} | {r['articles_per_s']:.0f} | "
                     f"{r['tflops']:.0f} | {r['fraction_of_limit']:.1%} |")
    header = [f"# GPU throughput ({result.get('device', 'no GPU')})", ""]
    if "skipped" in result:
        header.append(f"Skipped: {result['skipped']}")
    else:
        header.append(f"Shape: Qwen2.5-0.5B ({result['non_embedding_params'] / 1e6:.0f}M non-embedding params), "
                      f"{result['tokens']} tokens/article; measured bf16 matmul {result['matmul_tflops']:.0f} "
                      f"TFLOP/s; limit {result['limit_articles_per_s']:.0f} articles/s.")
    for note in result.get("notes", []):
        header.append(f"- {note}")
    (out_dir / "gpu_throughput.md").write_text("\n".join(header + [""] + lines) + "\n")


def _sync(torch, device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def matmul_tflops(torch, n: int = 8192, reps: int = 10, device: str = "cuda", dtype=None) -> float:
    """This device's measured matmul rate (bf16 on CUDA): the denominator of 'fraction of the FLOP limit'."""
    dtype = dtype or torch.bfloat16
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    _sync(torch, device)
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    _sync(torch, device)
    return 2 * n ** 3 * reps / (time.perf_counter() - t0) / 1e12


def build_model(torch, n_labels: int):
    from transformers import AutoConfig, AutoModelForSequenceClassification

    config = AutoConfig.for_model("qwen2", num_labels=n_labels, pad_token_id=0, **QWEN05_SHAPE)
    config.problem_type = "regression"
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(config, attn_implementation="sdpa",
                                                           dtype=torch.bfloat16)
    return model.to("cuda").eval(), config


def non_embedding_params(model) -> int:
    emb = model.get_input_embeddings().weight.numel()
    return sum(p.numel() for p in model.parameters()) - emb


def time_torch(torch, forward, batch: int, tokens: int, vocab: int, seconds: float, device: str = "cuda",
               warmup: int = 3) -> float:
    """Articles/s of ``forward(ids, mask)`` on full ``tokens``-long batches, timed for ``seconds``."""
    ids = torch.randint(1, vocab, (batch, tokens), device=device)
    mask = torch.ones_like(ids)
    with torch.inference_mode():
        for _ in range(warmup):
            forward(ids, mask)
        _sync(torch, device)
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            forward(ids, mask)
            n += 1
        _sync(torch, device)
        return n * batch / (time.perf_counter() - t0)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokens", type=int, default=512)
    p.add_argument("--batch-sizes", default="64,128,256")
    p.add_argument("--seconds", type=float, default=6.0)
    p.add_argument("--dims", type=int, default=6, help="regression outputs (filter dimensions)")
    p.add_argument("--no-compile", action="store_true")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    try:
        import torch
    except ImportError:
        print("SKIP: torch is not installed", flush=True)
        write({"skipped": "torch is not installed"}, args.out)
        return 0
    if not torch.cuda.is_available():
        msg = "no CUDA device visible: this benchmark needs a GPU (run it on one; nothing was measured here)"
        print(f"SKIP: {msg}", flush=True)
        write({"skipped": msg, "host": platform.node()}, args.out)
        return 0

    torch.backends.cuda.matmul.allow_tf32 = True
    device = torch.cuda.get_device_name(0)
    peak = matmul_tflops(torch)
    model, config = build_model(torch, args.dims)
    nonemb = non_embedding_params(model)
    flop_per_article = 2 * nonemb * args.tokens
    limit = peak * 1e12 / flop_per_article
    print(f"{device}: bf16 matmul {peak:.0f} TFLOP/s; {nonemb / 1e6:.0f}M non-embedding params; "
          f"limit {limit:.0f} articles/s at {args.tokens} tokens", flush=True)
    result = {"device": device, "torch": torch.__version__, "tokens": args.tokens, "matmul_tflops": peak,
              "non_embedding_params": nonemb, "flop_per_article": flop_per_article, "limit_articles_per_s": limit,
              "runs": [], "notes": []}

    def record(backend: str, batch, rate: float) -> None:
        run = {"backend": backend, "batch": batch, "articles_per_s": rate,
               "tflops": rate * flop_per_article / 1e12, "fraction_of_limit": rate / limit}
        result["runs"].append(run)
        print(f"{backend:>14} batch {batch}: {rate:8.0f} articles/s = {run['fraction_of_limit']:.1%} of limit",
              flush=True)

    def eager(ids, mask):
        return model(input_ids=ids, attention_mask=mask).logits

    batches = [int(b) for b in args.batch_sizes.split(",")]
    for b in batches:
        record("torch-eager", b, time_torch(torch, eager, b, args.tokens, config.vocab_size, args.seconds))
    if not args.no_compile:
        try:
            compiled = torch.compile(model.model, dynamic=False)

            def comp(ids, mask):
                hidden = compiled(input_ids=ids, attention_mask=mask).last_hidden_state
                return model.score(hidden[:, -1])  # no padding here: the last token is the pooled one

            best = max(batches)
            record("torch-compile", best, time_torch(torch, comp, best, args.tokens, config.vocab_size,
                                                     args.seconds))
        except Exception as exc:  # noqa: BLE001 - report and go on
            result["notes"].append(f"torch.compile failed: {type(exc).__name__}: {exc}"[:300])
    best = max(r["fraction_of_limit"] for r in result["runs"])
    result["best_fraction_of_limit"] = best
    result["goal_met"] = best >= 0.5
    print(f"best: {best:.1%} of the FLOP limit (goal >= 50%)", flush=True)
    write(result, args.out)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
