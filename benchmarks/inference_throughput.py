"""Inference service throughput and latency on this CPU machine, through real gRPC to a real process.

Models are trained on the real oracle-labelled ``sustainability v1`` articles (read from
/work/shared/datasets/origin, never copied), registered and promoted in a temporary registry, then served:

- ``lexical`` student: articles/s with ScoreBatch (256 per call, 2 client threads). Goal >= 2,000/s.
- ``probe`` (MiniLM, head+tail 128+128 = 256 tokens) with each encoder backend (torch fp32/bf16, onnx fp32/int8,
  openvino fp32/bf16/int8): articles/s with ScoreBatch. Goal >= 60/s.
- probe: latency of single ``Score`` calls sent open-loop at 20 requests/s. Goal p99 <= 50 ms.

    .venv/bin/python benchmarks/inference_throughput.py [--seconds 10] [--backends torch-bf16,openvino]

Writes benchmarks/results/inference_throughput.{json,md} (``--name`` picks another stem).
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from benchmarks._common import SUSTAINABILITY, write_results

FILTERS = Path(__file__).resolve().parent.parent / "filters"


def load_data(spec, limit: int):
    from distillery.articles import from_record
    from distillery.students import compose_text

    arts, texts, ys = [], [], []
    with open(SUSTAINABILITY, encoding="utf-8") as fh:
        for line in fh:
            r = json.loads(line)
            scores = r.get("dimension_scores")
            if isinstance(scores, str):
                scores = ast.literal_eval(scores)
            if not scores or not r.get("title") or not r.get("text"):
                continue
            try:
                y = [float(scores[d]) for d in spec.dimension_names]
            except (KeyError, TypeError, ValueError):
                continue
            art = from_record({k: r.get(k) for k in ("id", "title", "text", "url", "source", "language")})
            arts.append(art)
            texts.append(compose_text(art.title, art.text))
            ys.append(y)
            if len(arts) >= limit:
                break
    return arts, texts, np.array(ys)


def register_models(spec, registry, texts, y):
    from distillery.calibration import Calibration
    from distillery.students import make_student
    from distillery.students.probe import ProbeStudent
    from services.inference.backends import make_encoder

    n = len(texts)
    cut = int(n * 0.8)
    lexical = make_student("lexical", spec.dimension_names, filter=spec.name).fit(texts[:cut], y[:cut])
    lex_info = registry.register(spec, lexical, Calibration.fit(lexical.predict(texts[cut:]), y[cut:],
                                                                spec.dimension_names))
    # The cascade's first-stage setting: word n-grams only (no character n-grams), ~10x faster.
    words = make_student("lexical", spec.dimension_names, filter=spec.name, char_ngram_max=0).fit(texts[:cut], y[:cut])
    words_info = registry.register(spec, words, Calibration.fit(words.predict(texts[cut:]), y[cut:],
                                                                spec.dimension_names))
    enc = make_encoder("torch", "all-MiniLM-L6-v2", 128, 128)
    m = 400
    emb = enc.embed(texts[:m])
    probe = ProbeStudent(spec.dimension_names, filter=spec.name, head="ridge", alphas=[1.0, 3.0, 10.0])
    probe.fit_embeddings(emb[:300], y[:300], emb[300:m], y[300:m])
    probe_info = registry.register(spec, probe, Calibration.fit(probe.predict_embeddings(emb[300:m]), y[300:m],
                                                                spec.dimension_names),
                                   samples=texts[300:m])  # held-out articles, as the trainer stores them
    return lex_info, words_info, probe_info


def batch_throughput(stub, arts, seconds: float, batch: int, threads: int = 2) -> float:
    from distillery.v1 import scoring_pb2

    reqs = [scoring_pb2.ScoreBatchRequest(articles=arts[i:i + batch]) for i in range(0, len(arts) - batch + 1, batch)]
    stub.ScoreBatch(reqs[0], timeout=120)  # warm-up
    done = [0] * threads
    stop = time.monotonic() + seconds

    def run(k: int) -> None:
        i = k
        while time.monotonic() < stop:
            reply = stub.ScoreBatch(reqs[i % len(reqs)], timeout=120)
            done[k] += len(reply.responses)
            i += threads

    t0 = time.monotonic()
    workers = [threading.Thread(target=run, args=(k,)) for k in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return sum(done) / (time.monotonic() - t0)


def open_loop_latency(stub, arts, rate: float, seconds: float) -> dict:
    from distillery.v1 import scoring_pb2

    for a in arts[:10]:
        stub.Score(scoring_pb2.ScoreRequest(article=a), timeout=30)
    latencies, errors, threads = [], [], []
    lock = threading.Lock()

    def one(a) -> None:
        t0 = time.perf_counter()
        try:
            stub.Score(scoring_pb2.ScoreRequest(article=a), timeout=30)
            with lock:
                latencies.append(time.perf_counter() - t0)
        except Exception as exc:  # noqa: BLE001 - counted
            errors.append(str(exc)[:200])

    start = time.perf_counter()
    n = int(rate * seconds)
    for i in range(n):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        t = threading.Thread(target=one, args=(arts[i % len(arts)],))
        t.start()
        threads.append(t)
    for t in threads:
        t.join()
    lat = np.array(latencies) * 1000
    return {"requests": n, "errors": len(errors), "p50_ms": float(np.percentile(lat, 50)),
            "p90_ms": float(np.percentile(lat, 90)), "p99_ms": float(np.percentile(lat, 99)),
            "max_ms": float(lat.max())}


def int8_verdict(log: str) -> dict:
    """What the int8 gate decided in a service log: served or not, and the drift it measured."""
    for line in log.splitlines():
        if "int8 encoder" in line:
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            return {"served": "int8" if "accepted" in entry.get("msg", "") else "unquantised (drift above the gate)",
                    "drift_mae": entry.get("mae"), "limit": entry.get("limit", 0.02)}
    return {"served": "unknown (no gate line in the log)"}


def serve(root: Path, extra: list[str]):
    from distillery.runtime.supervisor import start_service

    return start_service("inference", args=[
        "--filters-dir", str(FILTERS), "--filter", "sustainability", "--state-dir", str(root),
        "--reload-poll-seconds", "0", "--log-level", "INFO", *extra], log_dir=root / "logs", timeout=300)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--latency-seconds", type=float, default=15.0)
    p.add_argument("--backends", default="torch-fp32,torch-bf16,onnx,onnx-int8,openvino-fp32,openvino,openvino-int8")
    p.add_argument("--articles", type=int, default=3000)
    p.add_argument("--skip-lexical", action="store_true")
    p.add_argument("--name", default="inference_throughput",
                   help="results file stem under benchmarks/results (another name keeps the reference run)")
    args = p.parse_args(argv)

    from distillery.filters import FilterCatalog
    from distillery.registry import ModelRegistry
    from distillery.v1 import scoring_pb2_grpc

    spec = FilterCatalog.load(FILTERS, ["sustainability"]).get("sustainability")
    arts, texts, y = load_data(spec, args.articles)
    root = Path(tempfile.mkdtemp(prefix="bench-inference-"))
    registry = ModelRegistry(root / "registry")
    t0 = time.perf_counter()
    lex_info, words_info, probe_info = register_models(spec, registry, texts, y)
    print(f"trained and registered in {time.perf_counter() - t0:.0f}s", flush=True)
    rows, payload = [], {"articles": len(arts), "dataset": str(SUSTAINABILITY.name), "runs": []}

    def add(name, metric, value, goal, ok, extra=None):
        rows.append([name, metric, f"{value:,.1f}", goal, "yes" if ok else "NO"])
        payload["runs"].append({"name": name, "metric": metric, "value": value, "goal": goal, "met": ok,
                                **(extra or {})})
        print(rows[-1], flush=True)

    for label, info in [] if args.skip_lexical else [("lexical (word + char n-grams, default)", lex_info),
                        ("lexical (word n-grams only)", words_info)]:
        registry.promote(spec.name, info.version_id)
        svc = serve(root, ["--max-batch-size", "256", "--max-batch-tokens", "1000000"])
        try:
            stub = scoring_pb2_grpc.ScoringServiceStub(svc.channel())
            rate = batch_throughput(stub, arts, args.seconds, 256)
            add(label, "articles/s (ScoreBatch 256, 2 clients)", rate, ">= 2,000", rate >= 2000,
                {"val_mae": info.metrics.get("mae", None)})
        finally:
            svc.stop()

    registry.promote(spec.name, probe_info.version_id)
    for backend in [b for b in args.backends.split(",") if b]:
        flags = {"torch": ["--backend", "torch"], "torch-fp32": ["--backend", "torch", "--dtype", "float32"],
                 "torch-bf16": ["--backend", "torch", "--dtype", "bfloat16"],
                 "onnx": ["--backend", "onnx"], "onnx-int8": ["--backend", "onnx", "--int8"],
                 "openvino": ["--backend", "openvino"], "openvino-fp32": ["--backend", "openvino", "--dtype", "float32"],
                 "openvino-int8": ["--backend", "openvino", "--int8"]}[backend]
        log_file = root / "logs" / "inference.log"
        log_start = log_file.stat().st_size if log_file.exists() else 0  # one log for every run: read only ours
        # --no-cascade: every article through the probe (the spec's cascade would answer low scorers with lexical)
        svc = serve(root, [*flags, "--no-cascade", "--max-batch-size", "64", "--max-batch-tokens", "16384",
                           "--max-wait-ms", "2"])
        try:
            stub = scoring_pb2_grpc.ScoringServiceStub(svc.channel())
            rate = batch_throughput(stub, arts, args.seconds, 64)
            add(f"probe ({backend})", "articles/s at 256 tokens (ScoreBatch 64)", rate, ">= 60", rate >= 60)
            lat = open_loop_latency(stub, arts, 20.0, args.latency_seconds)
            add(f"probe ({backend})", "p99 ms, single Score at 20 req/s", lat["p99_ms"], "<= 50",
                lat["p99_ms"] <= 50 and lat["errors"] == 0, lat)
            with open(svc.log_path, "rb") as fh:
                fh.seek(log_start)
                log = fh.read().decode("utf-8", "replace")
            if backend.endswith("-int8"):
                payload.setdefault("int8_served", {})[backend] = int8_verdict(log)
        finally:
            svc.stop()
    payload["load_average_1m_at_end"] = os.getloadavg()[0]
    write_results(args.name, payload, ["model", "metric", "value", "goal", "met"], rows,
                  "python benchmarks/inference_throughput.py " + " ".join(argv or sys.argv[1:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
