"""The gateway against a strict provider (the fake over real HTTP): exact fixed and sliding windows, rate-limit
headers, hung requests, its own bill. Assertions are counts, never timings: no window over the limit, no 429
caused by us (the margin is far above the send-to-arrival jitter here), the cost ledger equal to the bill."""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
from collections import Counter

import pytest
import yaml
from distillery_services.oracle_gateway.config import OracleConfig, OracleGatewaySettings, Price
from distillery_services.oracle_gateway.engine import OracleEngine
from distillery_services.oracle_gateway.jobs import run_job

from distillery import synthetic
from distillery.articles import Article
from distillery.store import LabelStore
from distillery.testing.fake_provider import FakeLLMConfig, FakeLLMServer

pytestmark = pytest.mark.integration
PRICE = Price(input=150.0, output=600.0)  # high, so that a missed call shows in cents
SECRET = "sk-strict-SECRET-0123456789abcdef"


def _bill_usd(fake: FakeLLMServer) -> float:
    return sum(c["input_tokens"] * PRICE.input + c["output_tokens"] * PRICE.output for c in fake.billed) / 1e6


def _max_per_window(times: list[float], seconds: float, kind: str) -> int:
    if kind == "fixed":
        return max(Counter(math.floor(t / seconds) for t in times).values(), default=0)
    return max((sum(1 for u in times if t <= u < t + seconds) for t in times), default=0)


@pytest.mark.parametrize("kind", ["fixed", "sliding"])
def test_no_window_over_the_limit_no_429_and_every_cent_in_the_ledger(tmp_path, catalog, kind, caplog):
    windows = [{"unit": "requests", "limit": 8, "seconds": 1.0, "kind": kind},
               {"unit": "tokens", "limit": 14000, "seconds": 1.0, "kind": kind}]  # ~6 requests' worth
    faults = {"500": 0.05, "429": 0.03, "broken": 0.05, "missing_dim": 0.05}
    with FakeLLMServer(FakeLLMConfig(latency_seconds=0.02, rate_windows=windows, fault_rates=faults, seed=3,
                                     slow_seconds=1.5, hang_seconds=30.0)) as fake:
        fake.inject("hang", "slow")  # the first two requests never answer in time: timed out and retried
        settings = OracleGatewaySettings(state_dir=tmp_path, cache_url="off", oracles={"fake": OracleConfig(
            kind="openai", model="gpt-4o-mini", base_url=fake.url + "/v1", price=PRICE, max_concurrency=6,
            rate_windows=[{"unit": "requests", "limit": 8, "seconds": 1.0},
                          {"unit": "tokens", "limit": 14000, "seconds": 1.0}],
            rate_window_kind=kind, rate_margin_seconds=0.25, timeout_seconds=1.0, timeout_min_seconds=0.5, backoff_base_seconds=0.05,
            max_attempts=8)})
        engine = OracleEngine(settings, catalog)
        spec = catalog.get("uplifting")
        articles = [Article.from_record(r) for r in synthetic.generate(spec, 24, seed=21)]
        caplog.set_level(logging.WARNING, logger="distillery_services.oracle_gateway.engine")
        progress = run_job(engine, spec, articles, "fake", job_id="strict", workers=6)
        labelled, dead = engine.store.count("uplifting"), len(engine.store.dead_letters())
        ledger = engine.store.costs("uplifting")
        engine.close()
        admitted = [t for t, _tokens, ok in fake.arrivals if ok]
        stats, billed = dict(fake.stats), list(fake.billed)
    assert labelled + dead == 24 and progress.labelled + progress.failed == 24  # nothing lost
    assert stats["hung_released"] >= 1 and stats["abandoned"] >= 1  # neither answered nor billed
    assert stats.get("rate_limited", 0) == 0  # no 429 caused by the limit: only injected ones
    assert _max_per_window(admitted, 1.0, kind) <= 8
    tokens = [(t, n) for t, n, ok in fake.arrivals if ok]
    assert max(sum(n for u, n in tokens if (math.floor(u) == math.floor(t) if kind == "fixed" else t <= u < t + 1))
               for t, _ in tokens) <= 14000
    # every billed call is in the ledger: same calls, same tokens, same dollars
    assert sum(r.calls for r in ledger) == len(billed)
    assert sum(r.input_tokens for r in ledger) == sum(c["input_tokens"] for c in billed)
    assert sum(r.output_tokens for r in ledger) == sum(c["output_tokens"] for c in billed)
    assert sum(r.cost_usd for r in ledger) == pytest.approx(_bill_usd(fake), abs=1e-9)
    # nothing paid twice: every first prompt answered (and billed) once; re-asks are corrective turns
    first = Counter(c["prompt_sha"] for c in billed if not c["corrective"])
    assert first and max(first.values()) == 1
    # log lines say what failed and how long the retry waits
    retries = [r.getMessage() for r in caplog.records if "retrying in" in r.getMessage()]
    assert any("timed out" in m for m in retries) and any("HTTP 500" in m for m in retries)


def _config(tmp_path, fake, **oracle):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"oracle_gateway": {
        "state_dir": str(tmp_path / "state"), "cache_url": "off",
        "oracles": {"fake": {"kind": "openai", "model": "gpt-4o-mini", "base_url": fake.url + "/v1",
                             "api_key_env": "FAKE_KEY", "max_concurrency": 4,
                             "price": {"input": PRICE.input, "output": PRICE.output}, **oracle}},
    }}))
    return path


def _score(tmp_path, fake, *args, key=SECRET):
    cmd = [sys.executable, "-m", "distillery.cli.main", "score", "--filter", "uplifting/v1", "--oracle", "fake",
           "--config", str(_config(tmp_path, fake)), "--no-prefilter", *args]
    return subprocess.run(cmd, check=False, env={**os.environ, "FAKE_KEY": key}, capture_output=True, text=True,
                          timeout=120)


def _costs(tmp_path, fake) -> float:
    out = subprocess.run([sys.executable, "-m", "distillery.cli.main", "oracle", "costs", "--json", "--config",
                          str(_config(tmp_path, fake))], check=True, capture_output=True, text=True, timeout=60)
    return sum(row["cost_usd"] for row in json.loads(out.stdout))


def test_a_rejected_key_stops_the_job_at_the_first_answer(tmp_path):
    with FakeLLMServer(FakeLLMConfig(api_key=SECRET, latency_seconds=0.02)) as fake:
        out = _score(tmp_path, fake, "--count", "40", key="sk-wrong-key-000000000000")
        stats = dict(fake.stats)
    assert out.returncode == 4, out.stdout + out.stderr
    assert "oracle 'fake'" in out.stderr and "FAKE_KEY" in out.stderr and "authentication failed" in out.stderr
    assert "sk-wrong-key" not in out.stdout + out.stderr and SECRET not in out.stdout + out.stderr
    assert stats["unauthorized"] <= 4  # only the requests already in flight (max_concurrency), not 40
    assert stats.get("answered", 0) == 0
    with LabelStore.open(tmp_path / "state" / "labels.sqlite") as store:
        assert store.dead_letters() == [] and store.count("uplifting") == 0  # the articles are not at fault


def test_dead_lettered_spend_is_counted_against_the_bill_and_budgets(tmp_path):
    with FakeLLMServer(FakeLLMConfig(latency_seconds=0.01, fault_rates={"broken": 1.0})) as fake:
        out = _score(tmp_path, fake, "--count", "3")
        assert out.returncode == 1, out.stdout + out.stderr  # dead-lettered articles: non-zero
        assert "failed 3" in out.stdout and "paid $0.0000" not in out.stdout
        first = _bill_usd(fake)
        assert first > 0 and len(fake.billed) == 9  # three answers per article: the first and two re-asks
        # A budget holds across runs of the same job, dead-lettered spend included: the second run starts
        # from what the first one spent.
        budget = first * 1.5
        runs = [_score(tmp_path, fake, "--count", "3", "--budget", f"{budget:.6f}", "--job-id", "capped")
                for _ in range(2)]
        assert runs[-1].returncode == 3 and "Settled spend of job capped" in runs[-1].stderr, runs[-1].stderr
        with LabelStore.open(tmp_path / "state" / "labels.sqlite") as store:
            capped = store.spent(job_id="capped")
        # Reservations are at least the real cost of a call here, so the budget is never passed.
        assert first < capped <= budget + 1e-9
        assert _bill_usd(fake) - first == pytest.approx(capped, abs=1e-9)
        assert _costs(tmp_path, fake) == pytest.approx(_bill_usd(fake), abs=1e-9)


def test_count_must_be_positive(tmp_path):
    with FakeLLMServer(FakeLLMConfig()) as fake:
        out = _score(tmp_path, fake, "--count", "0")
        assert out.returncode == 2 and "--count must be a positive" in out.stderr
        assert fake.stats["requests"] == 0


@pytest.mark.parametrize("fault", ["hang", "slow"])
def test_hedging_answers_a_stuck_request_and_bills_both_copies(tmp_path, catalog, fault):
    with FakeLLMServer(FakeLLMConfig(latency_seconds=0.01, slow_seconds=3.0, hang_seconds=30.0)) as fake:
        settings = OracleGatewaySettings(state_dir=tmp_path, cache_url="off", oracles={"fake": OracleConfig(
            kind="openai", model="gpt-4o-mini", base_url=fake.url + "/v1", price=PRICE, max_concurrency=4,
            timeout_seconds=5.0, timeout_min_seconds=5.0, hedge_after_percentile=0.9)})
        delays: list[float] = []
        engine = OracleEngine(settings, catalog, sleep=delays.append)
        spec = catalog.get("uplifting")
        articles = [Article.from_record(r) for r in synthetic.generate(spec, 21, seed=5)]
        # 20 answers to learn the latency from (no hedge before that), then one request that gets stuck.
        run_job(engine, spec, articles[:20], "fake", job_id="warm", workers=1)
        before = fake.stats["requests"]
        fake.inject(fault)
        run_job(engine, spec, articles[20:], "fake", job_id="hedged", workers=1)
        assert engine.store.count("uplifting") == 21
        assert delays == []  # no timeout, no retry: the hedge answered
        engine.close()  # waits for the copy still out, which is billed if it answers
        sent = fake.stats["requests"] - before
        billed = list(fake.billed)
    with LabelStore.open(tmp_path / "labels.sqlite") as store:
        hedged, every = store.calls(job_id="hedged"), store.calls()
    assert sent == 2  # the stuck request and its hedge
    assert sorted(c["outcome"] for c in hedged) == (["labelled", "unused"] if fault == "slow" else ["labelled"])
    assert len(every) == len(billed)  # the ledger holds exactly what the provider billed
    assert sum(c["input_tokens"] for c in every) == sum(c["input_tokens"] for c in billed)
