"""Labelling jobs: stream articles through the prefilter and the oracle engine, resumably, within a budget.

A job's state *is* the label store: an article already labelled by this oracle for this filter and
prompt is answered from the store without a call, so a job killed and restarted re-pays for nothing and
loses nothing (articles that failed are dead-lettered and retried by the next run).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from distillery.articles import InvalidArticleError, from_record, read_jsonl, validate
from distillery.filters.spec import FilterSpec
from distillery.rpc.errors import BudgetExhaustedError
from distillery.v1 import article_pb2, common_pb2, oracle_pb2
from services.oracle_gateway.engine import OracleEngine, OracleFailure


@dataclass
class JobProgress:
    """Counters a progress display reads (updated from worker threads)."""

    total: int = 0
    done: int = 0
    labelled: int = 0
    cached: int = 0
    failed: int = 0
    invalid: int = 0
    prefiltered: int = 0
    cost_usd: float = 0.0
    started: float = field(default_factory=time.monotonic)
    stopped_reason: str = ""
    errors: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.done / elapsed if elapsed > 0 else 0.0


def job_id_for(spec: FilterSpec, source: str, oracle: str) -> str:
    """A stable job id, so that a restarted job keeps its budget spend."""
    return "job-" + hashlib.sha256(f"{spec.ref}\x00{source}\x00{oracle}".encode()).hexdigest()[:12]


def iter_source(source: str, spec: FilterSpec, count: int, seed: int = 0,
                bootstrap: str = "") -> Iterator[article_pb2.Article]:
    """Articles from a JSONL file, ``synthetic`` (the synthetic corpus for ``spec``) or a Kafka topic; at most
    ``count``. ``source`` is a topic when it is ``kafka:<topic>``, or when it is no file and ``bootstrap`` is set."""
    if source in ("", "synthetic"):
        from distillery import synthetic

        for record in synthetic.generate(spec, count, seed=seed):
            yield from_record(record)
        return
    path = Path(source)
    if source.startswith("kafka:") or (bootstrap and not path.is_file()):
        yield from iter_topic(source.removeprefix("kafka:"), bootstrap, count)
        return
    if not path.is_file():
        raise FileNotFoundError(f"article source {source!r} is neither a JSONL file nor 'synthetic' (to read a "
                                "Kafka topic, give --bootstrap or set DISTILLERY_KAFKA_BOOTSTRAP)")
    for n, record in enumerate(read_jsonl(path)):
        if count and n >= count:
            return
        yield from_record(record)


def iter_topic(topic: str, bootstrap: str, count: int, timeout: float = 30.0,
               undecodable: list[str] | None = None) -> Iterator[article_pb2.Article]:
    """Articles (``Article`` protobuf values, e.g. ``articles.raw``) from the beginning of a Kafka topic.

    Reads every partition until it is caught up (past the end offsets seen at the start, and a poll
    returns nothing: a topic never ends, this reads what it holds now), at most ``count`` articles (0: all). No consumer group and no commits: a rerun
    reads the same articles, and the label store answers the ones already labelled for free. Messages
    that do not decode are skipped and listed in ``undecodable`` (``partition:offset``).
    """
    if not bootstrap:
        raise ValueError(f"reading topic {topic!r} needs a Kafka bootstrap address (--bootstrap or "
                         "DISTILLERY_KAFKA_BOOTSTRAP)")
    from google.protobuf.message import DecodeError
    from kafka import TopicPartition
    from kafka.errors import KafkaError

    from distillery.bus.clients import make_consumer

    try:
        consumer = make_consumer(bootstrap, group_id=None, client_id="distillery-score",
                                 request_timeout_ms=int(timeout * 1000) + 1000)
    except KafkaError as exc:
        raise ConnectionError(f"Kafka at {bootstrap} is not reachable: {exc}") from None
    try:
        deadline = time.monotonic() + timeout
        if topic not in consumer.topics():  # fetches fresh metadata
            raise FileNotFoundError(f"Kafka topic {topic!r} does not exist on {bootstrap}")
        partitions = consumer.partitions_for_topic(topic)
        while not partitions:
            if time.monotonic() > deadline:
                raise ConnectionError(f"no partition metadata for topic {topic!r} from {bootstrap}")
            time.sleep(0.2)
            partitions = consumer.partitions_for_topic(topic)
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        limit = consumer.end_offsets(tps)
        n = 0
        idle_since = time.monotonic()
        while True:
            batch = consumer.poll(timeout_ms=500, max_records=500)
            if not batch:
                # Caught up: nothing more came and every partition is past the end seen at the start (some
                # brokers report a low end offset, so reading goes on until the topic is quiet).
                if all(consumer.position(tp) >= limit.get(tp, 0) for tp in tps):
                    return
                if time.monotonic() - idle_since > timeout:
                    raise ConnectionError(f"no messages from topic {topic!r} on {bootstrap} for {timeout:g} s "
                                          "before its end offsets were reached")
                continue
            idle_since = time.monotonic()
            for tp, records in batch.items():
                for record in records:
                    article = article_pb2.Article()
                    try:
                        article.ParseFromString(record.value or b"")
                    except DecodeError:
                        if undecodable is not None:
                            undecodable.append(f"{tp.partition}:{record.offset}")
                        continue
                    yield article
                    n += 1
                    if count and n >= count:
                        return
    finally:
        consumer.close()


def prefilter_for(spec: FilterSpec) -> Callable[[article_pb2.Article], bool]:
    """The filter's own prefilter rules (the prefilter service's engine, in-process)."""
    from services.prefilter.engine import PrefilterEngine

    engine = PrefilterEngine([spec])

    def passes(a: article_pb2.Article) -> bool:
        return engine.check(a.title, a.text, a.url, a.source_type, a.language).verdicts[0].passed

    return passes


def dry_run(engine: OracleEngine, spec: FilterSpec, articles: Iterable[article_pb2.Article],
            oracle: str) -> dict[str, float]:
    """Token and cost estimate for the articles not yet labelled (no call is made)."""
    n = skipped = tokens_in = tokens_out = 0
    usd = 0.0
    from distillery.filters.prompt import prompt_hash

    oracle_name = engine.resolve_oracle(oracle, spec).name
    done = engine.store.labelled_ids(spec.name, spec.version, oracle_name, prompt_hash(spec))
    for article in articles:
        if article.id in done:
            skipped += 1
            continue
        t_in, t_out, cost = engine.estimate(spec, article, oracle)
        n, tokens_in, tokens_out, usd = n + 1, tokens_in + t_in, tokens_out + t_out, usd + cost
    return {"articles": n, "already_labelled": skipped, "input_tokens": tokens_in, "output_tokens": tokens_out,
            "cost_usd": usd}


def run_job(engine: OracleEngine, spec: FilterSpec, articles: Iterable[article_pb2.Article], oracle: str,
            job_id: str, workers: int = 8, budget_usd: float = 0.0,
            passes: Callable[[article_pb2.Article], bool] | None = None,
            progress: JobProgress | None = None,
            reason: int = oracle_pb2.LABEL_REASON_TRAINING) -> JobProgress:
    """Label every article (those that pass ``passes``); stop cleanly when the budget is reached."""
    progress = progress or JobProgress()
    if budget_usd > 0:
        engine.budgets.set_job_budget(job_id, budget_usd)
    stop = threading.Event()
    lock = threading.Lock()

    def one(article: article_pb2.Article) -> None:
        request = oracle_pb2.LabelRequest(article=article, filter=common_pb2.FilterRef(
            name=spec.name, version=spec.version), oracle=oracle, job_id=job_id, reason=reason)
        try:
            label = engine.label(request)
        except BudgetExhaustedError as exc:
            with lock:
                progress.stopped_reason = progress.stopped_reason or str(exc)
            stop.set()
            return
        except OracleFailure as exc:
            with lock:
                progress.failed += 1
                progress.done += 1
                progress.errors.append(str(exc))
            return
        with lock:
            progress.done += 1
            if label.cached:
                progress.cached += 1
            else:
                progress.labelled += 1
                progress.cost_usd += label.usage.cost_usd

    pending: set[Future] = set()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="score") as pool:
        for article in articles:
            if stop.is_set():
                break
            try:
                validate(article)
            except InvalidArticleError as exc:
                with lock:
                    progress.invalid += 1
                    progress.errors.append(str(exc))
                continue
            if passes is not None and not passes(article):
                with lock:
                    progress.prefiltered += 1
                continue
            while len(pending) >= workers * 2:
                _, pending = wait(pending, return_when=FIRST_COMPLETED)
            pending.add(pool.submit(one, article))
        wait(pending)
    return progress
