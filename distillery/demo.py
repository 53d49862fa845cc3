"""The walking-skeleton demo: four real service processes, one synthetic corpus, one path through them.

prefilter (Check) -> oracle gateway (LabelStream, synthetic provider) -> trainer (StartJob/WatchJob, probe
student) -> Promote -> inference (ScoreBatch on held-out articles) -> audit labels for those articles ->
student-vs-oracle MAE. Everything crosses a real gRPC socket between real processes.
"""

from __future__ import annotations

import shutil
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np

from distillery import articles as articles_mod
from distillery import messages, synthetic
from distillery.filters import FilterCatalog, FilterSpec
from distillery.runtime.supervisor import SERVICES, Stack
from distillery.v1 import (
    article_pb2,
    common_pb2,
    oracle_pb2,
    oracle_pb2_grpc,
    prefilter_pb2,
    prefilter_pb2_grpc,
    scoring_pb2,
    scoring_pb2_grpc,
    trainer_pb2,
    trainer_pb2_grpc,
)

Progress = Callable[[str, int, int], None]  # (step, done, total)


@dataclass
class DemoResult:
    filter: str
    articles: int
    held_out: int
    passed: int
    labels: int
    cost_usd: float
    train_seconds: float
    model_version: str
    student_kind: str
    dimension_mae: dict[str, float]
    mean_predictor_mae: dict[str, float]
    scored: int
    scoring_articles_per_second: float
    scoring_p50_ms: float
    scoring_p99_ms: float
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def student_mae(self) -> float:
        return float(np.mean(list(self.dimension_mae.values())))

    @property
    def baseline_mae(self) -> float:
        return float(np.mean(list(self.mean_predictor_mae.values())))


def _batched(items: Sequence, size: int) -> Iterator[Sequence]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _noop(step: str, done: int, total: int) -> None:
    return None


class DemoError(RuntimeError):
    """A step of the demo failed; the message names the step and the service log to read."""


def run_demo(
    filter_ref: str = "uplifting",
    count: int = 1000,
    held_out_share: float = 0.2,
    student_kind: str = "probe",
    seed: int = 7,
    filters_dir: Path | None = None,
    state_dir: Path = Path(".distillery/demo"),
    progress: Progress = _noop,
    train_params: dict[str, str] | None = None,
) -> DemoResult:
    from distillery.config import DEFAULT_FILTERS_DIR

    filters_dir = Path(filters_dir or DEFAULT_FILTERS_DIR)
    spec = FilterCatalog.load(filters_dir).resolve(filter_ref)
    if state_dir.exists():
        shutil.rmtree(state_dir)
    state_dir.mkdir(parents=True)
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    corpus, train_pool, held_out = _corpus(spec, count, seed, held_out_share, state_dir)
    timings["corpus"] = time.perf_counter() - t0

    args = ["--state-dir", str(state_dir), "--filters-dir", str(filters_dir), "--filter", spec.name]
    ref = common_pb2.FilterRef(name=spec.name, version=spec.version)
    with Stack() as stack:
        t0 = time.perf_counter()
        for i, name in enumerate(SERVICES):
            progress("start services", i, len(SERVICES))
            stack.start(name, args=args, log_dir=state_dir / "logs")
        progress("start services", len(SERVICES), len(SERVICES))
        timings["start"] = time.perf_counter() - t0
        channels = {name: svc.channel() for name, svc in stack.services.items()}
        try:
            run = _through_services(channels, ref, corpus, train_pool, held_out, student_kind, seed,
                                    train_params or {}, state_dir, progress, timings, t0)
        finally:
            for channel in channels.values():
                channel.close()
    return _result(spec, student_kind, corpus, held_out, run, timings)


def _corpus(spec: FilterSpec, count: int, seed: int, held_out_share: float, state_dir: Path):
    """The synthetic corpus (also written to corpus.jsonl), its training pool and its held-out tail."""
    records = list(synthetic.generate(spec, count, seed=seed))
    corpus = [messages.from_record(r) for r in records]
    articles_mod.write_jsonl(state_dir / "corpus.jsonl", records)
    n_held = max(int(len(corpus) * held_out_share), 1)
    return corpus, corpus[:-n_held], corpus[-n_held:]


@dataclass
class _Run:
    """What one path through the four services produced."""

    passed: set[str]
    labels: dict[str, dict[str, float]]
    audit: dict[str, dict[str, float]]
    cost: float
    model_version: str
    train_seconds: float
    scored_pool: list[article_pb2.Article]
    predictions: dict[str, dict[str, float]]
    latencies: list[float]
    score_seconds: float


def _through_services(channels: dict, ref, corpus, train_pool, held_out, student_kind: str, seed: int,
                      train_params: dict[str, str], state_dir: Path, progress: Progress,
                      timings: dict[str, float], started: float) -> _Run:
    """Prefilter everything, label the training pool, train, promote, score the held-out articles and label
    them for the audit; ``timings`` gets each step's seconds."""
    passed = _prefilter(channels["prefilter"], corpus, ref, progress)
    timings["prefilter"] = time.perf_counter() - started - timings["start"]

    t1 = time.perf_counter()
    to_label = [a for a in train_pool if a.id in passed]
    labels, cost = _label(channels["oracle_gateway"], to_label, ref, oracle_pb2.LABEL_REASON_TRAINING,
                          "label (oracle)", progress)
    timings["label"] = time.perf_counter() - t1
    if len(labels) < 20:
        raise DemoError(f"only {len(labels)} labels: too few to train (see {state_dir / 'logs'})")

    t1 = time.perf_counter()
    job = _train(channels["trainer"], ref, student_kind, seed, train_params, progress)
    train_seconds = time.perf_counter() - t1
    timings["train"] = train_seconds
    trainer_pb2_grpc.TrainerServiceStub(channels["trainer"]).Promote(
        trainer_pb2.PromoteRequest(filter=ref, version=job.model_version), timeout=30
    )

    t1 = time.perf_counter()
    scored_pool = [a for a in held_out if a.id in passed]
    predictions, latencies, score_seconds = _score(channels["inference"], scored_pool, ref,
                                                  job.model_version, progress)
    timings["score"] = time.perf_counter() - t1

    audit, audit_cost = _label(channels["oracle_gateway"], scored_pool, ref, oracle_pb2.LABEL_REASON_AUDIT,
                               "audit labels", progress)
    return _Run(passed, labels, audit, cost + audit_cost, job.model_version, train_seconds, scored_pool,
                predictions, latencies, score_seconds)


def _result(spec: FilterSpec, student_kind: str, corpus: list, held_out: list, run: _Run,
            timings: dict[str, float]) -> DemoResult:
    """Student and mean-predictor MAE against the audit labels, scoring throughput and latency."""
    dims = spec.dimension_names
    train_matrix = np.array([[run.labels[a][d] for d in dims] for a in run.labels])
    ids = [a.id for a in run.scored_pool if a.id in run.audit and a.id in run.predictions]
    oracle = np.array([[run.audit[i][d] for d in dims] for i in ids])
    student = np.array([[run.predictions[i][d] for d in dims] for i in ids])
    mae = np.abs(student - oracle).mean(axis=0)
    baseline = np.abs(train_matrix.mean(axis=0)[None, :] - oracle).mean(axis=0)
    lat_ms = sorted(x * 1000 for x in run.latencies) or [0.0]
    return DemoResult(
        filter=spec.ref,
        articles=len(corpus),
        held_out=len(held_out),
        passed=len(run.passed),
        labels=len(run.labels) + len(run.audit),
        cost_usd=run.cost,
        train_seconds=run.train_seconds,
        model_version=run.model_version,
        student_kind=student_kind,
        dimension_mae={d: float(m) for d, m in zip(dims, mae)},
        mean_predictor_mae={d: float(m) for d, m in zip(dims, baseline)},
        scored=len(run.predictions),
        scoring_articles_per_second=len(run.predictions) / run.score_seconds if run.score_seconds else 0.0,
        scoring_p50_ms=statistics.median(lat_ms),
        scoring_p99_ms=lat_ms[min(int(len(lat_ms) * 0.99), len(lat_ms) - 1)],
        timings=timings,
    )


def _prefilter(channel: grpc.Channel, corpus: list[article_pb2.Article], ref, progress: Progress) -> set[str]:
    stub = prefilter_pb2_grpc.PrefilterServiceStub(channel)
    passed: set[str] = set()
    done = 0
    for batch in _batched(corpus, 200):
        reply = stub.Check(prefilter_pb2.CheckRequest(articles=batch, filters=[ref]), timeout=60)
        passed.update(d.article_id for d in reply.decisions if d.passed)
        done += len(batch)
        progress("prefilter", done, len(corpus))
    return passed


def _label(channel, items: list[article_pb2.Article], ref, reason, step: str, progress: Progress):
    """Label through LabelStream; returns ({article_id: {dim: score}}, cost)."""
    stub = oracle_pb2_grpc.OracleServiceStub(channel)
    requests = (oracle_pb2.LabelRequest(article=a, filter=ref, reason=reason) for a in items)
    labels: dict[str, dict[str, float]] = {}
    cost, errors = 0.0, []
    for done, reply in enumerate(stub.LabelStream(requests, timeout=600), start=1):
        if reply.HasField("error") and reply.error.code:
            errors.append(f"{reply.article_id}: {reply.error.code} {reply.error.message}")
        else:
            labels[reply.label.article_id] = {d.name: d.score for d in reply.label.dimensions}
            cost += reply.label.usage.cost_usd
        progress(step, done, len(items))
    if errors and not labels:
        raise DemoError(f"the oracle labelled nothing; first error: {errors[0]}")
    return labels, cost


def _train(channel, ref, student_kind: str, seed: int, params: dict[str, str], progress: Progress):
    stub = trainer_pb2_grpc.TrainerServiceStub(channel)
    kind = trainer_pb2.StudentKind.Value(f"STUDENT_KIND_{student_kind.upper()}")
    job = stub.StartJob(trainer_pb2.StartJobRequest(filter=ref, student_kind=kind, seed=seed, params=params),
                        timeout=60)
    for update in stub.WatchJob(trainer_pb2.GetJobRequest(job_id=job.job_id), timeout=900):
        progress(f"train ({update.message or 'running'})"[:60], int(update.progress * 100), 100)
        job = update
    if job.state != trainer_pb2.JOB_STATE_SUCCEEDED:
        raise DemoError(f"training job {job.job_id} ended {trainer_pb2.JobState.Name(job.state)}: {job.error}")
    progress("train", 100, 100)
    return job


def wait_serving(scorer, article, ref, version: str, timeout: float) -> None:
    """Block until the inference service answers with model ``version`` (it hot-reloads promotions)."""
    deadline = time.monotonic() + timeout
    request = scoring_pb2.ScoreRequest(article=article, filters=[ref])
    while time.monotonic() < deadline:
        try:
            reply = scorer.Score(request, timeout=30)
            if reply.results and reply.results[0].model_version == version:
                return
        except grpc.RpcError as exc:
            if exc.code() not in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.UNAVAILABLE):
                raise
        time.sleep(0.3)
    raise DemoError(f"inference did not serve model {version} within {timeout:.0f} s")


def _score(channel, items, ref, version: str, progress: Progress):
    stub = scoring_pb2_grpc.ScoringServiceStub(channel)
    # The inference service hot-reloads promoted models; wait until it serves the new version.
    wait_serving(stub, items[0], ref, version, timeout=120)
    predictions: dict[str, dict[str, float]] = {}
    latencies: list[float] = []
    start = time.perf_counter()
    for batch in _batched(items, 32):
        t = time.perf_counter()
        reply = stub.ScoreBatch(scoring_pb2.ScoreBatchRequest(articles=batch, filters=[ref]), timeout=120)
        elapsed = time.perf_counter() - t
        latencies.extend([elapsed / len(batch)] * len(batch))
        for response in reply.responses:
            for result in response.results:
                predictions[response.article_id] = {d.name: d.calibrated for d in result.dimensions}
        progress("score held-out", len(predictions), len(items))
    batch_seconds = time.perf_counter() - start
    # Single-article latency as a client sees it (unary Score), on a sample.
    latencies = []
    for article in items[: min(len(items), 50)]:
        t = time.perf_counter()
        stub.Score(scoring_pb2.ScoreRequest(article=article, filters=[ref]), timeout=30)
        latencies.append(time.perf_counter() - t)
    return predictions, latencies, batch_seconds


def summary_rows(result: DemoResult, spec: FilterSpec | None = None) -> list[tuple[str, str]]:
    rows = [
        ("filter", result.filter),
        ("articles (synthetic)", f"{result.articles} ({result.held_out} held out)"),
        ("prefilter pass rate", f"{result.passed / result.articles:.1%} ({result.passed} passed)"),
        ("oracle labels", f"{result.labels} (cost ${result.cost_usd:.4f})"),
        ("student", f"{result.student_kind} {result.model_version}"),
        ("training time", f"{result.train_seconds:.1f} s"),
        ("held-out MAE, student", f"{result.student_mae:.3f}"),
        ("held-out MAE, mean predictor", f"{result.baseline_mae:.3f}"),
        ("scoring throughput (ScoreBatch)", f"{result.scoring_articles_per_second:.1f} articles/s"),
        ("Score latency p50 / p99", f"{result.scoring_p50_ms:.1f} / {result.scoring_p99_ms:.1f} ms"),
    ]
    return rows
