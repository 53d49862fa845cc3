"""The streaming demo at small size: broker + four processes, cold start, one active-learning round."""

from __future__ import annotations

import pytest

from distillery.bus import topics as t
from distillery.stream_demo import run_stream_demo

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_stream_demo_flows_end_to_end_and_runs_an_active_learning_round(tmp_path, filters_dir):
    result = run_stream_demo("uplifting", count=420, seed=5, student_kind="lexical", state_dir=tmp_path / "demo",
                             filters_dir=filters_dir, timeout=200)
    counts = result.topic_counts
    # Nothing lost: every ingested article was decided, every candidate scored.
    assert counts[t.ARTICLES_RAW] == result.ingested
    assert counts[t.ARTICLES_CANDIDATES] + counts[t.ARTICLES_REJECTED] == result.ingested
    assert counts[t.ARTICLES_SCORED] == counts[t.ARTICLES_CANDIDATES]
    assert counts[t.dlq(t.ARTICLES_RAW)] == counts[t.dlq(t.ORACLE_REQUESTS)] == 0
    # The loop: training labels first, then uncertain/audit labels from inference, then a second round.
    assert result.labels_by_reason.get("training", 0) > 50
    assert result.labels_by_reason.get("uncertain", 0) + result.labels_by_reason.get("audit", 0) > 0
    # The uncertain flag fires on the spec's share (10%) plus the 5% audit sample, not on half the stream.
    assert 0 < result.sent_to_oracle < 0.4 * result.student_scored and result.oracle_calls_saved > 0
    assert len(result.rounds) >= 2 and result.rounds[0].promoted
    assert result.rounds[1].compared_with is not None  # the candidate was compared on the frozen test split
    # The served student beats the mean predictor on held-out articles it never saw.
    before = sum(result.mae_before.values()) / len(result.mae_before)
    after = sum(result.mae_after.values()) / len(result.mae_after)
    assert before < 0.85 * result.mean_predictor_mae and after < 0.85 * result.mean_predictor_mae
    assert result.articles_per_second > 0 and result.latency_p99_ms >= result.latency_p50_ms > 0
