"""Synthesis: profile parsing, the writer prompt, writing + labelling against a local fake provider (real HTTP)."""

from __future__ import annotations

import json

import pytest
from distillery_services.oracle_gateway.config import OracleConfig, OracleGatewaySettings, Price
from distillery_services.oracle_gateway.engine import OracleEngine
from distillery_services.oracle_gateway.parsing import ResponseInvalidError
from distillery_services.oracle_gateway.synthesize import (
    LEVELS,
    SYNTHETIC_JOB,
    SYNTHETIC_PROFILE,
    NoWriterError,
    SynthesisError,
    Writer,
    export_job,
    parse_article,
    parse_profile,
    pick_writer,
    render_writer_prompt,
    run_synthesis,
)

from distillery.testing.fake_provider import FakeLLMConfig, FakeLLMServer, is_writer_prompt

SECRET = "sk-synth-SECRET-0123456789abcdef"
PRICE = Price(input=1.0, output=2.0)


@pytest.fixture()
def fake():
    with FakeLLMServer(FakeLLMConfig(api_key=SECRET, retry_after_seconds=0.01)) as srv:
        yield srv


def _engine(tmp_path, catalog, fake=None):
    oracles = {"synthetic": OracleConfig(kind="synthetic")}
    if fake is not None:
        oracles["llm"] = OracleConfig(kind="openai", model="m-1", base_url=fake.url + "/v1", api_key=SECRET,
                                      price=PRICE, backoff_base_seconds=0.01, timeout_seconds=5.0)
    settings = OracleGatewaySettings(state_dir=tmp_path, oracles=oracles)
    return OracleEngine(settings, catalog, sleep=lambda s: None)


def test_profile_parsing_and_clear_errors(catalog):
    spec = catalog.get("uplifting")
    dims = spec.dimension_names
    assert parse_profile(spec, f"{dims[0]}=high, {dims[1]}=LOW") == {dims[0]: "high", dims[1]: "low"}
    with pytest.raises(SynthesisError) as exc:
        parse_profile(spec, "happiness=high")
    assert "happiness" in str(exc.value) and all(d in str(exc.value) for d in dims)
    with pytest.raises(SynthesisError) as exc:
        parse_profile(spec, f"{dims[0]}=extreme")
    assert "extreme" in str(exc.value) and all(level in str(exc.value) for level in LEVELS)
    for bad in ("", f"{dims[0]}", f"{dims[0]}=high,{dims[0]}=low"):
        with pytest.raises(SynthesisError):
            parse_profile(spec, bad)


def test_writer_prompt_renders_the_target_bands_from_the_spec(catalog):
    spec = catalog.get("uplifting")
    dim = spec.dimensions[0]
    prompt = render_writer_prompt(spec, {dim.name: "high"}, index=0)
    assert dim.description.strip() in prompt
    assert dim.scale["7-8"].strip() in prompt and dim.scale["9-10"].strip() in prompt
    assert dim.scale["0-2"].strip() not in prompt
    assert is_writer_prompt(prompt)
    assert render_writer_prompt(spec, {dim.name: "high"}, index=1) != prompt  # articles vary
    low = render_writer_prompt(spec, {dim.name: "low"}, index=0)
    assert dim.scale["0-2"].strip() in low and dim.scale["9-10"].strip() not in low


def test_parse_article_rejects_unusable_answers():
    body = "word " * 60
    assert parse_article(f'```json\n{{"title": "T", "text": "{body}"}}\n```') == ("T", body.strip())
    for bad in ('{"title": "T", "text": "short"}', '{"text": "' + body + '"}', "no json here"):
        with pytest.raises(ResponseInvalidError):
            parse_article(bad)


def test_without_an_llm_provider_synthesize_refuses(tmp_path, catalog):
    engine = _engine(tmp_path, catalog)
    try:
        with pytest.raises(NoWriterError, match="synthesize needs an LLM writer; configure one"):
            pick_writer(engine, "")
        with pytest.raises(NoWriterError, match="synthetic oracle cannot write"):
            pick_writer(engine, "synthetic")
    finally:
        engine.close()


def test_writes_labels_and_stores_synthetic_articles_then_resumes(tmp_path, catalog, fake):
    spec = catalog.get("uplifting")
    dims = spec.dimension_names
    profile = {dims[0]: "high", dims[1]: "low"}
    engine = _engine(tmp_path, catalog, fake)
    fake.inject("broken")  # the first writer answer is unusable: re-asked with a corrective message
    try:
        assert pick_writer(engine, "") == "llm"
        writer = Writer(engine, spec, profile, "llm", "job-s1")
        progress = run_synthesis(writer, "llm", 5, workers=2)
        assert writer.progress.written == 5 and writer.progress.failed == 0
        assert progress.labelled == 5 and progress.failed == 0 and not progress.stopped_reason
        assert writer.progress.cost_usd > 0 and progress.cost_usd > 0
        rows = list(engine.store.iter_labelled(spec.name, spec.version))
        assert len(rows) == 5
        for row in rows:
            assert row.synthetic and row.metadata["synthetic"] == "true"
            assert row.metadata["synthetic_filter"] == spec.ref
            assert json.loads(row.metadata[SYNTHETIC_PROFILE]) == profile
            assert "synthetic_scores" not in row.metadata  # the intent is never a label
            assert row.metadata[SYNTHETIC_JOB] == "job-s1" and row.oracle == "llm"
            assert set(row.scores) == set(dims)
        assert engine.store.count(spec.name, include_synthetic=False) == 0
        writer_requests = [p for p in fake.prompts if is_writer_prompt(p)]
        assert len(writer_requests) == 6  # 5 articles + 1 re-ask
        # Every billed call, the writer's included (the unusable first answer too), is in the cost ledger.
        outcomes = sorted(c["outcome"] for c in engine.store.calls(job_id="job-s1"))
        assert outcomes == ["invalid"] + ["labelled"] * 5 + ["written"] * 5
        assert engine.store.spent(job_id="job-s1") == pytest.approx(writer.progress.cost_usd + progress.cost_usd)
        # A rerun of the same job writes nothing and pays nothing.
        before = fake.stats["requests"]
        again = Writer(engine, spec, profile, "llm", "job-s1")
        progress2 = run_synthesis(again, "llm", 5, workers=2)
        assert fake.stats["requests"] == before
        assert again.progress.resumed == 5 and again.progress.written == 0 and progress2.labelled == 0
        out = tmp_path / "out.jsonl"
        assert export_job(engine, spec, "job-s1", "llm", out) == 5
        record = json.loads(out.read_text().splitlines()[0])
        assert record["synthetic"] is True and set(record["dimension_scores"]) == set(dims)
    finally:
        engine.close()


def test_budget_covers_writing_and_labelling(tmp_path, catalog, fake):
    spec = catalog.get("uplifting")
    engine = _engine(tmp_path, catalog, fake)
    try:
        writer = Writer(engine, spec, {spec.dimension_names[0]: "medium"}, "llm", "job-b")
        progress = run_synthesis(writer, "llm", 50, budget_usd=0.02, workers=1)
        assert "budget of job job-b" in progress.stopped_reason
        assert writer.progress.written < 50
        assert writer.progress.cost_usd + progress.cost_usd <= 0.02 + 1e-9
        assert engine.store.spent(job_id="job-b") == pytest.approx(writer.progress.cost_usd + progress.cost_usd)
    finally:
        engine.close()
