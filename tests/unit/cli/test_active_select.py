"""`distillery active-select` through the real app: picks pool articles to label, spread over the pool."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from distillery.cli.main import app

FILTER = Path(__file__).resolve().parents[3] / "filters" / "sustainability" / "v1"
DIMS = ["climate_impact_potential", "technical_credibility", "economic_viability", "deployment_readiness",
        "systemic_impact", "justice_equity", "innovation_quality", "evidence_strength"]
TOPICS = {"solar": "solar panels grid storage emissions renewable", "sport": "football match goal league coach",
          "bank": "bank rates inflation loans markets", "wind": "wind turbines offshore farm blades power"}


def _write(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def _article(rng, topic: str, i: int, scored: bool) -> dict:
    words = TOPICS[topic].split()
    record = {"id": f"{topic}-{i}", "title": f"{topic} news {i}",
              "text": " ".join(rng.choice(words, size=30)) + f" item{i}"}
    if scored:
        level = {"solar": 7.0, "wind": 6.0, "bank": 2.0, "sport": 0.0}[topic]
        record["dimension_scores"] = {d: float(np.clip(level + rng.normal(0, 1), 0, 10)) for d in DIMS}
    return record


def _select(tmp_path, *flags: str) -> list[dict]:
    """8 picks from a pool of four topics, given labels of three (wind is new)."""
    rng = np.random.default_rng(0)
    labelled = _write(tmp_path / "labelled.jsonl",
                      [_article(rng, t, i, True) for t in ("solar", "sport", "bank") for i in range(20)])
    pool = _write(tmp_path / "pool.jsonl", [_article(rng, t, 100 + i, False) for t in TOPICS for i in range(15)])
    out = tmp_path / "picked.jsonl"
    result = CliRunner().invoke(app, ["active-select", "--filter", str(FILTER), "--labelled", str(labelled),
                                      "--pool", str(pool), "--count", "8", "--out", str(out), *flags])
    assert result.exit_code == 0, result.output
    picked = [json.loads(line) for line in out.read_text().splitlines()]
    assert len({p["id"] for p in picked}) == 8
    assert all(p["expected_error"] >= 0 for p in picked)
    return picked


def test_active_select_picks_distinct_pool_articles_from_every_region(tmp_path):
    picked = _select(tmp_path, "--no-committee")
    assert {p["id"].split("-")[0] for p in picked} == set(TOPICS)  # spread over all four kinds of article


def test_the_encoder_committee_spends_the_labels_where_meaning_and_vocabulary_disagree(tmp_path):
    """Wind turbines share no word with the labelled articles, so the lexical students guess the average; the
    encoder member places them near the (high-scoring) solar articles and disagrees: the committee asks about
    the renewables only, and about the new topic most, instead of spreading over football and banking too."""
    with_committee = [p["id"].split("-")[0] for p in _select(tmp_path)]
    without = [p["id"].split("-")[0] for p in _select(tmp_path, "--no-committee")]
    assert set(with_committee) <= {"solar", "wind"} and with_committee.count("wind") >= 3
    assert {"bank", "sport"} & set(without)


def test_active_select_rejects_an_unknown_strategy(tmp_path):
    empty = _write(tmp_path / "x.jsonl", [])
    result = CliRunner().invoke(app, ["active-select", "--filter", str(FILTER), "--labelled", str(empty),
                                      "--pool", str(empty), "--strategy", "greedy"])
    assert result.exit_code != 0
    assert isinstance(result.exception, ValueError | SystemExit)
