"""Fuzz target: the filter spec loader (``filter.yaml`` bytes of a package with a valid prompt).

Run: ``python tests/fuzz/fuzz_filter_spec.py -runs=5000 [corpus_dir]``. The loader must answer any bytes with a
FilterSpec or a FilterSpecError (a message a user can act on), never another exception.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["distillery"]):
    from distillery.filters import FilterSpecError
    from distillery.filters.loader import PROMPT_FILE, SPEC_FILE, load_filter

PROMPT = "Rate it.\n{{dimensions}}\n{{output_schema}}\n{{article}}\n"
# A small valid spec: the seed of the corpus (the fuzzer mutates it), for the package folder tiny/v1.
SEED = """name: tiny
version: 1
description: a tiny test filter
dimensions:
- {name: climate, weight: 0.5, description: climate, scale: {"0-2": a, "3-4": b, "5-6": c, "7-8": d, "9-10": e}}
- {name: evidence, weight: 0.5, description: evidence, scale: {"0-2": a, "3-4": b, "5-6": c, "7-8": d, "9-10": e}}
tiers:
- {name: low, min_overall: 0}
- {name: high, min_overall: 7}
oracle: {default: synthetic}
student: {kind: lexical, truncation: {head_tokens: 48, tail_tokens: 16}}
"""
# DISTILLERY_FUZZ_DIR: a folder the caller removes (the CI test passes its tmp_path).
_work = Path(os.environ.get("DISTILLERY_FUZZ_DIR") or tempfile.mkdtemp(prefix="distillery-fuzz-spec-"))
_package = _work / "tiny" / "v1"
_package.mkdir(parents=True, exist_ok=True)
(_package / PROMPT_FILE).write_text(PROMPT, encoding="utf-8")


def test_one(data: bytes) -> None:
    (_package / SPEC_FILE).write_bytes(data)
    try:
        spec = load_filter(_package)
    except FilterSpecError as exc:
        assert str(exc), "a FilterSpecError without a message"
        return
    assert spec.name == "tiny" and spec.version == 1  # the folder's name and version, as checked


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--write-seeds":  # the CI test's corpus (not a libFuzzer flag)
        for i, seed in enumerate([SEED.encode()]):
            (Path(sys.argv[2]) / f"seed-{i}").write_bytes(seed)
        return
    atheris.Setup(sys.argv, test_one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
