"""Batch-API mode against the fake OpenAI and Anthropic batch endpoints: half price, resumable, repaired."""

from __future__ import annotations

import pytest
from distillery_services.oracle_gateway.batch import BatchAPI, run_batch_job
from distillery_services.oracle_gateway.config import OracleConfig, OracleGatewaySettings, Price
from distillery_services.oracle_gateway.engine import OracleEngine

from distillery import synthetic
from distillery.articles import Article
from distillery.testing.fake_provider import FakeLLMConfig, FakeLLMServer

PRICE = Price(input=1.0, output=2.0)


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_batch_job_labels_at_half_price_and_resumes(tmp_path, catalog, kind):
    spec = catalog.get("uplifting")
    articles = [Article.from_record(r) for r in synthetic.generate(spec, 12, seed=4)]
    with FakeLLMServer(FakeLLMConfig(api_key="k-123456")) as fake:
        base = fake.url + ("/v1" if kind == "openai" else "")
        settings = OracleGatewaySettings(state_dir=tmp_path, oracles={"b": OracleConfig(
            kind=kind, model="m", base_url=base, api_key="k-123456", price=PRICE, batch=True,
            batch_poll_seconds=0.05)})
        engine = OracleEngine(settings, catalog)
        fake.inject("ok", "fenced", "missing_dim")  # the third answer is re-asked synchronously
        progress = run_batch_job(engine, spec, articles, "b", job_id="jb", chunk=5, sleep=lambda s: __import__(
            "time").sleep(0.1))
        assert progress.labelled == 12 and progress.failed == 0
        assert engine.store.count("uplifting") == 12
        half = 0
        for item in engine.store.iter_labelled("uplifting"):
            u = engine.store.get(item.id, "uplifting", 1, item.prompt_hash, item.oracle_model).usage
            sync = (u.input_tokens * 1.0 + u.output_tokens * 2.0) / 1e6
            half += u.cost_usd == pytest.approx(sync / 2)
        assert half == 11  # every batch answer at half price; the re-asked one at the synchronous price
        # The ledger holds every billed call, the unusable batch answer included, as the provider bills them.
        calls = engine.store.calls()
        assert len(calls) == len(fake.billed) == 13 and sum(c["batch"] for c in calls) == 12
        bill = sum((c["input_tokens"] * 1.0 + c["output_tokens"] * 2.0) / 1e6 * (0.5 if c["batch"] else 1.0)
                   for c in fake.billed)
        assert engine.store.spent() == pytest.approx(bill, abs=1e-12)
        requests = fake.stats["requests"]
        again = run_batch_job(engine, spec, articles, "b", job_id="jb", chunk=5)
        assert again.cached == 12 and again.labelled == 0 and fake.stats["requests"] == requests
        engine.close()


def test_batch_mode_refuses_other_providers(tmp_path, catalog):
    settings = OracleGatewaySettings(state_dir=tmp_path)
    engine = OracleEngine(settings, catalog)
    with pytest.raises(TypeError, match="batch mode"):
        BatchAPI(engine.resolve_oracle("synthetic", catalog.get("uplifting")).provider)
    engine.close()
