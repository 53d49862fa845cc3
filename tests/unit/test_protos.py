"""The public contracts: stubs up to date, documented, versioned, and round-trip safely."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from distillery import protos
from distillery.v1 import (
    article_pb2,
    common_pb2,
    events_pb2,
    oracle_pb2,
    prefilter_pb2,
    scoring_pb2,
    trainer_pb2,
)

PROTO_FILES = protos.proto_files()


def test_generated_stubs_are_up_to_date():
    assert protos.stale_files() == [], "run `make protos` and commit the regenerated stubs"


def test_the_four_services_exist():
    text = "\n".join(p.read_text() for p in PROTO_FILES)
    for service in ("PrefilterService", "OracleService", "TrainerService", "ScoringService"):
        assert f"service {service} " in text


@pytest.mark.parametrize("path", PROTO_FILES, ids=lambda p: p.name)
def test_every_declaration_has_a_comment(path: Path):
    lines = path.read_text().splitlines()
    undocumented = []
    decl = re.compile(r"^\s*(message|enum|service|rpc)\s+\w+|^\s*(repeated\s+|map<[^>]+>\s+)?[\w.]+\s+\w+\s*=\s*\d+;")
    for i, line in enumerate(lines):
        if decl.match(line) and not lines[i - 1].strip().startswith("//"):
            undocumented.append(f"{path.name}:{i + 1}: {line.strip()}")
    assert not undocumented, "declarations without a comment:\n" + "\n".join(undocumented)


@pytest.mark.parametrize("path", PROTO_FILES, ids=lambda p: p.name)
def test_enums_start_with_unspecified_and_package_is_versioned(path: Path):
    text = path.read_text()
    assert "package distillery.v1;" in text
    for name, body in re.findall(r"enum\s+(\w+)\s*\{([^}]*)\}", text):
        first = re.search(r"(\w+)\s*=\s*0;", body)
        assert first and first.group(1).endswith("_UNSPECIFIED"), f"enum {name} must start with *_UNSPECIFIED = 0"


def test_unary_rpcs_that_clients_call_in_bulk_have_streaming_twins():
    text = "\n".join(p.read_text() for p in PROTO_FILES)
    rpcs = dict(re.findall(r"rpc\s+(\w+)\((stream\s+)?\w+\)", text))
    for unary, twin in [("Check", "CheckStream"), ("Label", "LabelStream"), ("Score", "ScoreStream")]:
        assert unary in rpcs and twin in rpcs


def test_round_trip_of_every_public_message():
    article = article_pb2.Article(id="a1", title="T", text="body", url="https://x", metadata={"k": "v"})
    ref = common_pb2.FilterRef(name="uplifting", version=1)
    messages = [
        article,
        prefilter_pb2.CheckRequest(articles=[article], filters=[ref]),
        prefilter_pb2.Decision(article_id="a1", filter=ref, passed=False,
                               reasons=[prefilter_pb2.Reason(code="excluded:sports", matched="derby")]),
        oracle_pb2.LabelRequest(article=article, filter=ref, reason=oracle_pb2.LABEL_REASON_AUDIT),
        oracle_pb2.OracleLabel(article_id="a1", filter=ref, prompt_hash="0123456789ab",
                               dimensions=[oracle_pb2.DimensionLabel(name="agency", score=7.5, evidence="q")],
                               usage=common_pb2.Usage(input_tokens=10, output_tokens=5, cost_usd=0.001)),
        trainer_pb2.Job(job_id="j", filter=ref, state=trainer_pb2.JOB_STATE_RUNNING, metrics={"mae": 0.5}),
        scoring_pb2.ScoreResult(article_id="a1", filter=ref, overall=6.5, tier="medium",
                                dimensions=[scoring_pb2.DimensionScore(name="agency", raw=6.4, calibrated=6.5,
                                                                       lower=5.0, upper=8.0)],
                                stage=scoring_pb2.STAGE_SINGLE),
        events_pb2.CandidateArticle(article=article, passed_filters=[ref]),
        events_pb2.ModelPromoted(filter=ref, version="v1", previous_version=""),
    ]
    for message in messages:
        decoded = type(message).FromString(message.SerializeToString())
        assert decoded == message


def test_unknown_enum_value_is_preserved_for_forward_compatibility():
    raw = oracle_pb2.LabelRequest(reason=oracle_pb2.LABEL_REASON_AUDIT).SerializeToString()
    patched = raw.replace(bytes([0x18, oracle_pb2.LABEL_REASON_AUDIT]), bytes([0x18, 42]))
    decoded = oracle_pb2.LabelRequest.FromString(patched)
    assert decoded.reason == 42 and decoded.SerializeToString() == patched
