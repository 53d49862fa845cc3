"""Labelling jobs: stream articles through the prefilter and the oracle engine, resumably, within a budget.

A job's state *is* the label store: an article already labelled by this oracle for this filter and
prompt is answered from the store without a call, so a job killed and restarted re-pays for nothing and
loses nothing (articles that failed are dead-lettered and retried by the next run).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from distillery_services.oracle_gateway.engine import OracleAuthError, OracleEngine, OracleFailure

from distillery import identifiers
from distillery.articles import Article, InvalidArticleError, validate
from distillery.errors import BudgetExhaustedError
from distillery.filters.spec import FilterSpec
from distillery.labels import FilterRef, LabelReason, LabelRequest


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
    stop_kind: str = ""  # "budget" or "auth" when the job stopped before the end
    errors: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.done / elapsed if elapsed > 0 else 0.0


def job_id_for(spec: FilterSpec, source: str, oracle: str) -> str:
    """A stable job id, so that a restarted job keeps its budget spend."""
    return "job-" + hashlib.sha256(f"{spec.ref}\x00{source}\x00{oracle}".encode()).hexdigest()[:12]


def dry_run(engine: OracleEngine, spec: FilterSpec, articles: Iterable[Article],
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


def run_job(engine: OracleEngine, spec: FilterSpec, articles: Iterable[Article], oracle: str,
            job_id: str, workers: int = 8, budget_usd: float = 0.0,
            passes: Callable[[Article], bool] | None = None,
            progress: JobProgress | None = None,
            reason: LabelReason = LabelReason.TRAINING) -> JobProgress:
    """Label every article (those that pass ``passes``); stop cleanly when the budget is reached.

    ``passes`` is the caller's prefilter (the CLI builds it from the prefilter's engine): this service never
    imports another one.
    """
    identifiers.job_id(job_id, "job_id")  # before any article: a bad --job-id is one clear error, not N
    progress = progress or JobProgress()
    if budget_usd > 0:
        engine.budgets.set_job_budget(job_id, budget_usd)
    engine.latch_auth_failures = True  # a rejected key stops the job: no request is sent after that answer
    run = _JobRun(engine, progress, lambda article: LabelRequest(
        article=article, filter=FilterRef(name=spec.name, version=spec.version), oracle=oracle, job_id=job_id,
        reason=reason))
    pending: set[Future] = set()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="score") as pool:
        for article in articles:
            if run.stop.is_set():
                break
            if not run.admit(article, passes):
                continue
            while len(pending) >= workers * 2:
                _, pending = wait(pending, return_when=FIRST_COMPLETED)
            pending.add(pool.submit(run.label, article))
        wait(pending)
    return progress


class _JobRun:
    """The shared state of one job's worker threads: its progress counters and the stop that a budget or a
    rejected key sets."""

    def __init__(self, engine: OracleEngine, progress: JobProgress, request_for: Callable[[Article], LabelRequest]):
        self.engine = engine
        self.progress = progress
        self.request_for = request_for
        self.stop = threading.Event()
        self.lock = threading.Lock()

    def admit(self, article: Article, passes: Callable[[Article], bool] | None) -> bool:
        """Whether to label the article: invalid ones and those the prefilter rejects are counted, not sent."""
        try:
            validate(article)
        except InvalidArticleError as exc:
            with self.lock:
                self.progress.invalid += 1
                self.progress.errors.append(str(exc))
            return False
        if passes is not None and not passes(article):
            with self.lock:
                self.progress.prefiltered += 1
            return False
        return True

    def halt(self, kind: str, exc: Exception) -> None:
        with self.lock:
            if not self.progress.stopped_reason:
                self.progress.stopped_reason, self.progress.stop_kind = str(exc), kind
        self.stop.set()

    def label(self, article: Article) -> None:
        if self.stop.is_set():  # queued before the stop: neither sent nor counted (a rerun labels it)
            return
        progress = self.progress
        try:
            label = self.engine.label(self.request_for(article))
        except BudgetExhaustedError as exc:
            self.halt("budget", exc)
            return
        except OracleAuthError as exc:  # retrying cannot fix a key: stop the whole job at the first one
            self.halt("auth", exc)
            return
        except OracleFailure as exc:
            with self.lock:
                progress.failed += 1
                progress.done += 1
                progress.cost_usd += exc.cost_usd
                progress.errors.append(str(exc))
            return
        with self.lock:
            progress.done += 1
            if label.cached:
                progress.cached += 1
            else:
                progress.labelled += 1
                progress.cost_usd += label.usage.cost_usd
