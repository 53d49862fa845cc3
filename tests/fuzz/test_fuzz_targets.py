"""Bounded runs of the atheris fuzz targets (tests/fuzz/fuzz_*.py): a few thousand inputs each, in CI.

Each target runs as its own process (libFuzzer exits the process when done) from a seed corpus of valid
inputs; a crash (an exception other than the documented refusals) fails the run with the input that caused
it in the output. Longer runs: ``python tests/fuzz/fuzz_envelopes.py -max_total_time=600 CORPUS``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("atheris")
HERE = Path(__file__).resolve().parent


@pytest.mark.parametrize(("target", "runs", "max_len"), [("fuzz_envelopes", 5000, 4096),
                                                         ("fuzz_filter_spec", 2000, 2048)])
def test_fuzz_target_survives_a_bounded_run(target, runs, max_len, tmp_path):
    env = {**os.environ, "DISTILLERY_FUZZ_DIR": str(tmp_path / "work")}
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    subprocess.run([sys.executable, str(HERE / f"{target}.py"), "--write-seeds", str(corpus)], check=True,
                   capture_output=True, timeout=120, env=env)
    assert list(corpus.iterdir()), "no seed inputs"
    proc = subprocess.run(
        [sys.executable, str(HERE / f"{target}.py"), f"-runs={runs}", f"-max_len={max_len}", "-seed=1",
         f"-artifact_prefix={tmp_path}/", str(corpus)],
        check=False, capture_output=True, text=True, timeout=280, env=env, cwd=tmp_path)
    tail = "\n".join(line for line in proc.stderr.splitlines() if not line.startswith("INFO: Instrumenting"))[-3000:]
    assert proc.returncode == 0, tail
    assert f"Done {runs} runs" in proc.stderr, tail
