"""MiniLM (openvino int8) compiled several ways: CPU time per article at 256 tokens, same run, interleaved.

The probe's serving cost is the encoder's forward pass. This compares, on one int8 model calibrated on real
articles: the dynamic-shape model (what served before issue 20), the model with its width fixed at the full
token budget (what the backend now uses for full-width batches; 83% of real articles fill the budget), and
two streams of one thread each (a batch split in halves run at once) against one stream of two threads.
CPU time per article is the figure that holds on a shared machine; wall time is recorded too, with the load.

    .venv/bin/python benchmarks/encoder_variants.py [--repeat 4] [--cache-dir build/openvino]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from benchmarks._common import REPO, SUSTAINABILITY, write_results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=4)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--cache-dir", type=Path, default=REPO / "build" / "openvino")
    ap.add_argument("--name", default="encoder_variants")
    args = ap.parse_args()

    import openvino as ov
    from distillery_services.inference.backends.openvino_backend import OpenVinoEncoder

    texts = []
    with open(SUSTAINABILITY, encoding="utf-8") as fh:
        for line in fh:
            r = json.loads(line)
            texts.append(f"{r.get('title') or ''}\n\n{r.get('text') or ''}")
    load_before = os.getloadavg()
    enc = OpenVinoEncoder("all-MiniLM-L6-v2", 128, 128, cache_dir=args.cache_dir, quantize=True,
                          calibration_texts=texts[7000:7032])  # never among the articles measured below
    ids = enc.token_ids(texts[: 4 * args.batch])
    full = np.array([i for i, x in enumerate(ids) if len(x) == enc.full_width][: args.batch])
    x, m = enc.pad(ids, full)
    share_full = float(np.mean([len(t) == enc.full_width for t in ids]))

    core = ov.Core()
    precision = {"INFERENCE_PRECISION_HINT": "bf16" if enc.dtype == "bfloat16" else "f32"}
    static = core.read_model(str(enc.model_file))
    static.reshape({"input_ids": ov.PartialShape([-1, enc.full_width]),
                    "attention_mask": ov.PartialShape([-1, enc.full_width])})
    compiled = {
        "dynamic shape, 1 stream x 2 threads": core.compile_model(
            str(enc.model_file), "CPU", {"PERFORMANCE_HINT": "LATENCY", **precision}),
        "static width, 1 stream x 2 threads": core.compile_model(static, "CPU", {"PERFORMANCE_HINT": "LATENCY",
                                                                                **precision}),
        "dynamic shape, 1 thread": core.compile_model(
            str(enc.model_file), "CPU", {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": "1", **precision}),
        "static width, 1 thread": core.compile_model(static, "CPU", {"PERFORMANCE_HINT": "LATENCY",
                                                                    "INFERENCE_NUM_THREADS": "1", **precision}),
        "static width, 2 streams x 1 thread": core.compile_model(
            static, "CPU", {"NUM_STREAMS": "2", "INFERENCE_NUM_THREADS": "2", **precision}),
    }
    requests = {name: [c.create_infer_request(), c.create_infer_request()] for name, c in compiled.items()}

    def run(name: str, rows: int) -> None:
        first, second = requests[name]
        if name.endswith("2 streams x 1 thread") and rows > 1:
            half = rows // 2
            first.start_async({"input_ids": x[:half], "attention_mask": m[:half]})
            second.start_async({"input_ids": x[half:rows], "attention_mask": m[half:rows]})
            first.wait()
            second.wait()
        else:
            first.infer({"input_ids": x[:rows], "attention_mask": m[:rows]})

    best: dict[tuple[str, int], list[float]] = {}
    for name in compiled:
        for rows in (args.batch, 1):
            run(name, rows)  # warm-up
    for _ in range(args.repeat):
        for name in compiled:
            for rows in (args.batch, 1):
                w0, c0 = time.perf_counter(), time.process_time()
                run(name, rows)
                wall, cpu = (time.perf_counter() - w0) / rows, (time.process_time() - c0) / rows
                b = best.setdefault((name, rows), [float("inf"), float("inf")])
                b[0], b[1] = min(b[0], wall), min(b[1], cpu)
    results = [{"variant": name, "rows": rows, "wall_ms_per_article": w * 1e3, "cpu_ms_per_article": c * 1e3}
               for (name, rows), (w, c) in best.items()]
    rows = [[r["variant"], r["rows"], f"{r['cpu_ms_per_article']:.2f}", f"{r['wall_ms_per_article']:.2f}"]
            for r in results]
    write_results(args.name, {"model": str(enc.model_file.name), "full_width": enc.full_width,
                              "share_of_articles_at_full_width": share_full, "load_average_before": load_before,
                              "load_average_at_end": os.getloadavg(), "results": results},
                  ["variant", "rows per call", "CPU ms/article", "wall ms/article"], rows,
                  "python benchmarks/encoder_variants.py " + " ".join(sys.argv[1:]))
    print(f"load average {load_before} -> {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
