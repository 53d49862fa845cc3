"""The filter workflow of the first design, as a new user types it, in an empty folder:

    distillery new-filter --name belonging --dimensions 6
    distillery score --filter belonging/v1 --articles 1000
    distillery train --filter belonging/v1
    distillery evaluate --filter belonging/v1

exactly these commands and no other flag (score labels with the synthetic oracle, the scaffold's default).
Only DISTILLERY_HOME is set, so that the test's state stays in its temporary folder. stderr is a pipe, as in
CI logs: long steps must print progress lines, and no misleading tokenizer warning.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(1200)]

CLI = Path(sys.executable).parent / "distillery"


def test_new_filter_score_train_evaluate_from_an_empty_folder(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISTILLERY_")}
    env["DISTILLERY_HOME"] = str(tmp_path / ".distillery")

    def run(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
        out = subprocess.run([str(CLI), *args], cwd=tmp_path, env=env, stdin=subprocess.DEVNULL,
                             capture_output=True, text=True, timeout=timeout, check=False)
        assert out.returncode == 0, f"distillery {' '.join(args)} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
        assert "Traceback" not in out.stderr
        assert "longer than the specified maximum sequence length" not in out.stderr
        return out

    run("new-filter", "--name", "belonging", "--dimensions", "6")
    package = tmp_path / "filters" / "belonging" / "v1"
    assert (package / "filter.yaml").is_file() and (package / "prompt.md").is_file()
    assert "OK belonging/v1" in " ".join(run("validate", "belonging/v1").stdout.split())

    scored = " ".join(run("score", "--filter", "belonging/v1", "--articles", "1000").stdout.split())
    assert "labelled 1,000" in scored and "prefiltered out 0" in scored  # no prefilter rule nobody asked for

    trained = run("train", "--filter", "belonging/v1")
    summary = " ".join(trained.stdout.split())
    assert "registered belonging/v1" in summary
    assert "cross-validated" in summary or "held-out split" in summary  # it says how it was evaluated
    progress_lines = [line for line in trained.stderr.splitlines() if "train belonging/v1:" in line]
    assert len(progress_lines) >= 3, trained.stderr[-2000:]

    evaluated = " ".join(run("evaluate", "--filter", "belonging/v1").stdout.split())
    assert "belonging/v1 model" in evaluated and "MAE" in evaluated
    assert (tmp_path / "build" / "eval" / "report.md").is_file()
    assert not (Path(__file__).resolve().parents[2] / "filters" / "belonging").exists()
