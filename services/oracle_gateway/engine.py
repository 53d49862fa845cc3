"""The labelling engine: prompt -> (store | cache | budget | pacing | provider with retries) -> label.

It knows nothing of gRPC or Kafka: the servicer, the Kafka stage and the CLI all call
:meth:`OracleEngine.label`. Order of checks for one request:

1. validate the article, resolve the filter and the oracle;
2. the label store already holds a label by this oracle for (article, filter, version, prompt hash):
   return it with ``cached=True`` (nothing paid);
3. the response cache holds an answer for (provider, model, prompt hash, content hash): parse it,
   store a label with zero cost, ``cached=True``;
4. reserve the estimated cost against the budgets (BudgetExhaustedError when it would exceed one);
5. up to ``max_attempts`` HTTP attempts: concurrency slot, paced reservation (requests/min and
   tokens/min), one call; 429 honours Retry-After (and pushes the shared schedule back), 5xx and
   timeouts back off exponentially with full jitter; auth and bad-request errors are not retried;
6. parse/repair/validate the answer; an invalid answer is re-asked with a corrective message up to
   ``max_repair_attempts`` times; after that the article is dead-lettered (never silently lost);
7. price every attempt's tokens, settle the budget, store label + raw response, fill the cache.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass, field

from distillery.articles import content_hash, validate
from distillery.filters import FilterCatalog
from distillery.filters.prompt import (
    ARTICLE,
    format_article,
    output_json_schema,
    prompt_hash,
    render_template,
)
from distillery.filters.spec import FilterSpec
from distillery.logs import log
from distillery.rpc.errors import BudgetExhaustedError, NotFoundError
from distillery.store import LabelStore
from distillery.store.labels import utc_now
from distillery.v1 import article_pb2, common_pb2, oracle_pb2
from services.oracle_gateway import metrics
from services.oracle_gateway.budget import Budgets
from services.oracle_gateway.cache import CachedResponse, ResponseCache, cache_key, open_cache
from services.oracle_gateway.config import OracleConfig, OracleGatewaySettings, Price
from services.oracle_gateway.parsing import ResponseInvalidError, corrective_message, parse_response
from services.oracle_gateway.providers import (
    AuthError,
    BadRequestError,
    Provider,
    ProviderError,
    ProviderRequest,
    RateLimitedError,
    build_provider,
)
from services.oracle_gateway.ratelimit import Pacer, make_pacer

logger = logging.getLogger(__name__)


class OracleFailure(RuntimeError):
    """The oracle could not label an article after every retry; ``code`` is a gRPC status name."""

    def __init__(self, code: str, message: str, cost_usd: float = 0.0):
        super().__init__(message)
        self.code = code
        self.cost_usd = cost_usd


class UnknownOracleError(NotFoundError):
    """A request names an oracle that is not configured."""


@dataclass
class _Oracle:
    name: str
    cfg: OracleConfig
    provider: Provider
    semaphore: threading.BoundedSemaphore
    request_pacer: Pacer | None
    token_pacer: Pacer | None
    secrets: list[str] = field(default_factory=list)


def _redis_client(url: str):
    import redis

    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)


class OracleEngine:
    """Labels articles through configured oracles; thread-safe, shared by all entry points."""

    def __init__(self, settings: OracleGatewaySettings, catalog: FilterCatalog, store: LabelStore | None = None,
                 cache: ResponseCache | None = None, sleep=time.sleep):
        self.settings = settings
        self.catalog = catalog
        self.store = store or LabelStore.open(settings.label_store_url())
        self._redis = _redis_client(settings.redis_url) if settings.redis_url else None
        self.cache = cache or open_cache(settings.cache_location(), _redis_client, settings.redis_prefix)
        self.budgets = Budgets(settings.filter_budgets_usd, settings.job_budget_usd,
                               lambda f, j: self.store.spent(f, j), self._redis, settings.redis_prefix)
        self._sleep = sleep
        self._rng = random.Random()
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
        prefix = f"{self.settings.redis_prefix}pace:{name}:"
        return _Oracle(
            name=name, cfg=cfg, provider=build_provider(name, cfg),
            semaphore=threading.BoundedSemaphore(cfg.max_concurrency),
            request_pacer=make_pacer(cfg.requests_per_minute, cfg.burst_seconds, self._redis, prefix + "rpm"),
            token_pacer=make_pacer(cfg.tokens_per_minute, cfg.burst_seconds, self._redis, prefix + "tpm"),
            secrets=[cfg.key()],
        )

    @property
    def shares_state(self) -> bool:
        """True when limits and budgets live in Redis (shared by replicas, kept across restarts)."""
        return self._redis is not None

    def close(self) -> None:
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

    def render(self, spec: FilterSpec, article: article_pb2.Article) -> str:
        """The full prompt for one article (same result as distillery.filters.render_prompt)."""
        text = format_article(article.title, article.text, article.source, article.published_at,
                              spec.oracle.max_article_chars)
        return self._template(spec)[0].replace(ARTICLE, text)

    # -- resolution ----------------------------------------------------------------------------------
    def oracle_names(self) -> list[str]:
        return sorted(self._oracles)

    def resolve_oracle(self, requested: str, spec: FilterSpec) -> _Oracle:
        name = requested or self.settings.default_oracle or spec.oracle.default
        oracle = self._oracles.get(name)
        if oracle is None:
            raise UnknownOracleError(f"unknown oracle {name!r}; configured: {', '.join(self.oracle_names())}")
        return oracle

    def price(self, oracle: _Oracle, model: str) -> Price:
        if oracle.cfg.kind == "synthetic":
            return Price(input=0, output=0)
        return self.settings.price_for(oracle.name, model)

    def estimate(self, spec: FilterSpec, article: article_pb2.Article, oracle_name: str = "") -> tuple[int, int, float]:
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
    def label(self, request: oracle_pb2.LabelRequest) -> oracle_pb2.OracleLabel:
        t0 = time.perf_counter()
        article = oracle_pb2.LabelRequest().article
        article.CopyFrom(request.article)
        validate(article, self.settings.max_text_bytes)
        spec = self.catalog.get(request.filter.name, request.filter.version)
        oracle = self.resolve_oracle(request.oracle, spec)
        phash = self.prompt_hash(spec)
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

    def _label(self, request, article, spec, oracle, phash, t0) -> oracle_pb2.OracleLabel:
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
        tokens_in, tokens_out, estimate = self._estimate(oracle, spec, prompt)
        try:
            reserved = self.budgets.reserve(spec.name, request.job_id, estimate)
        except BudgetExhaustedError:
            metrics.REQUESTS.labels(oracle.provider.kind, oracle.provider.model, "budget_exhausted").inc()
            raise
        cost = 0.0
        try:
            result = self._call_with_retries(oracle, spec, article, prompt, temperature, tokens_in + tokens_out,
                                             request.job_id, t0)
            response, parsed, usage, latency, waited = result
            cost = self.price(oracle, response.model).cost(*usage, batch=False)
        except OracleFailure as exc:
            cost = exc.cost_usd
            raise
        finally:
            self.budgets.settle(reserved, estimate, cost)
        label = self._make_label(article, spec, phash, oracle, response.model, parsed.scores, parsed.evidence,
                                 usage, cost, temperature, latency, request.reason)
        self.store.put(article, label, response.raw or response.text, oracle=oracle.name, job_id=request.job_id)
        self.cache.put(ckey, CachedResponse(response.text, response.model, *usage))
        self._account(oracle, spec, response.model, usage, cost)
        metrics.OVERHEAD.observe(max(time.perf_counter() - t0 - latency - waited, 0.0))
        return label

    def prepare(self, request: oracle_pb2.LabelRequest):
        """For batch mode: (article, spec, oracle, prompt hash, prompt, temperature, stored label or None)."""
        article = oracle_pb2.LabelRequest().article
        article.CopyFrom(request.article)
        validate(article, self.settings.max_text_bytes)
        spec = self.catalog.get(request.filter.name, request.filter.version)
        oracle = self.resolve_oracle(request.oracle, spec)
        phash = self.prompt_hash(spec)
        stored = self.store.find(article.id, spec.name, spec.version, phash, oracle.name)
        prompt = self.render(spec, article)
        temperature = oracle.cfg.temperature if oracle.cfg.temperature is not None else spec.oracle.temperature
        return article, spec, oracle, phash, prompt, temperature, stored

    def record_batch_response(self, request: oracle_pb2.LabelRequest, response) -> oracle_pb2.OracleLabel:
        """Validate, price (batch discount), store and cache one answer collected from a batch API.

        Raises ResponseInvalidError when the answer is unusable (the caller re-asks synchronously).
        """
        article, spec, oracle, phash, _prompt, temperature, _stored = self.prepare(request)
        usage = (response.input_tokens, response.cached_input_tokens, response.output_tokens)
        cost = self.price(oracle, response.model).cost(*usage, batch=True)
        try:
            parsed = parse_response(spec, response.text)
        except ResponseInvalidError:
            self._account(oracle, spec, response.model, usage, cost)  # paid for, even though unusable
            metrics.REQUESTS.labels(oracle.provider.kind, response.model, "invalid_response").inc()
            raise
        label = self._make_label(article, spec, phash, oracle, response.model, parsed.scores, parsed.evidence,
                                 usage, cost, temperature, 0.0, request.reason)
        self.store.put(article, label, response.raw or response.text, oracle=oracle.name, job_id=request.job_id)
        ckey = cache_key(oracle.provider.kind, oracle.provider.model, phash, content_hash(article.title, article.text))
        self.cache.put(ckey, CachedResponse(response.text, response.model, *usage))
        self._account(oracle, spec, response.model, usage, cost)
        metrics.REQUESTS.labels(oracle.provider.kind, response.model, "ok_batch").inc()
        return label

    def _as_cached(self, stored: oracle_pb2.OracleLabel) -> oracle_pb2.OracleLabel:
        label = oracle_pb2.OracleLabel()
        label.CopyFrom(stored)
        label.cached = True
        label.usage.CopyFrom(common_pb2.Usage())
        label.latency_seconds = 0.0
        return label

    def _make_label(self, article, spec, phash, oracle, model, scores, evidence, usage, cost, temperature,
                    latency, reason) -> oracle_pb2.OracleLabel:
        return oracle_pb2.OracleLabel(
            article_id=article.id, filter=common_pb2.FilterRef(name=spec.name, version=spec.version),
            prompt_hash=phash, oracle_model=model, provider=oracle.provider.kind,
            dimensions=[oracle_pb2.DimensionLabel(name=d, score=scores[d], evidence=evidence[d])
                        for d in spec.dimension_names],
            usage=common_pb2.Usage(input_tokens=usage[0], cached_input_tokens=usage[1], output_tokens=usage[2],
                                   cost_usd=cost),
            temperature=temperature, latency_seconds=latency, created_at=utc_now(), reason=reason,
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

    def _backoff(self, cfg: OracleConfig, attempt: int, retry_after: float | None) -> float:
        expo = min(cfg.backoff_max_seconds, cfg.backoff_base_seconds * (2 ** attempt))
        delay = self._rng.uniform(0, expo)  # full jitter
        if retry_after is not None:
            delay = max(delay, retry_after)
        return delay

    def _call_with_retries(self, oracle: _Oracle, spec: FilterSpec, article: article_pb2.Article, prompt: str,
                           temperature: float, est_tokens: int, job_id: str, t0: float):
        cfg, kind = oracle.cfg, oracle.provider.kind
        request = ProviderRequest(prompt=prompt, spec=spec, article=article, temperature=temperature,
                                  max_output_tokens=spec.oracle.max_output_tokens,
                                  json_schema=output_json_schema(spec), timeout_seconds=cfg.timeout_seconds)
        usage = [0, 0, 0]
        latency = waited = 0.0
        http_attempts = repairs = 0
        last_raw = last_error = ""
        while True:
            if http_attempts >= cfg.max_attempts:
                self._dead_letter(oracle, spec, article, "UNAVAILABLE", last_error, last_raw, http_attempts, job_id)
            http_attempts += 1
            w0 = time.perf_counter()
            with oracle.semaphore:
                if oracle.request_pacer is not None:
                    oracle.request_pacer.acquire(1)
                if oracle.token_pacer is not None:
                    oracle.token_pacer.acquire(est_tokens)
                waited += time.perf_counter() - w0
                metrics.IN_FLIGHT.labels(kind).inc()
                c0 = time.perf_counter()
                try:
                    response = oracle.provider.complete(request)
                except ProviderError as exc:
                    outcome = self._outcome(exc)
                    metrics.REQUESTS.labels(kind, oracle.provider.model, outcome).inc()
                    last_error = str(exc)
                    if isinstance(exc, RateLimitedError) and exc.retry_after and oracle.request_pacer is not None:
                        oracle.request_pacer.penalize(exc.retry_after)
                    if not exc.retryable:
                        self._dead_letter(oracle, spec, article, exc.code, last_error, "", http_attempts, job_id)
                    metrics.RETRIES.labels(kind, outcome).inc()
                    delay = self._backoff(cfg, http_attempts - 1, exc.retry_after)
                    log(logger, logging.WARNING, "oracle attempt failed, retrying", oracle=oracle.name,
                        attempt=http_attempts, error=last_error, delay_seconds=round(delay, 3))
                    waited += delay
                    self._sleep(delay)
                    continue
                finally:
                    metrics.IN_FLIGHT.labels(kind).dec()
                    call = time.perf_counter() - c0
                    latency += call
                    metrics.LATENCY.labels(kind).observe(call)
            usage[0] += response.input_tokens
            usage[1] += response.cached_input_tokens
            usage[2] += response.output_tokens
            last_raw = response.raw or response.text
            try:
                parsed = parse_response(spec, response.text)
            except ResponseInvalidError as exc:
                metrics.REQUESTS.labels(kind, response.model, "invalid_response").inc()
                last_error = str(exc)
                if repairs >= cfg.max_repair_attempts:
                    self._dead_letter(oracle, spec, article, exc.code, last_error, last_raw, http_attempts, job_id,
                                      usage, response.model)
                repairs += 1
                metrics.RETRIES.labels(kind, "invalid_response").inc()
                request.repair_turns.append((response.text, corrective_message(spec, exc)))
                continue
            metrics.REQUESTS.labels(kind, response.model, "repaired" if parsed.repaired else "ok").inc()
            return response, parsed, tuple(usage), latency, waited

    @staticmethod
    def _outcome(exc: ProviderError) -> str:
        if isinstance(exc, RateLimitedError):
            return "rate_limited"
        if isinstance(exc, AuthError):
            return "auth_error"
        if isinstance(exc, BadRequestError):
            return "bad_request"
        if "timed out" in str(exc):
            return "timeout"
        return "server_error"

    def _dead_letter(self, oracle: _Oracle, spec: FilterSpec, article, code: str, error: str, raw: str,
                     attempts: int, job_id: str, usage=(0, 0, 0), model: str = ""):
        """Record the failure in the store (nothing is lost silently), account money spent, then raise."""
        cost = 0.0
        if any(usage):
            cost = self.price(oracle, model or oracle.provider.model).cost(*usage)
            self._account(oracle, spec, model or oracle.provider.model, tuple(usage), cost)
        reason = code.lower()
        metrics.DEAD_LETTERS.labels(oracle.provider.kind, reason).inc()
        self.store.put_dead_letter(article, spec.name, spec.version, oracle.name, code, error, raw, attempts, job_id)
        log(logger, logging.ERROR, "article dead-lettered", oracle=oracle.name, article_id=article.id,
            filter=spec.ref, code=code, error=error, attempts=attempts)
        raise OracleFailure(code, f"oracle {oracle.name!r} could not label article {article.id}: {error}", cost)
