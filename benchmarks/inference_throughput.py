"""Inference service throughput and latency on this CPU machine, through real gRPC to a real process.

Models are trained on the real oracle-labelled ``sustainability v1`` articles (read from
/work/shared/datasets/origin, never copied), registered and promoted in a temporary registry, then served:

- ``lexical`` student: articles/s with ScoreBatch (256 per call, 2 client threads). Goal >= 10,000/s (issue 20).
  Beside wall-clock rates: the server process's CPU time per article (read from /proc, so a loaded machine
  shows as lower articles/s but not as more CPU per article) and an in-process split of one article's CPU
  time: parsing, featurisation, the sparse product, calibration, the engine's own work, protobuf encoding.
- ``probe`` (MiniLM, head+tail 128+128 = 256 tokens) with each encoder backend (torch fp32/bf16, onnx fp32/int8,
  openvino fp32/bf16/int8): articles/s with ScoreBatch. Goal >= 60/s.
- probe: latency of single ``Score`` calls sent open-loop at 20 requests/s. Goal p99 <= 30 ms.
- accuracy next to speed: the MAE against the oracle of what each served model answered on 600 held-out
  articles through gRPC (int8 included, with the drift its gate measured).

The 1-minute load average before and after each run is recorded: figures taken on a shared machine say so.

    .venv/bin/python benchmarks/inference_throughput.py [--seconds 10] [--backends torch-bf16,openvino]
    .venv/bin/python benchmarks/inference_throughput.py --lexical-only --name inference_throughput_lexical

Writes benchmarks/results/inference_throughput.{json,md} (``--name`` picks another stem).
"""

from __future__ import annotations

import argparse
import ast
import atexit
import json
import os
import shutil
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
    from distillery.messages import from_record
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


def register_models(spec, registry, texts, y, probe: bool = True):
    from distillery_services.inference.backends import make_encoder

    from distillery.calibration import Calibration
    from distillery.students import make_student
    from distillery.students.probe import ProbeStudent

    n = len(texts)
    cut = int(n * 0.8)
    lexical = make_student("lexical", spec.dimension_names, filter=spec.name).fit(texts[:cut], y[:cut])
    lex_info = registry.register(spec, lexical, Calibration.fit(lexical.predict(texts[cut:]), y[cut:],
                                                                spec.dimension_names))
    # The cascade's first-stage setting: word n-grams only (no character n-grams), ~10x faster.
    words = make_student("lexical", spec.dimension_names, filter=spec.name, char_ngram_max=0).fit(texts[:cut], y[:cut])
    words_info = registry.register(spec, words, Calibration.fit(words.predict(texts[cut:]), y[cut:],
                                                                spec.dimension_names))
    if not probe:
        return lex_info, words_info, None
    enc = make_encoder("torch", "all-MiniLM-L6-v2", 128, 128)
    m = 400
    emb = enc.embed(texts[:m])
    probe = ProbeStudent(spec.dimension_names, filter=spec.name, head="ridge", alphas=[1.0, 3.0, 10.0])
    probe.fit_embeddings(emb[:300], y[:300], emb[300:m], y[300:m])
    probe_info = registry.register(spec, probe, Calibration.fit(probe.predict_embeddings(emb[300:m]), y[300:m],
                                                                spec.dimension_names),
                                   samples=texts[300:m])  # held-out articles, as the trainer stores them
    return lex_info, words_info, probe_info


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measured_throughput(svc, stub, arts, seconds: float, batch: int) -> dict:
    """articles/s (wall) and the server's and this client's CPU time per article over the same window."""
    from distillery.v1 import scoring_pb2

    for i in range(0, min(len(arts), 4 * batch), batch):  # warm-up (compiled kernels, first shapes)
        stub.ScoreBatch(scoring_pb2.ScoreBatchRequest(articles=arts[i:i + batch]), timeout=300)
    server0, client0, load0 = process_cpu_seconds(svc.process.pid), time.process_time(), os.getloadavg()[0]
    rate, done = batch_throughput(stub, arts, seconds, batch, count=True)
    server = process_cpu_seconds(svc.process.pid) - server0
    return {"articles_per_s": rate, "articles": done, "server_cpu_us_per_article": server / done * 1e6,
            "client_cpu_us_per_article": (time.process_time() - client0) / done * 1e6,
            "load_average_1m": [load0, os.getloadavg()[0]]}


def served_mae(stub, arts, y) -> float:
    """MAE against the oracle labels of the calibrated scores the service answers for ``arts``."""
    from distillery.v1 import scoring_pb2

    got = []
    for i in range(0, len(arts), 64):
        reply = stub.ScoreBatch(scoring_pb2.ScoreBatchRequest(articles=arts[i:i + 64]), timeout=300)
        got += [[d.calibrated for d in r.results[0].dimensions] for r in reply.responses]
    return float(np.abs(np.array(got) - y[:len(got)]).mean())


class _SplitRun:
    """One ScoreBatch's pieces, prepared in this process with the service's own engine and servicer."""

    def __init__(self, spec, root: Path, arts, batch: int, repeat: int):
        from distillery_services.inference.engine import BatchLimits, ScoringEngine
        from distillery_services.inference.models import student_text
        from distillery_services.inference.registry_source import RegistrySource
        from distillery_services.inference.servicer import ScoringServicer, _article

        from distillery.v1 import scoring_pb2

        self.engine = ScoringEngine([spec], RegistrySource(root / "registry"), BatchLimits(batch, 1 << 30, 0.002, 4096))
        self.engine.refresh()
        self.servicer = ScoringServicer(self.engine, 1 << 20, 1024)
        self.model = self.engine.slots[spec.name].models["primary"]
        self.student = self.model.loaded.student
        self.slots = self.engine.resolve([])
        groups = [arts[i:i + batch] for i in range(0, len(arts) - batch + 1, batch)]
        self.wire = [scoring_pb2.ScoreBatchRequest(articles=g).SerializeToString() for g in groups]
        self.texts = [[student_text(a.title, a.text) for a in g] for g in groups]
        self.features = [self.student._features(t) for t in self.texts]  # includes the head+tail cut
        self.raw = [self.product(X) for X in self.features]
        self.handler()  # warm-up
        # what the servicer hands the engine: plain Articles, translated from the messages and validated
        self.parsed = [[_article(a, 1 << 20) for a in scoring_pb2.ScoreBatchRequest.FromString(w).articles]
                       for w in self.wire]
        self.per_article = [self.engine.score(g, self.slots) for g in self.parsed]
        self.n, self.repeat = batch * len(groups), repeat

    def product(self, X):
        return np.asarray(X @ self.student._coef + self.student._intercept, dtype=np.float64)

    def handler(self):
        from distillery.v1 import scoring_pb2

        class _Context:
            def time_remaining(self):
                return None

        return [self.servicer.ScoreBatch(scoring_pb2.ScoreBatchRequest.FromString(w), _Context()).SerializeToString()
                for w in self.wire]

    def encode_bytes(self):  # as the servicer does: the reply written as bytes, parsed, serialised by gRPC
        from distillery_services.inference.wire import batch_response_bytes

        from distillery.v1 import scoring_pb2

        for g, results in zip(self.parsed, self.per_article, strict=True):
            scoring_pb2.ScoreBatchResponse.FromString(
                batch_response_bytes([a.id for a in g], results)).SerializeToString()

    def encode_fields(self):  # before: every field of every result set from Python
        from distillery_services.inference.servicer import fill_response

        from distillery.v1 import scoring_pb2

        for g, results in zip(self.parsed, self.per_article, strict=True):
            reply = scoring_pb2.ScoreBatchResponse()
            for article, article_results in zip(g, results, strict=True):
                fill_response(reply.responses.add(), article.id, article_results)
            reply.SerializeToString()

    def cost(self, fn, clock=time.process_time) -> float:
        """Microseconds per article of ``fn`` (least of ``repeat`` runs) on ``clock``."""
        best = float("inf")
        for _ in range(self.repeat):
            t0 = clock()
            fn()
            best = min(best, clock() - t0)
        return best / self.n * 1e6


def lexical_split(spec, root: Path, arts, batch: int = 256, repeat: int = 3) -> dict[str, float]:
    """CPU microseconds per article of each part of a ScoreBatch of ``batch`` articles, in this process
    (the same engine and servicer as the service, without the network): the least of ``repeat`` runs, with
    the featuriser on one thread (so CPU time adds up). Then, in the same run: the featurisation's wall time
    on one thread (before) and on this process's CPUs (now), and the reply built field by field (before)."""
    from distillery.students.ngrams import featurise_threads, set_featurise_threads
    from distillery.v1 import scoring_pb2

    set_featurise_threads(1)
    try:
        run = _SplitRun(spec, root, arts, batch, repeat)
        parts = _cpu_parts(run, scoring_pb2)
        featurise = lambda: [run.student._features(t) for t in run.texts]
        parts["same run, before: protobuf encoding field by field"] = run.cost(run.encode_fields)
        parts["same run, before: featurise, wall clock (1 thread)"] = run.cost(featurise, time.perf_counter)
    finally:
        set_featurise_threads(None)
    parts[f"featurise, wall clock ({featurise_threads()} threads)"] = run.cost(featurise, time.perf_counter)
    run.engine.close()
    return parts


def _cpu_parts(run: _SplitRun, scoring_pb2) -> dict[str, float]:
    parts = {
        "parse request": run.cost(lambda: [scoring_pb2.ScoreBatchRequest.FromString(w) for w in run.wire]),
        "featurise": run.cost(lambda: [run.student._features(t) for t in run.texts]),
        "sparse product": run.cost(lambda: [run.product(X) for X in run.features]),
        "calibration": run.cost(lambda: [run.model.loaded.calibration.apply(r) for r in run.raw]),
    }
    scoring = run.cost(lambda: [run.engine.score(g, run.slots) for g in run.parsed])
    parts["engine (batching, post-processing, metrics)"] = scoring - parts["featurise"] - parts[
        "sparse product"] - parts["calibration"]
    encoding = "protobuf encoding (reply written as bytes, parsed, serialised)"
    parts[encoding] = run.cost(run.encode_bytes)
    whole = run.cost(run.handler)
    parts["servicer rest (message -> Article, validation)"] = whole - scoring - parts["parse request"] - parts[encoding]
    parts["whole handler"] = whole
    return parts


def batch_throughput(stub, arts, seconds: float, batch: int, threads: int = 2, count: bool = False):
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
    rate = sum(done) / (time.monotonic() - t0)
    return (rate, sum(done)) if count else rate


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


class _Report:
    """Rows of the markdown table and the JSON payload, filled as the runs go."""

    def __init__(self, payload: dict):
        self.rows: list[list[str]] = []
        self.payload = payload

    def add(self, name, metric, value, goal, ok, extra=None) -> None:
        shown = f"{value:,.3f}" if "MAE" in metric else f"{value:,.1f}"  # drifts of 0.018 vs a 0.02 gate
        self.rows.append([name, metric, shown, goal, "yes" if ok else "NO"])
        self.payload["runs"].append({"name": name, "metric": metric, "value": value, "goal": goal, "met": ok,
                                     **(extra or {})})
        print(self.rows[-1], flush=True)


# The lexical runs: (label, which model, extra service flags). The one-thread run is the same-run baseline of
# the featuriser's threads (the only part of the change that is a setting: --cpu-threads).
def _lexical_runs(lex_info, words_info):
    return [("lexical (word + char n-grams, default)", lex_info, []),
            ("lexical (word + char n-grams), featurised on one thread (before)", lex_info, ["--cpu-threads", "1"]),
            ("lexical (word n-grams only)", words_info, [])]


def run_lexical(report: _Report, spec, registry, root: Path, arts, y, held_out, seconds: float, infos) -> None:
    from distillery.v1 import scoring_pb2_grpc

    for label, info, flags in _lexical_runs(*infos):
        registry.promote(spec.name, info.version_id)
        svc = serve(root, ["--max-batch-size", "256", "--max-batch-tokens", "1000000", *flags])
        try:
            stub = scoring_pb2_grpc.ScoringServiceStub(svc.channel())
            m = measured_throughput(svc, stub, arts, seconds, 256)
            mae = served_mae(stub, arts[held_out], y[held_out])
            rate = m["articles_per_s"]
            report.add(label, "articles/s (ScoreBatch 256, 2 clients)", rate, ">= 10,000", rate >= 10000,
                       {**m, "held_out_mae": mae})
            per_core = 1e6 / m["server_cpu_us_per_article"]
            report.add(label, "articles/s per server core (server CPU time)", per_core, ">= 10,000",
                       per_core >= 10000)
            report.add(label, "held-out MAE (served, vs oracle)", mae, "", True)
        finally:
            svc.stop()
        if flags:
            continue  # the in-process split measures both thread settings itself
        split = lexical_split(spec, root, arts[:min(len(arts), 2048)])
        report.payload.setdefault("lexical_cpu_split_us_per_article", {})[label] = split
        for part, us in split.items():
            report.rows.append([label, f"CPU us/article: {part}", f"{us:,.1f}", "", ""])
        print(label, {k: round(v, 1) for k, v in split.items()}, flush=True)


_BACKEND_FLAGS = {"torch": ["--backend", "torch"], "torch-fp32": ["--backend", "torch", "--dtype", "float32"],
                  "torch-bf16": ["--backend", "torch", "--dtype", "bfloat16"],
                  "onnx": ["--backend", "onnx"], "onnx-int8": ["--backend", "onnx", "--int8"],
                  "openvino": ["--backend", "openvino"],
                  "openvino-fp32": ["--backend", "openvino", "--dtype", "float32"],
                  "openvino-int8": ["--backend", "openvino", "--int8"]}


def run_probe(report: _Report, root: Path, arts, y, held_out, backend: str, args) -> None:
    from distillery.v1 import scoring_pb2_grpc

    log_file = root / "logs" / "inference.log"
    log_start = log_file.stat().st_size if log_file.exists() else 0  # one log for every run: read only ours
    # --no-cascade: every article through the probe (the spec's cascade would answer low scorers with lexical)
    svc = serve(root, [*_BACKEND_FLAGS[backend], "--no-cascade", "--max-batch-size", "64", "--max-batch-tokens",
                       "16384", "--max-wait-ms", "2"])
    name = f"probe ({backend})"
    try:
        stub = scoring_pb2_grpc.ScoringServiceStub(svc.channel())
        m = measured_throughput(svc, stub, arts, args.seconds, 64)
        rate = m["articles_per_s"]
        report.add(name, "articles/s at 256 tokens (ScoreBatch 64)", rate, ">= 120", rate >= 120, m)
        report.add(name, "server CPU ms/article", m["server_cpu_us_per_article"] / 1000, "", True)
        lat = open_loop_latency(stub, arts, 20.0, args.latency_seconds)
        report.add(name, "p99 ms, single Score at 20 req/s", lat["p99_ms"], "<= 30",
                   lat["p99_ms"] <= 30 and lat["errors"] == 0, lat)
        report.add(name, "held-out MAE (served, vs oracle)", served_mae(stub, arts[held_out], y[held_out]), "", True)
        with open(svc.log_path, "rb") as fh:
            fh.seek(log_start)
            log = fh.read().decode("utf-8", "replace")
        if backend.endswith("-int8"):
            report.payload.setdefault("int8_served", {})[backend] = int8_verdict(log)
    finally:
        svc.stop()


def int8_drift_rows(report: _Report) -> None:
    """Each int8 backend's held-out MAE change against torch fp32 (the accuracy gate's limit: 0.02)."""
    maes = {r["name"]: r["value"] for r in report.payload["runs"] if r["metric"].startswith("held-out MAE")}
    base = maes.get("probe (torch-fp32)")
    for name, value in maes.items():
        if base is not None and name.startswith("probe (") and name.endswith("-int8)"):
            drift = abs(value - base)
            report.add(name, "held-out MAE change vs torch fp32", drift, "<= 0.02", drift <= 0.02)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--latency-seconds", type=float, default=15.0)
    p.add_argument("--backends", default="torch-fp32,torch-bf16,onnx,onnx-int8,openvino-fp32,openvino,openvino-int8",
                   help="probe backends to serve, comma-separated ('' : lexical only)")
    p.add_argument("--articles", type=int, default=3000)
    p.add_argument("--skip-lexical", action="store_true")
    p.add_argument("--lexical-only", action="store_true", help="no probe backends (same as --backends '')")
    p.add_argument("--name", default="inference_throughput",
                   help="results file stem under benchmarks/results (another name keeps the reference run)")
    args = p.parse_args(argv)

    from distillery.filters import FilterCatalog
    from distillery.registry import ModelRegistry

    spec = FilterCatalog.load(FILTERS, ["sustainability"]).get("sustainability")
    arts, texts, y = load_data(spec, args.articles)
    root = Path(tempfile.mkdtemp(prefix="bench-inference-"))
    atexit.register(shutil.rmtree, root, True)  # the registry, converted models and logs of this run
    registry = ModelRegistry(root / "registry")
    t0 = time.perf_counter()
    backends = [] if args.lexical_only else [b for b in args.backends.split(",") if b]
    lex_info, words_info, probe_info = register_models(spec, registry, texts, y, probe=bool(backends))
    print(f"trained and registered in {time.perf_counter() - t0:.0f}s", flush=True)
    report = _Report({"articles": len(arts), "dataset": str(SUSTAINABILITY.name), "runs": [],
                      "load_average_1m_at_start": os.getloadavg()[0],
                      "held_out_articles": f"articles {int(len(arts) * 0.8)}..{len(arts)} (never trained on)"})
    held_out = slice(int(len(arts) * 0.8), len(arts))
    if not args.skip_lexical:
        run_lexical(report, spec, registry, root, arts, y, held_out, args.seconds, (lex_info, words_info))
    if backends:
        registry.promote(spec.name, probe_info.version_id)
    for backend in backends:
        run_probe(report, root, arts, y, held_out, backend, args)
    report.payload["load_average_1m_at_end"] = os.getloadavg()[0]
    int8_drift_rows(report)
    write_results(args.name, report.payload, ["model", "metric", "value", "goal", "met"], report.rows,
                  "python benchmarks/inference_throughput.py " + " ".join(argv or sys.argv[1:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
