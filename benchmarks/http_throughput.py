"""HTTP/JSON next to gRPC on the same inference process: articles/s and single-call latency.

A lexical student (trained on the uplifting filter's synthetic corpus) is registered and served; then, for the
same articles, the same number of client threads and the same batch size:

- batch: gRPC ``ScoreBatch`` vs ``POST /v1/score:batch`` (64 articles per call, 2 client threads);
- single: gRPC ``Score`` vs ``POST /v1/score``, one call at a time (latency p50/p99, calls/s).

Both doors feed the same engine and batcher, so the difference is the transport and the JSON encoding. The
1-minute load average before and after is recorded (the machine is shared).

    .venv/bin/python benchmarks/http_throughput.py [--seconds 8]

Writes benchmarks/results/http_throughput.{json,md}.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from benchmarks._common import write_results

FILTERS = Path(__file__).resolve().parent.parent / "filters"


def _articles(spec, n: int) -> list[dict]:
    from distillery.synthetic import generate

    return [{"id": f"a{i}", "title": r["title"], "text": r.get("text") or r["content"]}
            for i, r in enumerate(generate(spec, n, seed=11))]


def _register(spec, root: Path) -> None:
    from distillery.calibration import Calibration
    from distillery.registry import ModelRegistry
    from distillery.students import compose_text, make_student
    from distillery.synthetic import generate, scores_of

    records = list(generate(spec, 600, seed=3))
    texts = [compose_text(r["title"], r.get("text") or r["content"]) for r in records]
    y = np.array([[scores_of(r)[d] for d in spec.dimension_names] for r in records])
    student = make_student("lexical", spec.dimension_names, filter=spec.name).fit(texts[:500], y[:500])
    cal = Calibration.fit(student.predict(texts[500:]), y[500:], spec.dimension_names)
    registry = ModelRegistry(root / "registry")
    registry.promote(spec.name, registry.register(spec, student, cal).version_id)


def _loop(call, batches, seconds: float, threads: int) -> dict:
    done = [0] * threads
    stop = time.monotonic() + seconds

    def run(k: int) -> None:
        i = k
        while time.monotonic() < stop:
            done[k] += call(batches[i % len(batches)])
            i += threads

    workers = [threading.Thread(target=run, args=(k,)) for k in range(threads)]
    start = time.monotonic()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return {"articles_per_s": sum(done) / (time.monotonic() - start)}


def _latency(call, articles, seconds: float) -> dict:
    samples = []
    stop = time.monotonic() + seconds
    i = 0
    while time.monotonic() < stop:
        t = time.perf_counter()
        call(articles[i % len(articles)])
        samples.append((time.perf_counter() - t) * 1000)
        i += 1
    ms = np.array(samples)
    return {"calls_per_s": len(ms) / seconds, "p50_ms": float(np.percentile(ms, 50)),
            "p99_ms": float(np.percentile(ms, 99))}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)

    import httpx

    from distillery.client import ScoringClient
    from distillery.filters import FilterCatalog
    from distillery.runtime.supervisor import start_service

    spec = FilterCatalog.load(FILTERS, ["uplifting"]).get("uplifting")
    arts = _articles(spec, 1024)
    batches = [arts[i:i + args.batch] for i in range(0, len(arts), args.batch)]
    load_before = os.getloadavg()[0]
    rows, runs = [], []
    with tempfile.TemporaryDirectory(prefix="bench-http-") as tmp:
        root = Path(tmp)
        _register(spec, root)
        svc = start_service("inference", args=["--filters-dir", str(FILTERS), "--filter", "uplifting",
                                               "--state-dir", str(root), "--max-wait-ms", "2",
                                               "--log-level", "WARNING"], log_dir=root / "logs")
        try:
            client = ScoringClient(svc.address, timeout=60)
            http = httpx.Client(base_url=f"http://127.0.0.1:{svc.http_port}", timeout=60)

            def grpc_batch(batch):
                return len(client.score_batch(batch, ["uplifting"]))

            def http_batch(batch):
                r = http.post("/v1/score:batch", json={"articles": batch, "filters": ["uplifting"]})
                r.raise_for_status()
                return len(r.json()["responses"])

            def grpc_one(a):
                client.score(a, ["uplifting"])

            def http_one(a):
                http.post("/v1/score", json={"article": a, "filters": ["uplifting"]}).raise_for_status()

            for door, call in (("gRPC ScoreBatch", grpc_batch), ("HTTP POST /v1/score:batch", http_batch)):
                call(batches[0])  # warm
                m = _loop(call, batches, args.seconds, args.threads)
                rows.append([door, f"articles/s (batch {args.batch}, {args.threads} threads)",
                             round(m["articles_per_s"], 1)])
                runs.append({"door": door, **m})
            for door, call in (("gRPC Score", grpc_one), ("HTTP POST /v1/score", http_one)):
                call(arts[0])
                m = _latency(call, arts, args.seconds)
                rows.append([door, "single calls/s, one at a time", round(m["calls_per_s"], 1)])
                rows.append([door, "p50 / p99 ms", f"{m['p50_ms']:.2f} / {m['p99_ms']:.2f}"])
                runs.append({"door": door, **m})
            client.close()
            http.close()
        finally:
            svc.stop()
    payload = {"load_average_1m_before": load_before, "load_average_1m_at_end": os.getloadavg()[0], "runs": runs}
    write_results("http_throughput", payload, ["door", "metric", "value"], rows,
                  "python benchmarks/http_throughput.py " + " ".join(argv or sys.argv[1:]))
    for row in rows:
        print(*row, sep="  ")
    return 0


if __name__ == "__main__":
    sys.exit(main())
