"""Helpers the benchmark scripts share: dataset paths, result writing (JSON + markdown table)."""

from __future__ import annotations

import hashlib
import json
import platform
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
SHARED = REPO.parent / "shared" / "datasets" / "origin"
SUSTAINABILITY = SHARED / "oracle" / "sustainability__v1__bulk-labeling__gemini.jsonl"


def machine() -> dict:
    import os

    return {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()}


def group_split(key: str, seed: int, shares=(0.8, 0.1, 0.1)) -> str:
    """Deterministic split by a group key (URL): the same group always lands in the same split."""
    h = int(hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    if h < shares[0]:
        return "train"
    return "val" if h < shares[0] + shares[1] else "test"


def write_results(name: str, payload: dict, headers: Sequence[str], rows: Sequence[Sequence], command: str) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": name, "command": command, "machine": machine(),
               "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **payload}
    (RESULTS / f"{name}.json").write_text(json.dumps(payload, indent=2))
    lines = [f"# {name}", "", f"`{command}`", "", "| " + " | ".join(headers) + " |",
             "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    (RESULTS / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return RESULTS / f"{name}.json"
