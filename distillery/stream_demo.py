"""The streaming demo: the real architecture on the embedded default, with one active-learning round.

Broker (embedded tansu) + the four services as local processes, wired by Kafka topics:

  1. A held-out set is labelled through the gateway with reason ``audit`` (audit labels never train, so
     they measure the students honestly) and kept out of the stream.
  2. Phase A: a first slice of the synthetic corpus is ingested to ``articles.raw``; the prefilter stage
     writes ``articles.candidates`` / ``articles.rejected``; this demo, acting as a labelling job, asks the
     oracle (``oracle.requests``) to label the candidates; the gateway stage answers on ``oracle.labels``
     and stores them; the trainer's retrain loop trains and promotes the first student once enough labels
     are in, publishing ``models.events``; the inference stage, which waited without a model, hot-reloads
     and scores the backlog into ``articles.scored``.
  3. Phase B: the rest of the corpus streams through; inference sends uncertain articles and an audit sample
     back to ``oracle.requests``; their labels trigger an automatic retrain that is promoted only if it beats
     the served model on the frozen test split (the active-learning round).
  4. Summary: per-topic counts, pass rate, labels by reason and cost, each training round, held-out MAE
     before and after the round, end-to-end articles/s and latency percentiles from record timestamps.
"""

from __future__ import annotations

import json
import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from distillery import messages, synthetic
from distillery.bus import EmbeddedBroker, ensure_topics, make_headers, make_producer
from distillery.bus import topics as t
from distillery.demo import wait_serving
from distillery.filters import FilterCatalog
from distillery.runtime.observer import TopicObserver
from distillery.runtime.supervisor import SERVICES, Stack
from distillery.v1 import (
    common_pb2,
    oracle_pb2,
    oracle_pb2_grpc,
    scoring_pb2,
    scoring_pb2_grpc,
    trainer_pb2,
    trainer_pb2_grpc,
)

Progress = Callable[[str, int, int], None]
WATCHED = [t.ARTICLES_RAW, t.ARTICLES_CANDIDATES, t.ARTICLES_REJECTED, t.ORACLE_REQUESTS, t.ORACLE_LABELS,
           t.ARTICLES_SCORED, t.MODELS_EVENTS, t.dlq(t.ARTICLES_RAW), t.dlq(t.ARTICLES_CANDIDATES),
           t.dlq(t.ORACLE_REQUESTS)]


class StreamDemoError(RuntimeError):
    """A step did not complete; the message names it and where the logs are."""


@dataclass
class Round:
    job_id: str
    version: str
    trigger: str
    promoted: bool
    test_mae: float | None
    compared_with: float | None


@dataclass
class StreamDemoResult:
    filter: str
    ingested: int
    topic_counts: dict[str, int]
    labels_by_reason: dict[str, int]
    cost_usd: float
    rounds: list[Round]
    holdout: int
    mae_before: dict[str, float]
    mae_after: dict[str, float]
    mean_predictor_mae: float
    articles_per_second: float
    latency_p50_ms: float
    latency_p99_ms: float
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)
    # phase B: articles the students scored, and how many of them went back to the oracle (uncertain + audit)
    student_scored: int = 0
    sent_to_oracle: int = 0

    @property
    def pass_rate(self) -> float:
        return self.topic_counts.get(t.ARTICLES_CANDIDATES, 0) / max(self.ingested, 1)

    @property
    def oracle_calls_saved(self) -> int:
        """Phase-B articles scored by a student alone: without students, each would have been an oracle call."""
        return max(0, self.student_scored - self.sent_to_oracle)


def _noop(step: str, done: int, total: int) -> None:
    return None


def run_stream_demo(
    filter_ref: str = "uplifting",
    count: int = 1200,
    seed: int = 7,
    student_kind: str = "probe",
    state_dir: Path = Path(".distillery/demo"),
    filters_dir: Path | None = None,
    progress: Progress = _noop,
    holdout_share: float = 0.15,
    phase_a_share: float = 0.4,
    timeout: float = 240.0,
) -> StreamDemoResult:
    from distillery.config import DEFAULT_FILTERS_DIR

    started = time.perf_counter()
    filters_dir = Path(filters_dir or DEFAULT_FILTERS_DIR)
    spec = FilterCatalog.load(filters_dir).resolve(filter_ref)
    if state_dir.exists():
        shutil.rmtree(state_dir)
    (state_dir / "logs").mkdir(parents=True)
    plan = _plan(spec, count, seed, holdout_share, phase_a_share)
    timings: dict[str, float] = {}

    with EmbeddedBroker(log_dir=state_dir / "logs") as broker:
        bootstrap = broker.bootstrap
        ensure_topics(bootstrap, WATCHED, partitions=2)
        config = _write_config(state_dir / "distillery.yaml", bootstrap, student_kind, len(plan.phase_a))
        args = ["--config", str(config), "--state-dir", str(state_dir), "--filters-dir", str(filters_dir),
                "--filter", spec.name]
        observer = TopicObserver(bootstrap, WATCHED, decoders={
            t.ORACLE_LABELS: oracle_pb2.OracleLabel.FromString,
            t.ARTICLES_CANDIDATES: lambda b: b,
        }).start()
        try:
            with Stack() as stack:
                t0 = time.perf_counter()
                for i, name in enumerate(SERVICES):
                    progress("start broker + services", i, len(SERVICES))
                    stack.start(name, args=args, log_dir=state_dir / "logs")
                progress("start broker + services", len(SERVICES), len(SERVICES))
                timings["start"] = time.perf_counter() - t0
                run = _run_phases(stack, bootstrap, observer, spec, plan, timeout, progress, timings)
        finally:
            observer.stop()
    return _result(observer, spec, plan, run, timings, started)


@dataclass
class _Plan:
    """The synthetic corpus cut into the held-out set and the two phases of the stream."""

    holdout: list
    stream: list
    phase_a: list
    phase_b: list


def _plan(spec, count: int, seed: int, holdout_share: float, phase_a_share: float) -> _Plan:
    records = list(synthetic.generate(spec, count, seed=seed))
    articles = [messages.from_record(r) for r in records]
    n_hold = max(int(len(articles) * holdout_share), 10)
    holdout, stream = articles[-n_hold:], articles[:-n_hold]
    n_a = int(len(stream) * phase_a_share)
    return _Plan(holdout, stream, stream[:n_a], stream[n_a:])


def _write_config(config: Path, bootstrap: str, student_kind: str, n_a: int) -> Path:
    # Thresholds scaled to the corpus: the first model once most of phase A is labelled, a retrain once
    # a tenth of that again has come back from the oracle (uncertain + audit).
    min_labels = max(int(n_a * 0.6), 40)
    config.write_text(yaml.safe_dump({
        "prefilter": {"kafka_bootstrap": bootstrap},
        "oracle_gateway": {"kafka_bootstrap": bootstrap},
        "trainer": {"kafka_bootstrap": bootstrap, "retrain_enabled": True, "retrain_min_labels": min_labels,
                    "retrain_new_labels": max(min_labels // 10, 15), "retrain_poll_seconds": 1.0,
                    "retrain_kind": student_kind},
        "inference": {"kafka_bootstrap": bootstrap, "audit_rate": 0.05, "uncertain_daily_budget": 100_000,
                      "reload_poll_seconds": 1.0},
    }))
    return config


@dataclass
class _Run:
    """What the phases produced that the summary needs."""

    holdout_labels: dict[str, dict[str, float]]
    mae_before: dict[str, float]
    mae_after: dict[str, float]
    rounds: list[Round]
    b_ids: set[str]


def _run_phases(stack, bootstrap: str, observer: TopicObserver, spec, plan: _Plan, timeout: float,
                progress: Progress, timings: dict[str, float]) -> _Run:
    """Label the held-out set, run phase A up to the first served model, phase B, and the retrain round."""
    ref = common_pb2.FilterRef(name=spec.name, version=spec.version)
    channels = {n: s.channel() for n, s in stack.services.items()}
    oracle = oracle_pb2_grpc.OracleServiceStub(channels["oracle_gateway"])
    trainer = trainer_pb2_grpc.TrainerServiceStub(channels["trainer"])
    scorer = scoring_pb2_grpc.ScoringServiceStub(channels["inference"])
    holdout = plan.holdout

    holdout_labels = _label_holdout(oracle, holdout, ref, progress)
    producer = make_producer(bootstrap, client_id="distillery-demo")

    t0 = time.perf_counter()
    a_ids = _phase_a(producer, observer, spec, ref, plan.phase_a, timeout, progress)
    timings["phase_a"] = time.perf_counter() - t0

    # The retrain loop trains and promotes the first model; inference reloads it.
    t0 = time.perf_counter()
    first = _wait_promoted(trainer, ref, set(), timeout * 2, "first model", progress)
    wait_serving(scorer, holdout[0], ref, first, timeout)
    timings["first_model"] = time.perf_counter() - t0
    mae_before = _holdout_mae(scorer, holdout, holdout_labels, ref, spec.dimension_names)

    t0 = time.perf_counter()
    b_ids = _phase_b(producer, observer, plan.phase_b, a_ids, timeout, progress)
    timings["phase_b"] = time.perf_counter() - t0
    requested = lambda: {k.split(":")[0] for k in observer.key_set(t.ORACLE_REQUESTS)}
    observer.wait_for(lambda: requested() <= _label_ids(observer) | set(), timeout,
                      "labels for uncertain/audit requests")

    # The active-learning round: wait for the automatic retrain the new labels trigger.
    t0 = time.perf_counter()
    second = _wait_round(trainer, first, timeout * 2, progress)
    if second != first:
        wait_serving(scorer, holdout[0], ref, second, timeout)
    timings["round"] = time.perf_counter() - t0
    mae_after = _holdout_mae(scorer, holdout, holdout_labels, ref, spec.dimension_names)
    rounds = _rounds(trainer)
    for channel in channels.values():
        channel.close()
    producer.close()
    return _Run(holdout_labels, mae_before, mae_after, rounds, b_ids)


def _phase_a(producer, observer: TopicObserver, spec, ref, phase_a: list, timeout: float,
             progress: Progress) -> set[str]:
    """Ingest, let the prefilter decide, label the candidates (a labelling job); the ids ingested."""
    _ingest(producer, phase_a)
    a_ids = {a.id for a in phase_a}
    _wait_decided(observer, a_ids, timeout, "prefilter decisions, phase A", progress)
    candidates_a = observer.key_set(t.ARTICLES_CANDIDATES) & a_ids
    by_id = {a.id: a for a in phase_a}
    sent = []
    for article_id in sorted(candidates_a):
        request = oracle_pb2.LabelRequest(article=by_id[article_id], filter=ref,
                                          reason=oracle_pb2.LABEL_REASON_TRAINING)
        sent.append(producer.send(t.ORACLE_REQUESTS, key=f"{article_id}:{spec.name}".encode(),
                                  value=request.SerializeToString(), headers=make_headers()))
    producer.flush(30)
    for future in sent:
        future.get(timeout=60)
    observer.wait_for(lambda: len(_label_ids(observer, "LABEL_REASON_TRAINING")) >= len(candidates_a),
                      timeout, "oracle labels, phase A",
                      lambda: progress("oracle labels, phase A",
                                       len(_label_ids(observer, "LABEL_REASON_TRAINING")),
                                       len(candidates_a)))
    progress("oracle labels, phase A", len(candidates_a), len(candidates_a))
    return a_ids


def _phase_b(producer, observer: TopicObserver, phase_b: list, a_ids: set[str], timeout: float,
             progress: Progress) -> set[str]:
    """The stream, with uncertain + audit articles going back to the oracle; the ids ingested."""
    _ingest(producer, phase_b)
    b_ids = {a.id for a in phase_b}
    _wait_decided(observer, b_ids, timeout, "prefilter decisions, phase B", progress)
    expected = (observer.key_set(t.ARTICLES_CANDIDATES) & (a_ids | b_ids))
    observer.wait_for(lambda: expected <= observer.key_set(t.ARTICLES_SCORED), timeout,
                      "scored articles",
                      lambda: progress("score stream", len(observer.key_set(t.ARTICLES_SCORED)),
                                       len(expected)))
    progress("score stream", len(expected), len(expected))
    return b_ids


def _result(observer: TopicObserver, spec, plan: _Plan, run: _Run, timings: dict[str, float],
            started: float) -> StreamDemoResult:
    """Counts, labels and cost, MAE before/after the round, phase-B throughput and latency from timestamps."""
    raw_ts = observer.timestamps(t.ARTICLES_RAW)
    scored_ts = observer.timestamps(t.ARTICLES_SCORED)
    b_ids = run.b_ids
    b_scored = [k for k in scored_ts if k in b_ids and k in raw_ts]
    latencies = sorted(scored_ts[k] - raw_ts[k] for k in b_scored) or [0]
    span = (max(scored_ts[k] for k in b_scored) - min(raw_ts[k] for k in b_ids if k in raw_ts)) / 1000 \
        if b_scored else 0.0
    labels = [v for _, v in observer.decoded(t.ORACLE_LABELS)]
    sent_b = {k.split(":")[0] for k in observer.key_set(t.ORACLE_REQUESTS)} & b_ids
    train_mean = np.mean([[d.score for d in v.dimensions] for v in labels
                          if v.reason == oracle_pb2.LABEL_REASON_TRAINING], axis=0)
    hold = np.array([[run.holdout_labels[i][d] for d in spec.dimension_names] for i in run.holdout_labels])
    return StreamDemoResult(
        filter=spec.ref,
        ingested=len(plan.stream),
        topic_counts={topic: len(observer.key_set(topic)) for topic in WATCHED},
        labels_by_reason=_labels_by_reason(labels),
        cost_usd=sum(v.usage.cost_usd for v in labels),
        rounds=run.rounds,
        holdout=len(run.holdout_labels),
        mae_before=run.mae_before,
        mae_after=run.mae_after,
        mean_predictor_mae=float(np.abs(hold - train_mean[None, :]).mean()),
        articles_per_second=len(b_scored) / span if span else 0.0,
        latency_p50_ms=float(np.percentile(latencies, 50)),
        latency_p99_ms=float(np.percentile(latencies, 99)),
        seconds=time.perf_counter() - started,
        timings=timings,
        student_scored=len(b_scored),
        sent_to_oracle=len(sent_b),
    )


def _labels_by_reason(labels: list) -> dict[str, int]:
    # A request for an article the oracle already labelled is answered from the label store (cached, free):
    # count paid labels by reason, and the cached answers apart.
    reasons = Counter(oracle_pb2.LabelReason.Name(v.reason).removeprefix("LABEL_REASON_").lower()
                      for v in labels if not v.cached)
    cached = sum(1 for v in labels if v.cached)
    if cached:
        reasons["answered from the label store"] = cached
    return dict(reasons)


# -- steps ---------------------------------------------------------------------------------------------
def _ingest(producer, items) -> None:
    futures = [producer.send(t.ARTICLES_RAW, key=a.id.encode(), value=a.SerializeToString(), headers=make_headers())
               for a in items]
    producer.flush(60)
    for future in futures:
        future.get(timeout=60)  # raise if an article was not acknowledged: never lose one silently


def _wait_decided(observer: TopicObserver, ids: set[str], timeout: float, what: str, progress: Progress) -> None:
    def decided() -> set[str]:
        return ids & (observer.key_set(t.ARTICLES_CANDIDATES) | observer.key_set(t.ARTICLES_REJECTED)
                      | observer.key_set(t.dlq(t.ARTICLES_RAW)))

    observer.wait_for(lambda: len(decided()) >= len(ids), timeout, what,
                      lambda: progress(what, len(decided()), len(ids)))
    progress(what, len(ids), len(ids))


def _label_ids(observer: TopicObserver, reason: str | None = None) -> set[str]:
    want = oracle_pb2.LabelReason.Value(reason) if reason else None
    return {v.article_id for _, v in observer.decoded(t.ORACLE_LABELS) if want is None or v.reason == want}


def _label_holdout(oracle, holdout, ref, progress: Progress) -> dict[str, dict[str, float]]:
    labels: dict[str, dict[str, float]] = {}
    requests = (oracle_pb2.LabelRequest(article=a, filter=ref, reason=oracle_pb2.LABEL_REASON_AUDIT)
                for a in holdout)
    for reply in oracle.LabelStream(requests, timeout=300):
        if not reply.error.code:
            labels[reply.label.article_id] = {d.name: d.score for d in reply.label.dimensions}
        progress("held-out audit labels", len(labels), len(holdout))
    if len(labels) < 10:
        raise StreamDemoError(f"only {len(labels)} held-out articles labelled; see the oracle gateway log")
    return labels


def _promoted_version(trainer, ref) -> str:
    reply = trainer.ListModels(trainer_pb2.ListModelsRequest(filter=ref), timeout=30)
    return next((m.version for m in reply.models if m.promoted), "")


def _wait_promoted(trainer, ref, exclude: set[str], timeout: float, what: str, progress: Progress) -> str:
    deadline = time.monotonic() + timeout
    while True:
        version = _promoted_version(trainer, ref)
        if version and version not in exclude:
            progress(f"train + promote ({what})", 1, 1)
            return version
        jobs = _jobs(trainer)
        running = [j for j in jobs if j.state == trainer_pb2.JOB_STATE_RUNNING]
        failed = [j for j in jobs if j.state == trainer_pb2.JOB_STATE_FAILED]
        if failed and not running and not version:
            raise StreamDemoError(f"training failed: {failed[-1].error}")
        msg = running[0].message if running else "waiting for labels"
        progress(f"train + promote ({what}: {msg})"[:70], int((running[0].progress if running else 0) * 100), 100)
        if time.monotonic() > deadline:
            raise StreamDemoError(f"no {what} promoted within {timeout:.0f} s")
        time.sleep(0.5)


def _jobs(trainer) -> list:
    return list(trainer.ListJobs(trainer_pb2.ListJobsRequest(), timeout=10).jobs)


def _wait_round(trainer, first: str, timeout: float, progress: Progress) -> str:
    """Wait for the automatic retrain after phase B; return the promoted version afterwards."""
    deadline = time.monotonic() + timeout
    ref_versions = lambda: trainer.ListModels(trainer_pb2.ListModelsRequest(), timeout=30).models
    while time.monotonic() < deadline:
        models = ref_versions()
        if len(models) >= 2:
            jobs = [j for j in _jobs(trainer) if j.state == trainer_pb2.JOB_STATE_RUNNING]
            if not jobs:
                progress("active-learning round (retrain)", 1, 1)
                return next((m.version for m in models if m.promoted), first)
        progress("active-learning round (retrain)", 0, 1)
        time.sleep(0.5)
    raise StreamDemoError(f"no automatic retrain finished within {timeout:.0f} s")


def _holdout_mae(scorer, holdout, labels, ref, dims) -> dict[str, float]:
    items = [a for a in holdout if a.id in labels]
    preds: dict[str, dict[str, float]] = {}
    for i in range(0, len(items), 64):
        reply = scorer.ScoreBatch(scoring_pb2.ScoreBatchRequest(articles=items[i:i + 64], filters=[ref]),
                                  timeout=120)
        for response in reply.responses:
            for result in response.results:
                preds[response.article_id] = {d.name: d.calibrated for d in result.dimensions}
    ids = [i for i in preds if i in labels]
    err = np.abs(np.array([[preds[i][d] - labels[i][d] for d in dims] for i in ids]))
    return {d: float(m) for d, m in zip(dims, err.mean(axis=0))}


def _rounds(trainer) -> list[Round]:
    """Every training job, oldest first, with the frozen-test comparison the trainer recorded."""
    rounds = []
    for job in sorted(_jobs(trainer), key=lambda j: j.created_at):
        if job.state != trainer_pb2.JOB_STATE_SUCCEEDED:
            continue
        m = dict(job.metrics)
        rounds.append(Round(job_id=job.job_id, version=job.model_version,
                            trigger=job.message.split(";")[0][:80],
                            promoted=bool(m.get("promoted", 0.0)),
                            test_mae=m.get("candidate_test_mae", m.get("test_mae")),
                            compared_with=m.get("promoted_test_mae")))
    return rounds


def result_json(result: StreamDemoResult) -> str:
    from dataclasses import asdict

    return json.dumps(asdict(result), indent=2, default=str)
