"""The labelling engine against local servers speaking each provider's wire format, with injected faults."""

from __future__ import annotations

import logging
import time

import pytest
from distillery_services.oracle_gateway.config import OracleConfig, OracleGatewaySettings, Price
from distillery_services.oracle_gateway.engine import (
    OracleAuthError,
    OracleEngine,
    OracleFailure,
    UnknownOracleError,
)

from distillery import synthetic
from distillery.articles import Article
from distillery.labels import FilterRef, LabelRequest
from distillery.rpc.errors import BudgetExhaustedError
from distillery.testing.fake_provider import CORRECTIVE_PREFIX, FakeLLMConfig, FakeLLMServer

SECRET = "sk-test-SECRETSECRET1234567890"
PRICE = Price(input=1.0, cached_input=0.5, output=2.0)


@pytest.fixture()
def fake():
    with FakeLLMServer(FakeLLMConfig(api_key=SECRET, retry_after_seconds=0.01)) as srv:
        yield srv


def _settings(tmp_path, fake=None, kind="openai", **extra):
    oracles = {"synthetic": OracleConfig(kind="synthetic")}
    if fake is not None:
        base = fake.url + ("/v1" if kind == "openai" else "")
        options = {"backoff_base_seconds": 0.01, "timeout_seconds": 2.0, **extra.pop("oracle", {})}
        oracles["paid"] = OracleConfig(kind=kind, model="m-1", base_url=base, api_key=SECRET, price=PRICE,
                                       **options)
    return OracleGatewaySettings(state_dir=tmp_path, oracles=oracles, **extra)


def _engine(tmp_path, catalog, fake=None, kind="openai", **extra):
    delays: list[float] = []
    engine = OracleEngine(_settings(tmp_path, fake, kind, **extra), catalog, sleep=delays.append)
    return engine, delays


def _request(catalog, i=0, oracle="paid", job_id="", text=None, article_id=None):
    spec = catalog.get("uplifting")
    record = list(synthetic.generate(spec, i + 1, seed=11))[i]
    article = Article.from_record(record)
    if text is not None:
        article.text = text
    if article_id is not None:
        article.id = article_id
    return LabelRequest(article=article, filter=FilterRef(name="uplifting"), oracle=oracle, job_id=job_id)


def test_synthetic_label_is_stored_and_idempotent(tmp_path, catalog):
    engine, _ = _engine(tmp_path, catalog)
    first = engine.label(_request(catalog, oracle=""))
    assert first.provider == "synthetic" and first.oracle_model == "synthetic-oracle-v1" and not first.cached
    assert [d.name for d in first.dimensions] == catalog.get("uplifting").dimension_names
    second = engine.label(_request(catalog, oracle=""))
    assert second.cached and second.usage.cost_usd == 0
    assert [d.score for d in second.dimensions] == [d.score for d in first.dimensions]
    assert engine.store.count("uplifting") == 1
    engine.close()


@pytest.mark.parametrize("kind", ["openai", "anthropic", "gemini"])
def test_each_wire_format_labels_and_prices(tmp_path, catalog, fake, kind):
    engine, _ = _engine(tmp_path, catalog, fake, kind)
    label = engine.label(_request(catalog))
    assert label.provider == kind and label.oracle_model == "m-1-2025-01-01"
    assert label.usage.input_tokens > 100 and label.usage.output_tokens > 10
    expected = (label.usage.input_tokens * 1.0 + label.usage.output_tokens * 2.0) / 1e6
    assert label.usage.cost_usd == pytest.approx(expected)
    assert fake.stats["requests"] == 1
    headers = {k.lower(): v for k, v in fake.headers[-1].items()}
    assert SECRET in (headers.get("authorization", "") + headers.get("x-api-key", "")
                      + headers.get("x-goog-api-key", ""))
    raw = engine.store.raw_response(label.article_id, "uplifting", label.filter.version, label.prompt_hash,
                                    label.oracle_model)
    assert raw and "m-1-2025-01-01" in raw  # the exact raw response is kept
    engine.close()


def test_retries_429_500_and_timeouts_then_succeeds(tmp_path, catalog, fake):
    engine, delays = _engine(tmp_path, catalog, fake, oracle={"timeout_seconds": 0.5})
    fake.config.slow_seconds = 1.5
    fake.inject("429", "500", "slow", "ok")
    label = engine.label(_request(catalog))
    assert len(label.dimensions) == 6
    assert fake.stats["requests"] == 4
    assert len(delays) == 3 and delays[0] >= 0.01  # Retry-After honoured as the minimum wait
    engine.close()


def test_repair_and_corrective_retry_then_dead_letter(tmp_path, catalog, fake):
    engine, _ = _engine(tmp_path, catalog, fake)
    fake.inject("fenced", "trailing_comma")
    engine.label(_request(catalog, 0))
    engine.label(_request(catalog, 1))
    assert fake.stats["requests"] == 2  # repaired locally, no second call
    fake.inject("missing_dim", "ok")
    engine.label(_request(catalog, 2))
    assert fake.stats["requests"] == 4
    last = fake.bodies[-1]["messages"]
    assert last[-1]["content"].startswith(CORRECTIVE_PREFIX) and last[-2]["role"] == "assistant"
    fake.inject("out_of_range", "broken", "missing_dim")
    with pytest.raises(OracleFailure, match="outside 0-10|missing dimension") as info:
        engine.label(_request(catalog, 3))
    assert info.value.code == "DATA_LOSS"
    dead = engine.store.dead_letters("uplifting")
    assert len(dead) == 1 and dead[0]["attempts"] == 3
    assert engine.store.count("uplifting") == 3
    engine.close()


def test_auth_errors_are_not_retried_and_keys_never_leak(tmp_path, catalog, fake, caplog):
    engine, delays = _engine(tmp_path, catalog, fake)
    engine.latch_auth_failures = True  # as a job does
    fake.inject("auth")
    caplog.set_level(logging.DEBUG)
    with pytest.raises(OracleFailure) as info:
        engine.label(_request(catalog))
    assert info.value.code == "PERMISSION_DENIED" and fake.stats["requests"] == 1 and delays == []
    assert isinstance(info.value, OracleAuthError) and "api_key setting of this oracle" in str(info.value)
    assert SECRET not in str(info.value)
    assert engine.store.dead_letters() == []  # the article is fine: fixing the key labels it
    # Fail fast: no further request reaches the provider with a rejected key.
    with pytest.raises(OracleAuthError):
        engine.label(_request(catalog, 2))
    assert fake.stats["requests"] == 1
    engine.close()
    engine, delays = _engine(tmp_path, catalog, fake)
    fake.inject("500", "500", "500", "500", "500", "500")
    with pytest.raises(OracleFailure) as info:
        engine.label(_request(catalog, 1))
    assert SECRET not in str(info.value)
    assert SECRET not in caplog.text
    for row in engine.store.dead_letters():
        assert SECRET not in row["error"]
    engine.close()


def test_wrong_key_is_an_auth_error_without_the_key(tmp_path, catalog, fake):
    settings = _settings(tmp_path, fake)
    settings.oracles["paid"].api_key = None
    settings.oracles["paid"].api_key_env = "DISTILLERY_TEST_WRONG_KEY"
    import os

    os.environ["DISTILLERY_TEST_WRONG_KEY"] = "sk-wrong-key-value-0000000000"
    try:
        engine = OracleEngine(settings, catalog, sleep=lambda s: None)
        with pytest.raises(OracleFailure) as info:
            engine.label(_request(catalog))
        assert "sk-wrong-key-value" not in str(info.value) and "authentication" in str(info.value)
        engine.close()
    finally:
        del os.environ["DISTILLERY_TEST_WRONG_KEY"]


def test_response_cache_never_pays_twice_for_the_same_content(tmp_path, catalog, fake):
    engine, _ = _engine(tmp_path, catalog, fake)
    first = engine.label(_request(catalog, 0))
    copy = engine.label(_request(catalog, 0, article_id="same-content-other-id"))
    assert fake.stats["requests"] == 1
    assert copy.cached and copy.usage.cost_usd == 0
    assert [d.score for d in copy.dimensions] == [d.score for d in first.dimensions]
    assert engine.store.count("uplifting") == 2
    assert engine.store.spent("uplifting") == pytest.approx(first.usage.cost_usd)
    engine.close()


def test_budget_stops_before_exceeding(tmp_path, catalog, fake):
    engine, _ = _engine(tmp_path, catalog, fake, filter_budgets_usd={"uplifting": 0.01})
    labelled = 0
    with pytest.raises(BudgetExhaustedError, match="budget of filter uplifting exhausted"):
        for i in range(50):
            engine.label(_request(catalog, i))
            labelled += 1
    assert 0 < labelled < 50
    assert engine.store.spent("uplifting") <= 0.01
    requests_before = fake.stats["requests"]
    with pytest.raises(BudgetExhaustedError):
        engine.label(_request(catalog, 49))
    assert fake.stats["requests"] == requests_before  # refused before any call
    engine.close()


def test_job_budget(tmp_path, catalog, fake):
    engine, _ = _engine(tmp_path, catalog, fake, job_budget_usd=0.012)
    done = 0
    with pytest.raises(BudgetExhaustedError, match="job j1"):
        for i in range(20):
            engine.label(_request(catalog, i, job_id="j1"))
            done += 1
    assert done >= 1 and engine.store.spent(job_id="j1") <= 0.012
    engine.label(_request(catalog, 19, job_id="j2"))  # another job has its own budget
    engine.close()


def test_unknown_oracle_and_unpriced_model(tmp_path, catalog, fake):
    engine, _ = _engine(tmp_path, catalog, fake)
    with pytest.raises(UnknownOracleError, match="configured"):
        engine.label(_request(catalog, oracle="nope"))
    engine.close()
    from distillery.config import ConfigError

    settings = OracleGatewaySettings(state_dir=tmp_path, oracles={
        "x": OracleConfig(kind="openai", model="mystery-model", base_url=fake.url)})
    with pytest.raises(ConfigError, match="no price for model 'mystery-model'"):
        OracleEngine(settings, catalog)


def test_invalid_article(tmp_path, catalog):
    engine, _ = _engine(tmp_path, catalog)
    from distillery.articles import InvalidArticleError

    with pytest.raises(InvalidArticleError):
        engine.label(LabelRequest(article=Article(title="t", text=" "), filter=FilterRef(name="uplifting")))
    engine.close()


def test_concurrent_duplicates_are_paid_once(tmp_path, catalog, fake):
    from concurrent.futures import ThreadPoolExecutor

    fake.config.latency_seconds = 0.2
    engine, _ = _engine(tmp_path, catalog, fake)
    with ThreadPoolExecutor(4) as pool:
        labels = list(pool.map(lambda _: engine.label(_request(catalog, 0)), range(4)))
    assert fake.stats["requests"] == 1
    assert sum(not lab.cached for lab in labels) == 1
    engine.close()


def test_cached_template_renders_the_reference_prompt(tmp_path, catalog):
    from distillery.filters.prompt import prompt_hash, render_prompt

    engine, _ = _engine(tmp_path, catalog)
    spec = catalog.get("uplifting")
    article = _request(catalog).article
    assert engine.render(spec, article) == render_prompt(spec, article.title, article.text, article.source,
                                                         article.published_at)
    assert engine.prompt_hash(spec) == prompt_hash(spec)
    engine.close()


def test_the_limiter_learns_a_spent_quota_from_the_providers_headers(tmp_path, catalog):
    # The provider allows 3 requests per fixed second and says so in x-ratelimit-* headers; the oracle is
    # configured with no limit at all. Sequential requests: the answer that reports 0 remaining holds the
    # next request until the reset, so none is refused although 9 requests cannot fit in one second.
    with FakeLLMServer(FakeLLMConfig(rate_windows=[{"unit": "requests", "limit": 3, "seconds": 1.0}])) as strict:
        settings = OracleGatewaySettings(state_dir=tmp_path, oracles={"paid": OracleConfig(
            kind="openai", model="m-1", base_url=strict.url + "/v1", price=PRICE)})
        delays: list[float] = []
        engine = OracleEngine(settings, catalog, sleep=lambda s: (delays.append(s), time.sleep(s)))
        for i in range(9):
            engine.label(_request(catalog, i))
        engine.close()
        assert strict.stats.get("rate_limited", 0) == 0 and strict.stats["requests"] == 9
        assert delays  # held until the provider's reset
