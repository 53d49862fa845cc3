"""Cascade routing in the real service: a lexical first stage and a MiniLM probe (torch backend) promoted
for ``uplifting`` (cascade_threshold from its spec); each result says which stage answered."""

from __future__ import annotations

import re
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from distillery.filters import FilterCatalog
from distillery.messages import from_record
from distillery.runtime.supervisor import start_service
from distillery.v1 import scoring_pb2, scoring_pb2_grpc

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FILTERS = Path(__file__).resolve().parents[2] / "filters"


def test_cheap_stage_answers_below_threshold_and_probe_above(tmp_path):
    from distillery_services.inference.backends import make_encoder

    from distillery.calibration import Calibration
    from distillery.registry import ModelRegistry
    from distillery.students import compose_text, make_student
    from distillery.students.probe import ProbeStudent
    from distillery.synthetic import generate, scores_of

    spec = FilterCatalog.load(FILTERS, ["uplifting"]).get("uplifting")
    threshold = spec.student.cascade_threshold
    records = list(generate(spec, 120, seed=9))
    texts = [compose_text(r["title"], r["text"]) for r in records]
    y = np.array([[scores_of(r)[d] for d in spec.dimension_names] for r in records])
    registry = ModelRegistry(tmp_path / "registry")
    lexical = make_student("lexical", spec.dimension_names, filter=spec.name).fit(texts, y)
    lex = registry.register(spec, lexical, Calibration.identity(spec.dimension_names, 1.0))
    enc = make_encoder("torch", "all-MiniLM-L6-v2", 32, 32)
    probe = ProbeStudent(spec.dimension_names, filter=spec.name, head="ridge", head_tokens=32, tail_tokens=32)
    probe.fit_embeddings(enc.embed(texts[:60]), y[:60])
    prb = registry.register(spec, probe, Calibration.identity(spec.dimension_names, 1.0))
    registry.promote(spec.name, prb.version_id)

    svc = start_service("inference", args=[
        "--filters-dir", str(FILTERS), "--filter", "uplifting", "--state-dir", str(tmp_path),
        "--backend", "torch", "--log-level", "WARNING"], log_dir=tmp_path / "logs", timeout=180)
    try:
        stub = scoring_pb2_grpc.ScoringServiceStub(svc.channel())
        arts = [from_record(r) for r in records[60:120]]
        reply = stub.ScoreBatch(scoring_pb2.ScoreBatchRequest(articles=arts), timeout=120)
        results = [r.results[0] for r in reply.responses]
        cheap_scores = np.clip(lexical.predict(texts[60:120]), 0, 10)
        from distillery.filters import overall_scores

        cheap_overall, _ = overall_scores(spec, cheap_scores)
        stages = [r.stage for r in results]
        assert scoring_pb2.STAGE_CHEAP in stages and scoring_pb2.STAGE_EXPENSIVE in stages
        for r, c in zip(results, cheap_overall, strict=True):
            if r.stage == scoring_pb2.STAGE_CHEAP:
                assert r.model_version == lex.version_id and c < threshold + 1e-6
            else:
                assert r.stage == scoring_pb2.STAGE_EXPENSIVE
                assert r.model_version == prb.version_id and c >= threshold - 1e-6
        text = urllib.request.urlopen(f"http://127.0.0.1:{svc.metrics_port}/metrics", timeout=5).read().decode()
        share = {m.group(1): float(m.group(2)) for m in re.finditer(
            r'distillery_inference_articles_total\{filter="uplifting",stage="(\w+)"\} ([0-9.e+]+)', text)}
        assert share["cheap"] + share["expensive"] == 60
    finally:
        svc.stop()
