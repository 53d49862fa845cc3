"""``distillery train --transfer-from``: user errors are exit 2 with a message that says what to do."""

from __future__ import annotations

import sys
from pathlib import Path

from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parents[1] / "trainer"))  # tests/unit/trainer/helpers.py
from helpers import write_filter, write_labels

from distillery.cli.main import app


def test_transfer_from_errors_say_what_to_fix(tmp_path):
    filters = write_filter(tmp_path / "filters")
    write_filter(filters, name="newcomer")
    labels = write_labels(tmp_path / "labels.jsonl", n=60, seed=5)
    common = ["--state-dir", str(tmp_path / "state"), "--filters-dir", str(filters), "--labels", str(labels)]
    runner = CliRunner()
    for args, needle in [
        (["--filter", "newcomer", "--transfer-from", "tiny"], "no promoted model of tiny to transfer from"),
        (["--filter", "newcomer", "--kind", "transfer"], "--transfer-from OLD"),
        (["--filter", "newcomer", "--filter", "tiny", "--transfer-from", "tiny"], "warm-starts one filter"),
    ]:
        result = runner.invoke(app, ["train", *args, *common])
        assert result.exit_code == 2, (args, result.output)
        assert needle in result.output and "Traceback" not in result.output, result.output
