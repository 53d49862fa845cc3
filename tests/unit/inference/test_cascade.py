import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from distillery_services.inference.cascade import medium_threshold, pick_threshold, tune

from distillery.filters import FilterCatalog

REPO = Path(__file__).resolve().parents[3]
FILTERS = REPO / "filters"


@pytest.fixture(scope="module")
def spec():
    return FilterCatalog.load(FILTERS, ["uplifting"]).get("uplifting")


def test_pick_threshold_respects_target():
    cheap = np.array([0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0])
    positive = np.array([False, False, False, True, True, True, True, True, True, True])
    t, fnr = pick_threshold(cheap, positive, 0.0)
    assert t == 3.0 and fnr == 0.0
    t, fnr = pick_threshold(cheap, positive, 0.15)  # one of 7 positives may be missed
    assert t == 4.0 and fnr == pytest.approx(1 / 7)
    with pytest.raises(ValueError, match="no medium-or-above"):
        pick_threshold(cheap, np.zeros(10, bool), 0.1)


def test_tune_measures_speedup_with_real_timings(spec, kit):
    n = 60
    texts = [("good " * (i % 5)) + f"article {i}" for i in range(n)]
    targets = np.array([[min(10, 2.0 * (i % 5))] * len(spec.dimensions) for i in range(n)])
    cheap = kit.KeywordModel(spec.dimension_names, version="c")
    expensive = kit.KeywordModel(spec.dimension_names, version="e", delay=0.05)
    report = tune(spec, cheap, expensive, texts, targets, target_fnr=0.0)
    assert report.fnr == 0.0 and report.medium_min == medium_threshold(spec)
    assert 0 < report.escalated_share < 1
    # Both timings are measured runs (no timing goal asserted here; the speed-up is reported, not checked).
    assert report.cascade_seconds > 0 and report.expensive_seconds > 0
    assert report.speedup == pytest.approx(report.expensive_seconds / report.cascade_seconds)
    assert expensive.calls == 8 + n + round(report.escalated_share * n)  # warm-up, alone, escalated only


@pytest.mark.slow
def test_cli_tune_on_registry(spec, tmp_path):
    from distillery.calibration import Calibration
    from distillery.registry import ModelRegistry
    from distillery.students import compose_text, make_student
    from distillery.synthetic import generate, scores_of

    records = list(generate(spec, 200, seed=2))
    texts = [compose_text(r["title"], r["text"]) for r in records]
    y = np.array([[scores_of(r)[d] for d in spec.dimension_names] for r in records])
    registry = ModelRegistry(tmp_path / "registry")
    cheap = make_student("lexical", spec.dimension_names, char_ngram_max=0, word_ngram_max=1).fit(texts, y)
    exp = make_student("lexical", spec.dimension_names).fit(texts, y)
    ci = registry.register(spec, cheap, Calibration.identity(spec.dimension_names, 1.0))
    ei = registry.register(spec, exp, Calibration.identity(spec.dimension_names, 1.0))
    registry.promote(spec.name, ei.version_id)
    out = tmp_path / "report.json"
    cmd = [sys.executable, "-m", "distillery.cli.main", "cascade", "tune", "--filter", "uplifting",
           "--registry", str(tmp_path / "registry"), "--cheap", ci.version_id, "--count", "150",
           "--target-fnr", "0.05", "--filters-dir", str(FILTERS), "--json", str(out)]
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=120, cwd=REPO,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    assert report["fnr"] <= 0.05 and report["expensive_version"] == ei.version_id
    assert "speed-up" in proc.stdout
    bad = subprocess.run(cmd[:-2] + ["--cheap", ei.version_id], check=False, capture_output=True, text=True, timeout=60,
                         cwd=REPO)
    assert bad.returncode == 2 and "same version" in bad.stderr and "Traceback" not in bad.stderr
