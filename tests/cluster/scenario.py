"""The scenario the distributed system must pass, on the cluster in a box (see docs/operations.md).

1. External servers, each on its own host: tansu (``kafka``), moto's S3 server (``s3``), the machine's
   PostgreSQL and Redis through a forwarder on the bridge (``postgres``, ``redis``; an own database and key
   prefix, dropped at the end).
2. The chart's pods: pre-install hook Jobs (topic provisioning) to completion, then every Deployment's
   replicas and the RayCluster's head and workers; each ready by its own readinessProbe.
3. Phase A: 1,000 synthetic articles through ``articles.raw``; a labelling job (this driver) asks the oracle
   for every candidate; the gateways store the labels in PostgreSQL; the trainer's retrain loop trains the
   lexical student on the RayCluster, registers it on S3 and promotes it; both inference replicas load it
   from S3 and score the backlog.
4. Phase B: 2,000 more articles in two halves; between them ``kill -9`` one pod of every Deployment; each is
   restarted; every candidate ends in ``articles.scored`` and every oracle request gets its label.
5. A gRPC client in its own host calls the inference Service by name; both replicas answer.
6. Counts per topic from an independent confluent-kafka reader, labels in PostgreSQL, the shared Redis
   budget, the loop time -> benchmarks/results/cluster_loop.json + .md.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import yaml

from .chart import ROOT, VENV, Manifests, render
from .cluster import Cluster, ClusterError

VALUES = Path(__file__).resolve().parent / "cluster-values.yaml"
OPERATOR_SECRETS = Path(__file__).resolve().parent / "operator-secrets.yaml"
FILTER = "uplifting"
BUCKET = "distillery-models"
S3_PORT = 5000
DB = "distillery_cluster_test"
REDIS_PREFIX = "distillery-cluster-test:"
TOKEN = "cluster-test-token"
LLM_PORT, LLM_KEY, LLM_PER_SECOND = 8000, "cluster-test-llm-key", 20
PHASE_A, PHASE_B1, PHASE_B2 = 1000, 1000, 1000
STREAM_TOPICS = ["articles.raw", "articles.candidates", "articles.rejected", "oracle.requests", "oracle.labels",
                 "articles.scored"]
TOPICS = [*STREAM_TOPICS, "models.events", "articles.raw.dlq", "articles.candidates.dlq", "oracle.requests.dlq"]
RESULTS = ROOT / "benchmarks" / "results"


def log(msg: str) -> None:
    print(f"[cluster {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- the machine's PostgreSQL and Redis: an own database and key prefix ----------------------------------
def reset_postgres(create: bool) -> None:
    import psycopg

    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/test", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        if create:
            conn.execute(f"CREATE DATABASE {DB}")


def reset_redis() -> None:
    import redis

    client = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    keys = list(client.scan_iter(match=REDIS_PREFIX + "*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


# -- the independent reader ------------------------------------------------------------------------------
class Reader:
    """An independent confluent-kafka reader: one thread reads every partition of ``topics`` from offset 0
    and keeps every record (key, value), so waits and the final counts never trust the services' own view.
    (It does not stop at the high watermarks: tansu's can lag the last records of a batch.)"""

    def __init__(self, bootstrap: str, topics: list[str], decode: dict | None = None):
        self.bootstrap, self.topics, self.decode = bootstrap, topics, decode or {}
        self.records: dict[str, list[tuple]] = {t: [] for t in topics}
        self.last_record = time.monotonic()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="independent-reader", daemon=True)

    def start(self) -> Reader:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)

    def _run(self) -> None:
        from confluent_kafka import Consumer, TopicPartition

        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": f"cluster-reader-{os.getpid()}",
                             "enable.auto.commit": False, "auto.offset.reset": "earliest"})
        assigned: set[tuple[str, int]] = set()
        next_refresh = 0.0
        try:
            while not self._stop.is_set():
                if time.monotonic() >= next_refresh:  # topics and partitions that appeared since
                    meta = consumer.list_topics(timeout=10)
                    new = [TopicPartition(t, p, 0) for t in self.topics if t in meta.topics
                           for p in meta.topics[t].partitions if (t, p) not in assigned]
                    if new:
                        consumer.incremental_assign(new)
                        assigned |= {(tp.topic, tp.partition) for tp in new}
                    next_refresh = time.monotonic() + 5
                msg = consumer.poll(0.5)
                if msg is None or msg.error():
                    continue
                value = msg.value()
                if msg.topic() in self.decode:
                    value = self.decode[msg.topic()](value)
                with self._lock:
                    self.records[msg.topic()].append(((msg.key() or b"").decode(), value))
                    self.last_record = time.monotonic()
        except BaseException as exc:  # noqa: BLE001 - surfaced by check()
            self._error = exc
        finally:
            consumer.close()

    def check(self) -> None:
        if self._error is not None:
            raise ClusterError(f"independent reader failed: {self._error!r}")

    def keys(self, topic: str) -> set[str]:
        self.check()
        with self._lock:
            return {k for k, _ in self.records[topic]}

    def values(self, topic: str) -> list[tuple]:
        with self._lock:
            return list(self.records[topic])

    def settle(self, quiet: float = 5.0, timeout: float = 60.0) -> None:
        """Wait until no record has arrived for ``quiet`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() - self.last_record < quiet and time.monotonic() < deadline:
            time.sleep(0.5)


def partitions(bootstrap: str) -> dict[str, int]:
    from confluent_kafka.admin import AdminClient

    meta = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10)
    return {name: len(t.partitions) for name, t in meta.topics.items() if not name.startswith("__")}


def wait_for(predicate, timeout: float, what: str, detail=lambda: "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(2.0)
    raise ClusterError(f"{what}: not reached within {timeout:.0f}s. {detail()}")


def _metrics_text(address: str, port: int) -> str:
    try:
        return urllib.request.urlopen(f"http://{address}:{port}/metrics", timeout=5).read().decode()
    except OSError:
        return ""


def scrape(address: str, port: int, metric: str) -> float:
    """Sum of a Prometheus metric's samples on one pod's /metrics."""
    text = _metrics_text(address, port)
    total = 0.0
    for line in text.splitlines():
        if line.startswith(metric) and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


# -- the scenario ----------------------------------------------------------------------------------------
def load_manifests() -> Manifests:
    """The chart rendered with the cluster values, plus the Secrets the operator created beforehand."""
    values = yaml.safe_load(VALUES.read_text())
    return Manifests(render(values) + list(yaml.safe_load_all(OPERATOR_SECRETS.read_text())))


def run(run_dir: Path, timeout_scale: float = 1.0) -> dict:
    t_start = time.monotonic()
    manifests = load_manifests()
    spec_filters = _write_corpus(run_dir)
    reset_postgres(create=True)
    reset_redis()
    try:
        with Cluster(manifests, run_dir, {}) as cluster:
            try:
                result = _scenario(cluster, manifests, run_dir, spec_filters, t_start, timeout_scale)
            except BaseException:
                cluster.keep_logs(ROOT / "build" / "test-cluster-logs")
                log(f"failed; pod logs kept in build/test-cluster-logs\n{cluster.log_tails(8)}")
                raise
    finally:
        reset_postgres(create=False)
        reset_redis()
        shutil.rmtree(run_dir, ignore_errors=True)
    return result


def _write_corpus(run_dir: Path) -> dict:
    from distillery import synthetic
    from distillery.filters import FilterCatalog

    spec = FilterCatalog.load(ROOT / "filters").resolve(FILTER)
    records = list(synthetic.generate(spec, PHASE_A + PHASE_B1 + PHASE_B2, seed=11))
    run_dir.mkdir(parents=True, exist_ok=True)
    parts = {"a": records[:PHASE_A], "b1": records[PHASE_A:PHASE_A + PHASE_B1],
             "b2": records[PHASE_A + PHASE_B1:]}
    for name, part in parts.items():
        (run_dir / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part))
    return {"spec": spec, "ids": {name: {r["id"] for r in part} for name, part in parts.items()}}


def _scenario(cluster: Cluster, m: Manifests, run_dir: Path, corpus: dict, t_start: float, scale: float) -> dict:
    from distillery.v1 import events_pb2

    timings: dict[str, float] = {}
    # 1. external servers, each on its own host
    kafka, s3, client = cluster.host("kafka"), cluster.host("s3"), cluster.host("client")
    from distillery.bus.broker import broker_binary

    cluster.start_process("kafka", kafka, [broker_binary(), "broker", "--listener-url", "tcp://0.0.0.0:9092",
                                           "--advertised-listener-url", f"tcp://{kafka.address}:9092",
                                           "--storage-engine", "memory://tansu/"], {"RUST_LOG": "warn"},
                          restart="Never")
    llm = cluster.host("llm")
    cluster.start_process("llm", llm, [str(VENV / "bin" / "python"), str(Path(__file__).parent / "llm_host.py"),
                                       str(LLM_PORT), LLM_KEY, str(LLM_PER_SECOND)], {"PYTHONPATH": str(ROOT)})
    cluster.start_process("s3", s3, [str(VENV / "bin" / "moto_server"), "-H", "0.0.0.0", "-p", str(S3_PORT)])
    planned = cluster.plan()
    cluster.allocate(planned)
    gateway = cluster.net.gateway
    rules = cluster.resolve_names({"kafka": [kafka.address], "s3": [s3.address], "postgres": [gateway],
                                   "redis": [gateway], "client": [client.address],
                                   "llm": [llm.address]})
    cluster.start_forwarder([f"{gateway}:5432=127.0.0.1:5432", f"{gateway}:6379=127.0.0.1:6379", *rules])
    bootstrap = f"{kafka.address}:9092"
    wait_for(lambda: _tcp(kafka.address, 9092) and _tcp(s3.address, S3_PORT) and _tcp(llm.address, LLM_PORT),
             60 * scale, "kafka, s3 and llm hosts",
             lambda: cluster.log_tails(5))
    _create_bucket(s3.address)
    log(f"network {cluster.net.subnet}: kafka {kafka.address}, s3 {s3.address}, {len(planned)} pods")

    # 2. the chart: hook Jobs first, then the workloads
    t0 = time.monotonic()
    jobs = [(n, t) for n, t in planned if t.owner_kind == "Job"]
    pre = sorted([j for j in jobs if "pre-install" in j[1].hook or not j[1].hook], key=lambda j: j[1].hook_weight)
    post = sorted([j for j in jobs if "post-install" in j[1].hook], key=lambda j: j[1].hook_weight)
    for name, _ in pre:
        cluster.start_pod(name)
        code = cluster.runner.wait_done(name, 180 * scale)
        if code != 0:
            raise ClusterError(f"Job {name} failed (exit {code}):\n{cluster.runner.pods[name].log_tail()}")
    workloads = [n for n, t in planned if t.owner_kind != "Job"]
    for name in workloads:
        cluster.start_pod(name)
    for name, _ in post:
        cluster.start_pod(name)
    cluster.wait_ready(workloads, 420 * scale, "chart workloads")
    timings["start_seconds"] = time.monotonic() - t0
    log(f"all {len(workloads)} pods ready in {timings['start_seconds']:.0f}s")
    topic_partitions = partitions(bootstrap)
    reader = Reader(bootstrap, TOPICS, {"articles.candidates": events_pb2.CandidateArticle.FromString}).start()
    try:
        return _loop(cluster, m, run_dir, corpus, t_start, scale, planned, client, s3, llm, reader,
                     topic_partitions, timings)
    finally:
        reader.stop()


def _loop(cluster, m, run_dir, corpus, t_start, scale, planned, client, s3, llm, reader, topic_partitions,
          timings):
    from distillery.v1 import common_pb2, oracle_pb2

    deploy = {t.owner: [n for n, tt in planned if tt.owner == t.owner] for _, t in planned
              if t.owner_kind == "Deployment"}
    by_component = {owner.rsplit("distillery-", 1)[-1]: pods for owner, pods in deploy.items()}

    def ingest(part: str) -> None:
        proc = subprocess.run([*client.exec_prefix(), str(VENV / "bin" / "distillery"), "ingest", "--source",
                               str(run_dir / f"{part}.jsonl"), "--bootstrap", m_bootstrap(m)],
                              env=_client_env(run_dir), check=False, capture_output=True, text=True, timeout=300 * scale)
        if proc.returncode != 0:
            raise ClusterError(f"distillery ingest {part} failed: {proc.stdout[-2000:]}{proc.stderr[-2000:]}")

    def decided(ids: set[str]) -> bool:
        return ids <= reader.keys("articles.candidates") | reader.keys("articles.rejected") | \
            reader.keys("articles.raw.dlq")

    # 3. phase A: ingest, label (a labelling job), train on Ray, register to S3, promote, load, score
    t_loop = time.monotonic()
    ingest("a")
    ids = corpus["ids"]
    wait_for(lambda: decided(ids["a"]), 180 * scale, "prefilter decisions for phase A")
    cands = reader.values("articles.candidates")
    spec = corpus["spec"]
    ref = common_pb2.FilterRef(name=spec.name, version=spec.version)
    requests = {k: oracle_pb2.LabelRequest(article=v.article, filter=ref, reason=oracle_pb2.LABEL_REASON_TRAINING)
                for k, v in cands if k in ids["a"]}
    _produce(reader.bootstrap, "oracle.requests", [(f"{k}:{spec.name}", r.SerializeToString()) for k, r in requests.items()])
    log(f"phase A: {len(requests)} candidates sent to the oracle")

    def labelled() -> set[str]:
        return {k.split(":")[0] for k in reader.keys("oracle.labels")}

    wait_for(lambda: set(requests) <= labelled(), 240 * scale, "oracle labels for phase A")
    gateway_cost = {p: scrape(cluster.pods[p].host.address, cluster.pods[p].ports["metrics"],
                              "distillery_oracle_cost_usd_total") for p in by_component["oracle-gateway"]}
    timings["labels_seconds"] = time.monotonic() - t_loop
    wait_for(lambda: reader.keys("models.events"), 420 * scale,
             "a model trained, registered on S3 and promoted (models.events)",
             lambda: cluster.runner.pods[by_component["trainer"][0]].log_tail(20))
    timings["first_model_seconds"] = time.monotonic() - t_loop
    registry_objects = _s3_objects(s3.address)
    log(f"model promoted after {timings['first_model_seconds']:.0f}s; {len(registry_objects)} objects on S3")

    def scored_all(ids_: set[str]) -> bool:
        return (reader.keys("articles.candidates") & ids_) <= reader.keys("articles.scored")

    wait_for(lambda: scored_all(ids["a"]), 300 * scale, "phase A candidates scored")
    timings["phase_a_seconds"] = time.monotonic() - t_loop

    # 4. phase B with kill -9 of one pod of every Deployment between its halves
    t_b = time.monotonic()
    ingest("b1")
    killed = {}
    for component, pods in sorted(by_component.items()):
        name = pods[0]
        killed[name] = cluster.runner.kill(name)
        log(f"kill -9 {name} (pid {killed[name]})")
    ingest("b2")
    all_ids = ids["a"] | ids["b1"] | ids["b2"]
    wait_for(lambda: all(cluster.runner.pods[n].restarts >= 1 for n in killed), 60 * scale,
             "killed pods restarted")
    cluster.wait_ready(list(killed), 300 * scale, "restarted pods")
    wait_for(lambda: decided(all_ids), 300 * scale, "prefilter decisions for every article")
    wait_for(lambda: scored_all(all_ids), 420 * scale, "every candidate scored",
             lambda: cluster.log_tails(10))

    def requests_answered() -> bool:
        return {k.split(":")[0] for k in reader.keys("oracle.requests")} <= \
            {k.split(":")[0] for k in reader.keys("oracle.labels")}

    wait_for(requests_answered, 240 * scale, "a label for every oracle request")
    timings["phase_b_seconds"] = time.monotonic() - t_b
    timings["loop_seconds"] = time.monotonic() - t_loop

    # 5. gRPC by Service name from a client host
    inference_pods = by_component["inference"]
    before = {p: _rpc_count(cluster, p) for p in inference_pods}
    # the Service a client of inference uses: the headless one when the chart has it (each pod's address,
    # so the client balances per call), else the ClusterIP one
    inference_labels = cluster.pods[inference_pods[0]].template.labels
    candidates = [s for s in m.services if s.selector and s.selector.get("app.kubernetes.io/component") ==
                  inference_labels.get("app.kubernetes.io/component")]
    svc = min(candidates, key=lambda s: not s.headless)
    port = next(p["port"] for p in svc.ports if p["name"] == "grpc")
    calls = 60
    out = subprocess.run([*client.exec_prefix(), str(VENV / "bin" / "python"), str(Path(__file__).parent /
                          "grpc_client.py"), f"{svc.name}:{port}", TOKEN, FILTER, str(calls)],
                         env=_client_env(run_dir), check=False, capture_output=True, text=True, timeout=120 * scale)
    if out.returncode != 0:
        raise ClusterError(f"gRPC client failed: {out.stdout[-1500:]}{out.stderr[-1500:]}")
    spread = {p: _rpc_count(cluster, p) - before[p] for p in inference_pods}

    # the trainer exports every stage's consumer lag as the broker measures it (what the HPAs scale on)
    trainer_pod = cluster.pods[by_component["trainer"][0]]

    def lag_groups() -> set[str]:
        text = _metrics_text(trainer_pod.host.address, trainer_pod.ports["metrics"])
        return set(re.findall(r'^distillery_trainer_consumer_group_lag_messages\{[^}]*group="([^"]+)"', text, re.MULTILINE))

    wait_for(lambda: {"distillery-prefilter", "distillery-oracle-gateway", "inference"} <= lag_groups(), 120 * scale,
             "consumer lag of every stage exported by the trainer", lambda: f"groups seen: {sorted(lag_groups())}")

    # 6. counts
    reader.settle()
    labels_pg, cost_pg = _postgres_labels()
    budget, redis_keys = _redis_budget()
    llm_stats, llm_bill = _llm(llm.address, "/_stats"), _llm(llm.address, "/_bill")
    import_gaps = cluster.import_gaps()
    result = {
        "articles": len(all_ids),
        "topic_partitions": {t: topic_partitions.get(t, 0) for t in TOPICS},
        "topic_keys": {t: len(reader.keys(t)) for t in TOPICS},
        "topic_records": {t: len(reader.values(t)) for t in TOPICS},
        "candidates_not_scored": len((reader.keys("articles.candidates") & all_ids)
                                     - reader.keys("articles.scored")),
        "articles_not_decided": len(all_ids - reader.keys("articles.candidates")
                                    - reader.keys("articles.rejected") - reader.keys("articles.raw.dlq")),
        "labels_in_postgres": labels_pg,
        "label_cost_in_postgres_usd": cost_pg,
        "redis_budget_usd": budget,
        "redis_limiter_keys": [k for k in redis_keys if ":win:" in k],
        "redis_budget_keys": [k for k in redis_keys if ":budget:" in k],
        "llm_requests": llm_stats.get("requests", 0),
        "llm_rate_limited_429": llm_stats.get("rate_limited", 0),
        "llm_billed_calls": llm_bill["calls"],
        "llm_billed_usd": (llm_bill["input_tokens"] * 0.15 + llm_bill["output_tokens"] * 0.6) / 1e6,
        "gateway_cost_before_kill_usd": gateway_cost,
        "registry_objects_on_s3": len(registry_objects),
        "lag_exported_for_groups": sorted(lag_groups()),
        "image_import_gaps": import_gaps,
        "killed": sorted(killed),
        "restarts": {n: p.restarts for n, p in cluster.runner.pods.items() if p.restarts},
        "grpc_service": svc.name,
        "grpc_calls": calls,
        "grpc_calls_per_replica": spread,
        "timings_seconds": {k: round(v, 1) for k, v in timings.items()},
        "total_seconds": round(time.monotonic() - t_start, 1),
        "pods": len(planned),
        "cpus": os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 2),
    }
    log(json.dumps(result, indent=1))
    return result


def m_bootstrap(m: Manifests) -> str:
    values = yaml.safe_load(VALUES.read_text())
    return values["kafka"]["bootstrapServers"]


def _client_env(run_dir: Path) -> dict[str, str]:
    home = run_dir / "client"
    home.mkdir(exist_ok=True)
    return {"PATH": f"{VENV / 'bin'}:/usr/bin:/bin", "HOME": str(home), "TMPDIR": str(home), "LANG": "C.UTF-8",
            "HF_HUB_OFFLINE": "1", "GRPC_DNS_RESOLVER": "native"}


def _tcp(host: str, port: int) -> bool:
    import socket

    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _s3_client(address: str):
    import boto3

    return boto3.client("s3", endpoint_url=f"http://{address}:{S3_PORT}", aws_access_key_id="cluster-test",
                        aws_secret_access_key="cluster-test", region_name="us-east-1")


def _create_bucket(address: str) -> None:
    _s3_client(address).create_bucket(Bucket=BUCKET)


def _s3_objects(address: str) -> list[str]:
    reply = _s3_client(address).list_objects_v2(Bucket=BUCKET)
    return [o["Key"] for o in reply.get("Contents", [])]


def _produce(bootstrap: str, topic: str, items: list[tuple[str, bytes]]) -> None:
    from confluent_kafka import Producer

    from distillery.bus import make_headers

    failures = []
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True})
    for key, value in items:
        producer.produce(topic, key=key.encode(), value=value, headers=make_headers(),
                         on_delivery=lambda err, _msg: failures.append(err) if err else None)
        producer.poll(0)
    if producer.flush(60) or failures:
        raise ClusterError(f"labelling job: {len(failures)} requests not acknowledged by the broker")


def _rpc_count(cluster: Cluster, pod: str) -> float:
    p = cluster.pods[pod]
    return scrape(p.host.address, p.ports["metrics"], "distillery_inference_rpc_requests_total")


def _llm(address: str, path: str) -> dict:
    request = urllib.request.Request(f"http://{address}:{LLM_PORT}{path}",
                                     headers={"Authorization": f"Bearer {LLM_KEY}"})
    return json.loads(urllib.request.urlopen(request, timeout=10).read())


def _postgres_labels() -> tuple[int, float]:
    import psycopg

    with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{DB}") as conn:
        n, cost = conn.execute("SELECT count(*), coalesce(sum(cost_usd), 0) FROM labels").fetchone()
    return int(n), float(cost)


def _redis_budget() -> tuple[float, list[str]]:
    import redis

    client = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    found = sorted(k.decode() for k in client.scan_iter(match=REDIS_PREFIX + "*", count=1000))
    value = float(client.get(f"{REDIS_PREFIX}budget:filter:{FILTER}") or 0.0)
    client.close()
    return value, found


def write_results(result: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "cluster_loop.json").write_text(json.dumps(result, indent=2) + "\n")
    t = result["timings_seconds"]
    lines = [
        "# Cluster in a box: the chart's loop (make test-cluster)",
        "",
        (f"{result['pods']} pods from the rendered chart plus tansu, moto S3, a strict fake LLM provider, PostgreSQL "
        f"and Redis, each on its own network namespace; {result['articles']:,} synthetic articles; {result['cpus']} CPUs, load "
        f"average {result['load_average_1m']} at the end (shared machine)."),
        "",
        "| step | seconds |", "|---|---:|",
        *[f"| {k.removesuffix('_seconds').replace('_', ' ')} | {v} |" for k, v in t.items()],
        f"| whole test (setup and teardown included) | {result['total_seconds']} |",
        "",
        "| topic | partitions | distinct keys | records |", "|---|---:|---:|---:|",
        *[f"| {topic} | {result['topic_partitions'][topic]} | {result['topic_keys'][topic]} | "
          f"{result['topic_records'][topic]} |" for topic in result["topic_keys"]],
        "",
        (f"Labels in PostgreSQL: {result['labels_in_postgres']} (cost {result['label_cost_in_postgres_usd']:.4f} USD; "
        f"shared Redis budget counter {result['redis_budget_usd']:.4f} USD; the provider billed "
        f"{result['llm_billed_usd']:.4f} USD for {result['llm_billed_calls']} calls and answered "
        f"{result['llm_rate_limited_429']} of {result['llm_requests']} requests with 429)."),
        f"Killed with SIGKILL mid-stream: {', '.join(result['killed'])}; restarts {result['restarts']}.",
        f"gRPC calls to Service {result['grpc_service']} per inference replica: {result['grpc_calls_per_replica']}.",
        (f"Candidates not scored: {result['candidates_not_scored']}; articles without a decision: "
        f"{result['articles_not_decided']}."),
        "",
    ]
    (RESULTS / "cluster_loop.md").write_text("\n".join(lines))


if __name__ == "__main__":
    import tempfile

    out = run(Path(tempfile.mkdtemp(prefix=f"dcl{os.getpid()}-", dir="/var/tmp")))
    write_results(out)
    print(re.sub(r"\s+", " ", json.dumps(out))[:2000])
