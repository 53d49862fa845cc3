"""The ScoreBatch reply written as bytes (services/inference/wire.py) is the message the servicer's field-by-field
fill builds: every field, every result, in order."""

from __future__ import annotations

import numpy as np
from distillery_services.inference.engine import FilterResult
from distillery_services.inference.servicer import fill_response
from distillery_services.inference.wire import batch_response_bytes

from distillery.v1 import scoring_pb2


def _result(rng, article_id: str, name: str, dims: list[str], **fields) -> FilterResult:
    d = len(dims)
    values = {k: rng.uniform(-1, 11, d) for k in ("raw", "calibrated", "lower", "upper")}
    base = dict(article_id=article_id, filter_name=name, filter_version=3, dimensions=dims, overall=float(rng.uniform(0, 10)),
                tier="medium", gatekeepers_applied=(), uncertain=False, model_version="20261206T085855-3ebcba",
                stage="single", queue_seconds=0.001, preprocess_seconds=0.0, inference_seconds=0.25,
                total_seconds=1.5, spread=None, **values)
    base.update(fields)
    return FilterResult(**base)


def test_batch_reply_bytes_equal_the_field_by_field_message():
    rng = np.random.default_rng(0)
    small = ["climate", "evidence"]
    wide = [f"dimension_{'x' * 140}_{i}" for i in range(3)]  # names long enough for two-byte lengths
    ids = ["a1", "ünïcode-id-🌍", "c" * 300, "d4"]
    per_article = [
        [_result(rng, ids[0], "sustainability", small), _result(rng, ids[0], "uplifting", wide, stage="cheap")],
        [_result(rng, ids[1], "sustainability", small, uncertain=True, spread=rng.uniform(0, 2, 2),
                 gatekeepers_applied=("evidence_gate", ""), stage="expensive", filter_version=0, overall=0.0),
         _result(rng, ids[1], "uplifting", wide, tier="", model_version="")],
        [_result(rng, ids[2], "sustainability", small, queue_seconds=0.0, total_seconds=0.0)],
        [],
    ]
    expected = scoring_pb2.ScoreBatchResponse()
    for article_id, results in zip(ids, per_article, strict=True):
        fill_response(expected.responses.add(), article_id, results)

    got = scoring_pb2.ScoreBatchResponse.FromString(batch_response_bytes(ids, per_article))

    assert got == expected
    assert [r.filter.name for r in got.responses[0].results] == ["sustainability", "uplifting"]  # filter order kept
    assert list(got.responses[1].results[0].gatekeepers_applied) == ["evidence_gate", ""]
    assert got.SerializeToString(deterministic=True) == expected.SerializeToString(deterministic=True)
