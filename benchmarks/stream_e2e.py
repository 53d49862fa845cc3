"""End-to-end streaming throughput and latency: articles.raw -> prefilter -> inference -> articles.scored.

Real service processes (prefilter and inference stages) on the embedded Kafka-protocol broker (tansu), the
synthetic ``uplifting`` stream, a promoted student per run:

- ``lexical``: the default lexical student (word 1-2-grams + char 3-5-grams).
- ``lexical-words``: the fast setting (``char_ngram_max=0``, ``max_chars=3000``): word n-grams only.
- ``probe``: MiniLM embeddings (head+tail 128+128 tokens, torch CPU) + ridge head.

Per run, two phases on a warmed-up pipeline:

1. burst: ``--articles`` articles are written to articles.raw as fast as the producer can; throughput =
   articles decided (scored or rejected) / (last output record time - first raw record time); consumer lag of
   both stages is sampled every 0.25 s from their /metrics (``distillery_*_kafka_consumer_lag_messages``).
   Goal for the lexical student: >= 1,000 articles/s.
2. paced: articles are written at half the burst throughput for ~10 s; p50/p99 end-to-end latency = articles.scored
   record timestamp - articles.raw record timestamp (both producer CreateTime on this machine).

The outputs are read by confluent-kafka, independent of the services' own clients. The oracle gateway is not
started (uncertain articles only accumulate in oracle.requests) so the CPU goes to the measured path.

    .venv/bin/python benchmarks/stream_e2e.py [--articles 6000] [--probe-articles 600] [--kinds lexical,...]

Writes benchmarks/results/stream_e2e.{json,md}. This machine is shared (2 cores, several engineers):
the figures are pessimistic.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from benchmarks._common import write_results

FILTERS = Path(__file__).resolve().parent.parent / "filters"
FILTER = "uplifting"
GOAL_LEXICAL = 1000.0
PACED_SECONDS = 10.0  # length of the paced phase (at least 100 articles)
LAG = re.compile(r"^distillery_(\w+)_kafka_consumer_lag_messages\{[^}]*\}\s+([0-9.eE+-]+)$", re.MULTILINE)


def train(kind: str, spec, records):
    from distillery.calibration import Calibration
    from distillery.students import compose_text, make_student
    from distillery.synthetic import scores_of

    texts = [compose_text(r["title"], r.get("text") or "") for r in records]
    y = np.array([[scores_of(r)[d] for d in spec.dimension_names] for r in records])
    cut = int(len(texts) * 0.8)
    if kind == "probe":
        student = make_student("probe", spec.dimension_names, filter=spec.name, head="ridge",
                               alphas=[1.0, 3.0, 10.0])
    elif kind == "lexical-words":
        student = make_student("lexical", spec.dimension_names, filter=spec.name, char_ngram_max=0, max_chars=3000)
    else:
        student = make_student("lexical", spec.dimension_names, filter=spec.name)
    student.fit(texts[:cut], y[:cut])
    return student, Calibration.fit(student.predict(texts[cut:]), y[cut:], spec.dimension_names)


class Reader:
    """confluent-kafka reader of the pipeline's topics: first record timestamp (ms) per key and topic."""

    def __init__(self, bootstrap: str, topics: list[str]):
        import confluent_kafka

        self.ts: dict[str, dict[str, int]] = {topic: {} for topic in topics}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._consumer = confluent_kafka.Consumer({"bootstrap.servers": bootstrap, "group.id": "stream-bench",
                                                   "enable.auto.commit": False, "fetch.wait.max.ms": 20})
        meta = self._consumer.list_topics(timeout=10).topics
        self._consumer.assign([confluent_kafka.TopicPartition(topic, p, confluent_kafka.OFFSET_BEGINNING)
                               for topic in topics for p in meta[topic].partitions])
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            msgs = self._consumer.consume(2000, 0.1)
            with self._lock:
                for msg in msgs:
                    if not msg.error():
                        self.ts[msg.topic()].setdefault(msg.key().decode(), msg.timestamp()[1])

    def stamps(self, topic: str) -> dict[str, int]:
        with self._lock:
            return dict(self.ts[topic])

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._consumer.close()


def scrape_lag(services) -> dict[str, float]:
    out: dict[str, float] = {}
    for svc in services:
        try:
            text = urllib.request.urlopen(f"http://127.0.0.1:{svc.metrics_port}/metrics", timeout=2).read().decode()
        except OSError:
            continue
        for service, value in LAG.findall(text):
            out[service] = out.get(service, 0.0) + float(value)
    return out


class OffsetLag:
    """Consumer lag of a group from the broker's offsets: end offset - committed offset, summed over partitions
    (a consumer that only asks, never joins the group)."""

    def __init__(self, bootstrap: str, group: str, topic: str):
        import confluent_kafka

        self._ck = confluent_kafka
        self.topic = topic
        self._consumer = confluent_kafka.Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                                                   "enable.auto.commit": False})
        self.partitions = list(self._consumer.list_topics(topic, timeout=10).topics[topic].partitions)

    def __call__(self) -> int:
        tps = [self._ck.TopicPartition(self.topic, p) for p in self.partitions]
        committed = {tp.partition: tp.offset for tp in self._consumer.committed(tps, timeout=5)}
        lag = 0
        for p in self.partitions:
            high = self._consumer.get_watermark_offsets(self._ck.TopicPartition(self.topic, p), timeout=5)[1]
            lag += high - max(committed.get(p, 0), 0)
        return lag

    def close(self) -> None:
        self._consumer.close()


def run_kind(kind: str, bootstrap: str, n: int, seed: int, tmp: Path, timeout: float) -> dict:
    import confluent_kafka

    from distillery.bus import ensure_topics
    from distillery.bus import topics as t
    from distillery.filters import FilterCatalog
    from distillery.messages import from_record
    from distillery.registry import ModelRegistry
    from distillery.runtime.supervisor import Stack
    from distillery.synthetic import generate

    spec = FilterCatalog.load(FILTERS, [FILTER]).get(FILTER)
    records = list(generate(spec, 500 + 200 + 2 * n, seed=seed))
    student, calibration = train(kind, spec, records[:500])
    state = tmp / kind
    registry = ModelRegistry(state / "registry")
    info = registry.register(spec, student, calibration)
    registry.promote(spec.name, info.version_id)
    articles = [from_record(r) for r in records[500:]]
    warm, burst, paced = articles[:200], articles[200:200 + n], articles[200 + n:]

    p = f"b{uuid.uuid4().hex[:8]}."
    topic = {name: p + name for name in t.TOPICS}
    ensure_topics(bootstrap, [*topic.values(), *(p + t.dlq(x) for x in (t.ARTICLES_RAW, t.ARTICLES_CANDIDATES))],
                  partitions=2)
    common = ["--filters-dir", str(FILTERS), "--filter", FILTER, "--state-dir", str(state),
              "--kafka-bootstrap", bootstrap, "--log-level", "WARNING"]
    env = {"DISTILLERY_INFERENCE_CANDIDATES_TOPIC": topic[t.ARTICLES_CANDIDATES],
           "DISTILLERY_INFERENCE_SCORED_TOPIC": topic[t.ARTICLES_SCORED],
           "DISTILLERY_INFERENCE_ORACLE_REQUESTS_TOPIC": topic[t.ORACLE_REQUESTS],
           "DISTILLERY_INFERENCE_MODELS_EVENTS_TOPIC": topic[t.MODELS_EVENTS],
           "DISTILLERY_INFERENCE_CONSUMER_GROUP": p + "inference", "DISTILLERY_INFERENCE_RELOAD_POLL_SECONDS": "0"}
    reader = Reader(bootstrap, [topic[t.ARTICLES_RAW], topic[t.ARTICLES_SCORED], topic[t.ARTICLES_REJECTED],
                                topic[t.ARTICLES_CANDIDATES]])
    producer = confluent_kafka.Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "acks": "all",
                                         "queue.buffering.max.messages": 1_000_000})

    def send(items) -> None:
        for a in items:
            producer.produce(topic[t.ARTICLES_RAW], key=a.id.encode(), value=a.SerializeToString())
            producer.poll(0)

    def wait_done(items, what: str) -> None:
        ids = {a.id for a in items}
        deadline = time.monotonic() + timeout
        while True:
            done = set(reader.stamps(topic[t.ARTICLES_SCORED])) | set(reader.stamps(topic[t.ARTICLES_REJECTED]))
            if ids <= done:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{kind}: {len(ids - done)} of {len(ids)} articles not through ({what})")
            time.sleep(0.1)

    try:
        with Stack() as stack:
            stack.start("prefilter", args=[*common, "--kafka-topic-prefix", p, "--kafka-group", p + "prefilter"],
                        log_dir=state / "logs")
            stack.start("inference", args=common, env=env, log_dir=state / "logs")
            services = list(stack.services.values())
            send(warm)
            producer.flush(30)
            wait_done(warm, "warm-up")

            # 1. Burst: backlog throughput and lag over time.
            lag_samples: list[dict] = []
            stop = threading.Event()
            t0 = time.monotonic()

            offset_lag = {"prefilter": OffsetLag(bootstrap, p + "prefilter", topic[t.ARTICLES_RAW]),
                          "inference": OffsetLag(bootstrap, p + "inference", topic[t.ARTICLES_CANDIDATES])}

            def sample() -> None:
                while not stop.is_set():
                    row = {"t_s": round(time.monotonic() - t0, 2)}
                    row.update({f"{s}_metrics": v for s, v in scrape_lag(services).items()})
                    row.update({f"{s}_offsets": lag() for s, lag in offset_lag.items()})
                    lag_samples.append(row)
                    stop.wait(0.25)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            send(burst)
            producer.flush(60)
            wait_done(burst, "burst")
            stop.set()
            sampler.join(5)
            for lag in offset_lag.values():
                lag.close()
            raw = reader.stamps(topic[t.ARTICLES_RAW])
            scored = reader.stamps(topic[t.ARTICLES_SCORED])
            rejected = reader.stamps(topic[t.ARTICLES_REJECTED])
            ids = [a.id for a in burst]
            first_in = min(raw[i] for i in ids)
            last_out = max(scored.get(i, rejected.get(i, 0)) for i in ids)
            span = max(last_out - first_in, 1) / 1000
            candidates = reader.stamps(topic[t.ARTICLES_CANDIDATES])
            prefilter_out = max(candidates.get(i, rejected.get(i, 0)) for i in ids)
            prefilter_span = max(prefilter_out - first_in, 1) / 1000
            n_scored = sum(1 for i in ids if i in scored)
            burst_latency = [scored[i] - raw[i] for i in ids if i in scored]

            # 2. Paced at half the burst rate: latency without a backlog.
            rate = max(5.0, 0.5 * n / span)
            paced = paced[:max(100, int(rate * PACED_SECONDS))]
            start = time.monotonic()
            for k, a in enumerate(paced):
                delay = start + k / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                send([a])
            producer.flush(30)
            wait_done(paced, "paced")
            raw = reader.stamps(topic[t.ARTICLES_RAW])
            scored = reader.stamps(topic[t.ARTICLES_SCORED])
            latency = [scored[a.id] - raw[a.id] for a in paced if a.id in scored]
    finally:
        reader.close()
    peak = {f"{s}_{src}": max((x.get(f"{s}_{src}", 0) for x in lag_samples), default=0)
            for s in ("prefilter", "inference") for src in ("offsets", "metrics")}
    return {
        "kind": kind,
        "model_version": info.version_id,
        "burst_articles": n,
        "burst_scored": n_scored,
        "burst_seconds": round(span, 3),
        "articles_per_s": round(n / span, 1),
        "scored_per_s": round(n_scored / span, 1),
        "prefilter_seconds": round(prefilter_span, 3),
        "prefilter_articles_per_s": round(n / prefilter_span, 1),
        "burst_latency_p50_ms": float(np.percentile(burst_latency, 50)),
        "burst_latency_p99_ms": float(np.percentile(burst_latency, 99)),
        "paced_rate_per_s": round(rate, 1),
        "paced_articles": len(paced),
        "latency_p50_ms": float(np.percentile(latency, 50)),
        "latency_p99_ms": float(np.percentile(latency, 99)),
        "peak_lag": peak,
        "lag_over_time": lag_samples,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--articles", type=int, default=6000, help="burst size for the lexical students")
    parser.add_argument("--probe-articles", type=int, default=600, help="burst size for the probe student")
    parser.add_argument("--kinds", default="lexical,lexical-words,probe")
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for one phase")
    args = parser.parse_args(argv)
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    unknown = set(kinds) - {"lexical", "lexical-words", "probe"}
    if unknown:
        parser.error(f"unknown kinds: {', '.join(sorted(unknown))}")

    from distillery.bus.broker import EmbeddedBroker

    runs = []
    with tempfile.TemporaryDirectory(prefix="stream-e2e-") as tmp, EmbeddedBroker(log_dir=Path(tmp)) as broker:
        for kind in kinds:
            n = args.probe_articles if kind == "probe" else args.articles
            print(f"{kind}: {n} articles ...", flush=True)
            runs.append(run_kind(kind, broker.bootstrap, n, args.seed, Path(tmp), args.timeout))
            print({k: v for k, v in runs[-1].items() if k != "lag_over_time"}, flush=True)

    lexical = [r["articles_per_s"] for r in runs if r["kind"].startswith("lexical")]
    payload = {"filter": FILTER, "goal_lexical_articles_per_s": GOAL_LEXICAL,
               "goal_met": bool(lexical) and max(lexical) >= GOAL_LEXICAL, "runs": runs}
    headers = ["student", "burst articles", "articles/s (raw->scored|rejected)", "scored/s", "prefilter alone/s",
               "peak lag prefilter (offsets/metrics)", "peak lag inference (offsets/metrics)", "paced rate/s",
               "latency p50 ms", "latency p99 ms", "burst p50/p99 ms"]
    lag = lambda r, s: f"{int(r['peak_lag'][s + '_offsets'])}/{int(r['peak_lag'][s + '_metrics'])}"
    rows = [[r["kind"], r["burst_articles"], r["articles_per_s"], r["scored_per_s"], r["prefilter_articles_per_s"],
             lag(r, "prefilter"), lag(r, "inference"), r["paced_rate_per_s"], round(r["latency_p50_ms"]),
             round(r["latency_p99_ms"]), f"{r['burst_latency_p50_ms']:.0f}/{r['burst_latency_p99_ms']:.0f}"]
            for r in runs]
    write_results("stream_e2e", payload, headers, rows,
                  "python benchmarks/stream_e2e.py " + " ".join(argv if argv is not None else sys.argv[1:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
