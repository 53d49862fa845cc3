"""The labelling engine: prompt -> (store | cache | budget | pacing | provider with retries) -> label.

It knows nothing of gRPC or Kafka: the servicer, the Kafka stage and the CLI all call
:meth:`OracleEngine.label`. Order of checks for one request:

1. validate the article, resolve the filter and the oracle;
2. the label store already holds a label by this oracle for (article, filter, version, prompt hash):
   return it with ``cached=True`` (nothing paid);
3. the response cache holds an answer for (provider, model, prompt hash, content hash): parse it,
   store a label with zero cost, ``cached=True``;
4. up to ``max_attempts`` HTTP attempts, each: reserve its estimated cost against the budgets
   (BudgetExhaustedError when it would exceed one), a concurrency slot, admission by the rate limiter
   (every request and token window of the provider, shared through Redis), one call with a timeout
   derived from observed latency; every answered call is recorded in the cost ledger and settles its
   reservation at once. A 429 waits its Retry-After (and holds the limiter only when the provider's
   headers say the quota is spent), 5xx and timeouts back off exponentially with full jitter; an
   auth failure (401/403, invalid key) stops this oracle (:class:`OracleAuthError`, no more calls);
   bad requests are not retried;
5. parse/repair/validate the answer; an invalid answer is re-asked with a corrective message up to
   ``max_repair_attempts`` times; after that the article is dead-lettered (never silently lost);
6. store label + raw response, fill the cache.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from distillery_services.oracle_gateway import metrics
from distillery_services.oracle_gateway.budget import Budgets
from distillery_services.oracle_gateway.cache import CachedResponse, ResponseCache, cache_key, open_cache
from distillery_services.oracle_gateway.config import OracleConfig, OracleGatewaySettings, Price
from distillery_services.oracle_gateway.parsing import (
    ParsedLabel,
    ResponseInvalidError,
    corrective_message,
    parse_response,
)
from distillery_services.oracle_gateway.providers import (
    AuthError,
    BadRequestError,
    Provider,
    ProviderError,
    ProviderRequest,
    ProviderResponse,
    RateLimitedError,
    build_provider,
)
from distillery_services.oracle_gateway.ratelimit import RateLimiter, make_limiter
from distillery_services.oracle_gateway.timeouts import LatencyTracker

from distillery.articles import Article, content_hash, validate
from distillery.errors import BudgetExhaustedError, NotFoundError
from distillery.filters import FilterCatalog
from distillery.filters.prompt import (
    ARTICLE,
    format_article,
    output_json_schema,
    prompt_hash,
    render_template,
)
from distillery.filters.spec import FilterSpec
from distillery.identifiers import check_label_request, oracle_name
from distillery.labels import DimensionLabel, FilterRef, LabelReason, LabelRequest, OracleLabel, Usage
from distillery.logs import log
from distillery.store import BilledCall, LabelStore
from distillery.store.labels import CALL_INVALID, CALL_LABELLED, CALL_UNUSED, utc_now

logger = logging.getLogger(__name__)


class OracleFailure(RuntimeError):
    """The oracle could not label an article after every retry; ``code`` is a gRPC status name."""

    def __init__(self, code: str, message: str, cost_usd: float = 0.0):
        super().__init__(message)
        self.code = code
        self.cost_usd = cost_usd


class OracleAuthError(OracleFailure):
    """The provider rejected the key: retrying cannot help, so the oracle makes no further call."""

    def __init__(self, message: str):
        super().__init__("PERMISSION_DENIED", message)


class UnknownOracleError(NotFoundError):
    """A request names an oracle that is not configured."""


@dataclass
class _Oracle:
    name: str
    cfg: OracleConfig
    provider: Provider
    semaphore: threading.BoundedSemaphore
    limiter: RateLimiter
    latency: LatencyTracker
    secrets: list[str] = field(default_factory=list)
    auth_failure: str = ""  # when latched: set at the first rejected key, every later request fails without a call


@dataclass
class _Attempts:
    """What the calls for one article have used so far (HTTP attempts, repairs, tokens, money, time)."""

    request: ProviderRequest
    usage: tuple[int, int, int] = (0, 0, 0)
    cost: float = 0.0
    latency: float = 0.0
    waited: float = 0.0
    http_attempts: int = 0
    repairs: int = 0
    timeouts: int = 0
    last_raw: str = ""
    last_error: str = ""


@dataclass
class _Answer:
    """One HTTP attempt: a provider error, or a billed response that parsed (``parsed``) or not (``invalid``)."""

    response: ProviderResponse | None = None
    error: ProviderError | None = None
    parsed: ParsedLabel | None = None
    invalid: ResponseInvalidError | None = None
    usage: tuple[int, int, int] = (0, 0, 0)
    billed: float = 0.0


def _redis_client(url: str):
    import redis

    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)


class OracleEngine:
    """Labels articles through configured oracles; thread-safe, shared by all entry points."""

    def __init__(self, settings: OracleGatewaySettings, catalog: FilterCatalog, store: LabelStore | None = None,
                 cache: ResponseCache | None = None, sleep=time.sleep):
        self.settings = settings
        self.catalog = catalog
        self.store = store or LabelStore.open(settings.resolved_label_store())
        self._redis = _redis_client(settings.redis_url) if settings.redis_url else None
        self.cache = cache or open_cache(settings.cache_location(), _redis_client, settings.redis_prefix)
        self.budgets = Budgets(settings.filter_budgets_usd, settings.job_budget_usd,
                               lambda f, j: self.store.spent(f, j), self._redis, settings.redis_prefix)
        self._sleep = sleep
        self._rng = random.Random()
        # Jobs (distillery score) latch a rejected key: no later request is sent. A long-running gateway does
        # not (one 401 must not take an oracle down until a restart): each request fails on its own answer.
        self.latch_auth_failures = False
        self._hedge_pool: ThreadPoolExecutor | None = None
        self._hedge_lock = threading.Lock()
        self._oracles: dict[str, _Oracle] = {}
        self._flights: dict[tuple, threading.Event] = {}
        self._templates: dict[tuple[str, int], tuple[str, str]] = {}
        self._flights_lock = threading.Lock()
        configs = dict(settings.oracles)
        configs.setdefault("synthetic", OracleConfig(kind="synthetic"))
        for name, cfg in configs.items():
            if cfg.kind != "synthetic":
                settings.price_for(name, cfg.model)  # fail at start-up, not at the first paid call
            self._oracles[name] = self._build(name, cfg)

    def _build(self, name: str, cfg: OracleConfig) -> _Oracle:
        prefix = f"{self.settings.redis_prefix}limit:{name}:"
        return _Oracle(
            name=name, cfg=cfg, provider=build_provider(name, cfg),
            semaphore=threading.BoundedSemaphore(cfg.max_concurrency),
            limiter=make_limiter(cfg.windows(), cfg.rate_margin_seconds, self._redis, prefix),
            latency=LatencyTracker.for_oracle(cfg),
            secrets=[cfg.key()],
        )

    @property
    def shares_state(self) -> bool:
        """True when limits and budgets live in Redis (shared by replicas, kept across restarts)."""
        return self._redis is not None

    def close(self) -> None:
        if self._hedge_pool is not None:
            self._hedge_pool.shutdown(wait=True)  # hedges still out are billed before the store closes
        for oracle in self._oracles.values():
            oracle.provider.close()
        self.cache.close()
        self.store.close()

    # -- prompts -------------------------------------------------------------------------------------
    def _template(self, spec: FilterSpec) -> tuple[str, str]:
        """(rendered template, prompt hash) of a spec, computed once (specs are immutable once loaded)."""
        key = (spec.name, spec.version)
        cached = self._templates.get(key)
        if cached is None:
            cached = self._templates[key] = (render_template(spec), prompt_hash(spec))
        return cached

    def prompt_hash(self, spec: FilterSpec) -> str:
        return self._template(spec)[1]

    def render(self, spec: FilterSpec, article: Article) -> str:
        """The full prompt for one article (same result as distillery.filters.render_prompt)."""
        text = format_article(article.title, article.text, article.source, article.published_at,
                              spec.oracle.max_article_chars)
        return self._template(spec)[0].replace(ARTICLE, text)

    # -- resolution ----------------------------------------------------------------------------------
    def oracle_names(self) -> list[str]:
        return sorted(self._oracles)

    def resolve_oracle(self, requested: str, spec: FilterSpec) -> _Oracle:
        name = oracle_name(requested, "oracle") if requested else (self.settings.default_oracle
                                                                      or spec.oracle.default)
        oracle = self._oracles.get(name)
        if oracle is None:
            raise UnknownOracleError(f"unknown oracle {name!r}; configured: {', '.join(self.oracle_names())}")
        return oracle

    def price(self, oracle: _Oracle, model: str) -> Price:
        if oracle.cfg.kind == "synthetic":
            return Price(input=0, output=0)
        return self.settings.price_for(oracle.name, model)

    def estimate(self, spec: FilterSpec, article: Article, oracle_name: str = "") -> tuple[int, int, float]:
        """(input tokens, output tokens, USD) expected for one article: for dry runs and budget reservations."""
        oracle = self.resolve_oracle(oracle_name, spec)
        prompt = self.render(spec, article)
        return self._estimate(oracle, spec, prompt)

    def _estimate(self, oracle: _Oracle, spec: FilterSpec, prompt: str) -> tuple[int, int, float]:
        tokens_in = oracle.provider.estimate_input_tokens(prompt)
        tokens_out = min(spec.oracle.max_output_tokens, 60 * len(spec.dimensions)) + oracle.cfg.thinking_budget
        usd = self.price(oracle, oracle.cfg.model or oracle.provider.model).cost(tokens_in, 0, tokens_out,
                                                                                batch=oracle.cfg.batch)
        return tokens_in, tokens_out, usd

    # -- the main call -------------------------------------------------------------------------------
    def _accept(self, request: LabelRequest) -> tuple[Article, FilterSpec, _Oracle, str]:
        """(a validated copy of the article, spec, oracle, prompt hash) of a request, or the error that refuses it."""
        article = Article.copy_of(request.article)
        validate(article, self.settings.max_text_bytes)
        check_label_request(request)
        spec = self.catalog.get(request.filter.name, request.filter.version)
        oracle = self.resolve_oracle(request.oracle, spec)
        return article, spec, oracle, self.prompt_hash(spec)

    def label(self, request: LabelRequest) -> OracleLabel:
        t0 = time.perf_counter()
        article, spec, oracle, phash = self._accept(request)
        # Single flight: a second request for a label being made right now waits for it instead of paying.
        flight_key = (article.id, spec.name, spec.version, phash, oracle.name)
        while True:
            with self._flights_lock:
                running = self._flights.get(flight_key)
                if running is None:
                    self._flights[flight_key] = threading.Event()
                    break
            running.wait()
        try:
            return self._label(request, article, spec, oracle, phash, t0)
        finally:
            with self._flights_lock:
                self._flights.pop(flight_key).set()

    def _label(self, request: LabelRequest, article: Article, spec: FilterSpec, oracle: _Oracle, phash: str,
               t0: float) -> OracleLabel:
        stored = self.store.find(article.id, spec.name, spec.version, phash, oracle.name)
        if stored is not None:
            metrics.CACHE_HITS.labels("store").inc()
            metrics.REQUESTS.labels(oracle.provider.kind, stored.oracle_model, "cached").inc()
            return self._as_cached(stored)
        prompt = self.render(spec, article)
        temperature = oracle.cfg.temperature if oracle.cfg.temperature is not None else spec.oracle.temperature
        ckey = cache_key(oracle.provider.kind, oracle.provider.model, phash, content_hash(article.title, article.text))
        hit = self.cache.get(ckey)
        if hit is not None:
            try:
                parsed = parse_response(spec, hit.text)
            except ResponseInvalidError:
                hit = None
            else:
                metrics.CACHE_HITS.labels("response_cache").inc()
                metrics.REQUESTS.labels(oracle.provider.kind, hit.model, "cached").inc()
                label = self._make_label(article, spec, phash, oracle, hit.model, parsed.scores, parsed.evidence,
                                         (0, 0, 0), 0.0, temperature, 0.0, request.reason)
                self.store.put(article, label, hit.text, oracle=oracle.name, job_id=request.job_id)
                label.cached = True
                return label
        response, parsed, usage, cost, latency, waited = self._call_with_retries(
            oracle, spec, article, prompt, temperature, request.job_id)
        label = self._make_label(article, spec, phash, oracle, response.model, parsed.scores, parsed.evidence,
                                 usage, cost, temperature, latency, request.reason)
        self.store.put(article, label, response.raw or response.text, oracle=oracle.name, job_id=request.job_id)
        self.cache.put(ckey, CachedResponse(response.text, response.model, *usage))
        metrics.OVERHEAD.observe(max(time.perf_counter() - t0 - latency - waited, 0.0))
        return label

    def prepare(self, request: LabelRequest):
        """For batch mode: (article, spec, oracle, prompt hash, prompt, temperature, stored label or None)."""
        article, spec, oracle, phash = self._accept(request)
        stored = self.store.find(article.id, spec.name, spec.version, phash, oracle.name)
        prompt = self.render(spec, article)
        temperature = oracle.cfg.temperature if oracle.cfg.temperature is not None else spec.oracle.temperature
        return article, spec, oracle, phash, prompt, temperature, stored

    def record_batch_response(self, request: LabelRequest, response) -> OracleLabel:
        """Validate, price (batch discount), store and cache one answer collected from a batch API.

        Raises ResponseInvalidError when the answer is unusable (the caller re-asks synchronously).
        """
        article, spec, oracle, phash, _prompt, temperature, _stored = self.prepare(request)
        usage = (response.input_tokens, response.cached_input_tokens, response.output_tokens)
        cost = self.price(oracle, response.model).cost(*usage, batch=True)
        try:
            parsed = parse_response(spec, response.text)
        except ResponseInvalidError as exc:
            # Paid for, even though unusable: the ledger and the budgets count it.
            self._bill(oracle, spec, article.id, request.job_id, response.model, usage, cost, CALL_INVALID, batch=True)
            metrics.REQUESTS.labels(oracle.provider.kind, response.model, "invalid_response").inc()
            exc.cost_usd = cost  # the batch job settles its reservation with it
            raise
        self._bill(oracle, spec, article.id, request.job_id, response.model, usage, cost, CALL_LABELLED, batch=True)
        label = self._make_label(article, spec, phash, oracle, response.model, parsed.scores, parsed.evidence,
                                 usage, cost, temperature, 0.0, request.reason)
        self.store.put(article, label, response.raw or response.text, oracle=oracle.name, job_id=request.job_id)
        ckey = cache_key(oracle.provider.kind, oracle.provider.model, phash, content_hash(article.title, article.text))
        self.cache.put(ckey, CachedResponse(response.text, response.model, *usage))
        metrics.REQUESTS.labels(oracle.provider.kind, response.model, "ok_batch").inc()
        return label

    @staticmethod
    def _as_cached(stored: OracleLabel) -> OracleLabel:
        """A stored label as an answer: nothing was paid for it this time."""
        return dataclasses.replace(stored, cached=True, usage=Usage(), latency_seconds=0.0)

    @staticmethod
    def _make_label(article, spec, phash, oracle, model, scores, evidence, usage, cost, temperature,
                    latency, reason) -> OracleLabel:
        return OracleLabel(
            article_id=article.id, filter=FilterRef(name=spec.name, version=spec.version),
            prompt_hash=phash, oracle_model=model, provider=oracle.provider.kind,
            dimensions=[DimensionLabel(name=d, score=scores[d], evidence=evidence[d]) for d in spec.dimension_names],
            usage=Usage(input_tokens=usage[0], cached_input_tokens=usage[1], output_tokens=usage[2], cost_usd=cost),
            temperature=temperature, latency_seconds=latency, created_at=utc_now(), reason=LabelReason.of(reason),
        )

    def _account(self, oracle: _Oracle, spec: FilterSpec, model: str, usage, cost: float) -> None:
        kind = oracle.provider.kind
        for name, n in zip(("input", "cached_input", "output"), usage):
            if n:
                metrics.TOKENS.labels(kind, model, name).inc(n)
        metrics.COST.labels(spec.name, kind, model).inc(cost)
        remaining = self.budgets.remaining(spec.name)
        if remaining is not None:
            metrics.BUDGET_REMAINING.labels(spec.name).set(remaining)

    def _bill(self, oracle: _Oracle, spec: FilterSpec, article_id: str, job_id: str, model: str, usage,
              cost: float, outcome: str, batch: bool = False) -> None:
        """Record one billed call in the cost ledger and the metrics (before anything else can fail)."""
        self.store.record_call(BilledCall(
            filter_name=spec.name, filter_version=spec.version, oracle=oracle.name, provider=oracle.provider.kind,
            oracle_model=model, outcome=outcome, input_tokens=usage[0], cached_input_tokens=usage[1],
            output_tokens=usage[2], cost_usd=cost, article_id=article_id, job_id=job_id, batch=batch))
        self._account(oracle, spec, model, usage, cost)

    def _backoff(self, cfg: OracleConfig, attempt: int, retry_after: float | None) -> float:
        expo = min(cfg.backoff_max_seconds, cfg.backoff_base_seconds * (2 ** attempt))
        delay = self._rng.uniform(0, expo)  # full jitter
        if retry_after is not None:
            delay = max(delay, retry_after)
        return delay

    def _call_estimate(self, oracle: _Oracle, spec: FilterSpec, request: ProviderRequest) -> tuple[int, float]:
        """(tokens, USD) of one call, repair turns included. Tokens are what a provider's rate limit counts
        (prompt + the max_tokens asked for); USD is the budget's reservation (prompt + expected answer)."""
        text = request.prompt + "".join(a + c for a, c in request.repair_turns)
        tokens_in, _tokens_out, usd = self._estimate(oracle, spec, text)
        return tokens_in + spec.oracle.max_output_tokens + oracle.cfg.thinking_budget, usd

    def _auth_failed(self, oracle: _Oracle, exc: ProviderError) -> OracleAuthError:
        """Latch the oracle as unusable and build the message that says what to fix."""
        message = (f"oracle {oracle.name!r}: authentication failed, the provider rejected its API key (HTTP "
                   f"{exc.status or '?'}): check "
                   f"{oracle.cfg.key_source()}")
        if self.latch_auth_failures:
            oracle.auth_failure = message
        log(logger, logging.ERROR, message, oracle=oracle.name, error=str(exc))
        return OracleAuthError(message)

    def _call_with_retries(self, oracle: _Oracle, spec: FilterSpec, article: Article, prompt: str,
                           temperature: float, job_id: str):
        """(response, parsed, usage, cost, latency, waited) of the first valid answer; every answered call is
        in the ledger and settled against the budgets as it returns."""
        cfg = oracle.cfg
        state = _Attempts(ProviderRequest(prompt=prompt, spec=spec, article=article, temperature=temperature,
                                          max_output_tokens=spec.oracle.max_output_tokens,
                                          json_schema=output_json_schema(spec), timeout_seconds=cfg.timeout_seconds))
        while True:
            if oracle.auth_failure:
                raise OracleAuthError(oracle.auth_failure)
            if state.http_attempts >= cfg.max_attempts:
                self._dead_letter(oracle, spec, article, "UNAVAILABLE", state.last_error, state.last_raw,
                                  state.http_attempts, job_id, state.cost)
            state.http_attempts += 1
            answer = self._attempt(oracle, spec, article.id, job_id, state)
            if answer.error is not None:
                state.timeouts += int(answer.error.timed_out)
                delay = self._failed_attempt(oracle, spec, article, answer.error, state.http_attempts, job_id,
                                             state.cost)
                state.waited += delay
                self._sleep(delay)
                state.last_error = str(answer.error)
                continue
            response = answer.response
            state.usage = tuple(a + b for a, b in zip(state.usage, answer.usage))
            state.cost += answer.billed
            state.last_raw = response.raw or response.text
            if answer.parsed is None:
                self._invalid_answer(oracle, spec, article, job_id, state, response, answer.invalid)
                continue
            metrics.REQUESTS.labels(oracle.provider.kind, response.model,
                                    "repaired" if answer.parsed.repaired else "ok").inc()
            return response, answer.parsed, state.usage, state.cost, state.latency, state.waited

    def _attempt(self, oracle: _Oracle, spec: FilterSpec, article_id: str, job_id: str, state: _Attempts) -> _Answer:
        """One HTTP attempt: reserve its estimated cost, call within a concurrency slot and the rate limiter's
        admission, bill an answered call, and settle the reservation with what it cost (also on the way out of
        an error)."""
        est_tokens, estimate = self._call_estimate(oracle, spec, state.request)
        try:
            reserved = self.budgets.reserve(spec.name, job_id, estimate)
        except BudgetExhaustedError:
            metrics.REQUESTS.labels(oracle.provider.kind, oracle.provider.model, "budget_exhausted").inc()
            raise
        billed = 0.0
        try:
            response, error, seconds = self._admitted_call(oracle, spec, article_id, job_id, state, est_tokens,
                                                           estimate)
            if error is not None:
                return _Answer(error=error)
            oracle.latency.observe(seconds)
            self._apply_rate(oracle, response.rate)
            usage = (response.input_tokens, response.cached_input_tokens, response.output_tokens)
            billed = self.price(oracle, response.model).cost(*usage)
            parsed = invalid = None
            try:
                parsed = parse_response(spec, response.text)
            except ResponseInvalidError as exc:
                invalid = exc
            self._bill(oracle, spec, article_id, job_id, response.model, usage, billed,
                       CALL_LABELLED if parsed is not None else CALL_INVALID)
            return _Answer(response=response, parsed=parsed, invalid=invalid, usage=usage, billed=billed)
        finally:
            self.budgets.settle(reserved, estimate, billed)

    def _admitted_call(self, oracle: _Oracle, spec: FilterSpec, article_id: str, job_id: str, state: _Attempts,
                       est_tokens: int, estimate: float):
        """(response or None, ProviderError or None, seconds) of one call made while holding a concurrency slot,
        after the rate limiter admitted it; the wait and the call time add to ``state``."""
        kind = oracle.provider.kind
        w0 = time.perf_counter()
        with oracle.semaphore:
            oracle.limiter.acquire(est_tokens, sleep=self._sleep)
            state.waited += time.perf_counter() - w0
            state.request.timeout_seconds = oracle.latency.timeout(state.timeouts)
            metrics.IN_FLIGHT.labels(kind).inc()
            c0 = time.perf_counter()
            response = error = None
            try:
                response = self._complete(oracle, spec, article_id, job_id, state.request, est_tokens, estimate)
            except ProviderError as exc:
                error = exc
            finally:
                metrics.IN_FLIGHT.labels(kind).dec()
                seconds = time.perf_counter() - c0
                state.latency += seconds
                metrics.LATENCY.labels(kind).observe(seconds)
        return response, error, seconds

    def _invalid_answer(self, oracle: _Oracle, spec: FilterSpec, article: Article, job_id: str, state: _Attempts,
                        response, invalid: ResponseInvalidError) -> None:
        """Re-ask with a corrective message, or dead-letter the article when the repairs are used up."""
        kind = oracle.provider.kind
        metrics.REQUESTS.labels(kind, response.model, "invalid_response").inc()
        state.last_error = str(invalid)
        if state.repairs >= oracle.cfg.max_repair_attempts:
            self._dead_letter(oracle, spec, article, invalid.code, state.last_error, state.last_raw,
                              state.http_attempts, job_id, state.cost)
        state.repairs += 1
        metrics.RETRIES.labels(kind, "invalid_response").inc()
        log(logger, logging.WARNING, f"oracle {oracle.name} answer invalid ({state.last_error}); re-asking "
            f"(repair {state.repairs} of {oracle.cfg.max_repair_attempts})", oracle=oracle.name,
            article_id=article.id, error=state.last_error)
        state.request.repair_turns.append((response.text, corrective_message(spec, invalid)))

    # -- hedging -------------------------------------------------------------------------------------
    def _complete(self, oracle: _Oracle, spec: FilterSpec, article_id: str, job_id: str, request: ProviderRequest,
                  est_tokens: int, estimate: float):
        """One provider call; with ``hedge_after_percentile`` a second copy is sent when the first is still
        unanswered at that latency percentile, and the first answer wins. The hedge needs a free concurrency
        slot, the limiter's admission and its own budget reservation; the other copy, when it answers, is
        paid for and recorded in the ledger as ``unused``."""
        p = oracle.cfg.hedge_after_percentile
        delay = oracle.latency.quantile(p) if p > 0 else None
        if delay is None:
            return oracle.provider.complete(request)
        pool = self._pool()
        primary = pool.submit(oracle.provider.complete, request)
        if wait([primary], timeout=delay).done:
            return primary.result()
        hedge = self._send_hedge(oracle, spec, job_id, request, est_tokens, estimate, pool)
        if hedge is None:
            return primary.result()
        pending = {primary, hedge}
        error: ProviderError | None = None
        winner: Future | None = None
        while pending and winner is None:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                if future.exception() is None and winner is None:
                    winner = future
                elif future.exception() is not None:
                    error = future.exception()
        # The copy that did not win still costs money when it answers: bill it as unused, settle its share of
        # the two reservations (the caller settles one with the winner's cost).
        # With no winner, both failed: the caller settles one reservation, the hedge's callback the other.
        for loser in ({primary, hedge} - {winner} if winner is not None else {hedge}):
            loser.add_done_callback(lambda f, o=oracle: self._settle_loser(f, o, spec, article_id, job_id,
                                                                           estimate))
        if winner is None:
            raise error
        metrics.REQUESTS.labels(oracle.provider.kind, oracle.provider.model,
                                "hedge_won" if winner is hedge else "hedge_lost").inc()
        return winner.result()

    def _pool(self) -> ThreadPoolExecutor:
        with self._hedge_lock:
            if self._hedge_pool is None:
                size = 2 * sum(o.cfg.max_concurrency for o in self._oracles.values())
                self._hedge_pool = ThreadPoolExecutor(max_workers=size, thread_name_prefix="hedge")
            return self._hedge_pool

    def _send_hedge(self, oracle: _Oracle, spec: FilterSpec, job_id: str, request: ProviderRequest,
                    est_tokens: int, estimate: float, pool: ThreadPoolExecutor) -> Future | None:
        if not oracle.semaphore.acquire(blocking=False):
            return None  # every slot busy: a hedge would only queue
        try:
            if oracle.limiter.try_acquire(est_tokens) > 0:
                raise LookupError("no rate admission now")
            self.budgets.reserve(spec.name, job_id, estimate)
        except (LookupError, BudgetExhaustedError):
            oracle.semaphore.release()
            return None
        copy = dataclasses.replace(request, repair_turns=list(request.repair_turns))
        hedge = pool.submit(oracle.provider.complete, copy)
        hedge.add_done_callback(lambda _f: oracle.semaphore.release())
        metrics.REQUESTS.labels(oracle.provider.kind, oracle.provider.model, "hedge_sent").inc()
        return hedge

    def _settle_loser(self, future: Future, oracle: _Oracle, spec: FilterSpec, article_id: str, job_id: str,
                      estimate: float) -> None:
        billed = 0.0
        if future.exception() is None:
            response = future.result()
            usage = (response.input_tokens, response.cached_input_tokens, response.output_tokens)
            billed = self.price(oracle, response.model).cost(*usage)
            try:
                self._bill(oracle, spec, article_id, job_id, response.model, usage, billed, CALL_UNUSED)
            except Exception as exc:  # noqa: BLE001 - a callback must not die silently
                log(logger, logging.ERROR, f"could not record an unused hedged call: {exc}", oracle=oracle.name)
        self.budgets.settle(self.budgets.keys(spec.name, job_id), estimate, billed)

    def _apply_rate(self, oracle: _Oracle, rate) -> None:
        """Hold the limiter for each quota the provider says is spent until its reset."""
        if rate is None:
            return
        for unit, seconds in rate.holds().items():
            oracle.limiter.hold(unit, seconds)
            log(logger, logging.INFO, f"oracle {oracle.name}: provider reports its {unit} quota spent; holding "
                f"{unit} for {seconds:.3f} s", oracle=oracle.name, unit=unit, delay_seconds=round(seconds, 3))

    def _failed_attempt(self, oracle: _Oracle, spec: FilterSpec, article, exc: ProviderError, attempt: int,
                        job_id: str, cost: float) -> float:
        """Handle a failed HTTP attempt: raise when retrying cannot help, else return the delay before the next."""
        kind = oracle.provider.kind
        outcome = self._outcome(exc)
        metrics.REQUESTS.labels(kind, oracle.provider.model, outcome).inc()
        if isinstance(exc, AuthError):
            raise self._auth_failed(oracle, exc)
        self._apply_rate(oracle, exc.rate)
        if not exc.retryable:
            self._dead_letter(oracle, spec, article, exc.code, str(exc), "", attempt, job_id, cost)
        metrics.RETRIES.labels(kind, outcome).inc()
        # A 429 waits for its own Retry-After; only a provider that says the quota is spent holds everyone.
        delay = self._backoff(oracle.cfg, attempt - 1, exc.retry_after)
        log(logger, logging.WARNING, f"oracle {oracle.name} attempt {attempt} of {oracle.cfg.max_attempts} failed "
            f"({exc}); retrying in {delay:.2f} s", oracle=oracle.name, article_id=article.id, attempt=attempt,
            error=str(exc), delay_seconds=round(delay, 3))
        return delay

    @staticmethod
    def _outcome(exc: ProviderError) -> str:
        if isinstance(exc, RateLimitedError):
            return "rate_limited"
        if isinstance(exc, AuthError):
            return "auth_error"
        if isinstance(exc, BadRequestError):
            return "bad_request"
        if exc.timed_out:
            return "timeout"
        return "server_error"

    def _dead_letter(self, oracle: _Oracle, spec: FilterSpec, article, code: str, error: str, raw: str,
                     attempts: int, job_id: str, cost: float = 0.0):
        """Record the failure in the store (nothing is lost silently), then raise. The calls it cost are
        already in the ledger."""
        reason = code.lower()
        metrics.DEAD_LETTERS.labels(oracle.provider.kind, reason).inc()
        self.store.put_dead_letter(article, spec.name, spec.version, oracle.name, code, error, raw, attempts, job_id)
        log(logger, logging.ERROR, "article dead-lettered", oracle=oracle.name, article_id=article.id,
            filter=spec.ref, code=code, error=error, attempts=attempts)
        raise OracleFailure(code, f"oracle {oracle.name!r} could not label article {article.id}: {error}", cost)
