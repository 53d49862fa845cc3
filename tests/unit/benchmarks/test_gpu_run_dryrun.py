"""The prepared GPU run's CPU dry run: registry round trip, torch serving paths, results written, and the
vLLM parts skipped with the reason where vLLM cannot run (the training part runs in the full dry run,
``benchmarks/gpu/run_gpu.py --dry-run``; the finetune student's Ray tests cover it here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gpu_run")
    from distillery.filters import load_filter

    spec = load_filter(REPO / "filters" / "sustainability" / "v1")
    dims = spec.dimension_names
    lines = []
    for split, n in (("train", 8), ("val", 4), ("test", 6)):
        for i in range(n):
            text = f"Article {i} on solar storage and grid costs. " * (3 + i)
            lines.append(json.dumps({"split": split, "text": text, "targets": [float(i % 10)] * len(dims)}))
    (folder / "articles.jsonl").write_text("\n".join(lines) + "\n")
    (folder / "meta.json").write_text(json.dumps({"filter": spec.ref, "dimensions": dims}))
    from transformers import AutoTokenizer

    from distillery.students.encoder import resolve_encoder

    AutoTokenizer.from_pretrained(resolve_encoder("all-MiniLM-L6-v2")).save_pretrained(folder / "tokenizer")
    return folder


def test_dry_run_serves_the_registered_student_with_torch_and_skips_vllm_with_the_reason(data, tmp_path):
    run = subprocess.run([sys.executable, str(REPO / "benchmarks/gpu/run_gpu.py"), "--dry-run", "--data", str(data),
                          "--out", str(tmp_path), "--parts", "register,vllm,agree,torch"],
                         check=False, capture_output=True, text=True, timeout=240, env=_env())
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads((tmp_path / "gpu_run_cpu_dryrun.json").read_text())
    parts = result["parts"]
    assert parts["register"]["status"] == "ok"
    assert "random weights" in parts["register"]["student"]  # no training part asked for
    assert parts["vllm"]["status"] == "skipped" and "vllm" in parts["vllm"]["reason"]
    assert parts["agree"]["status"] == "skipped"
    backends = [r["backend"] for r in parts["torch"]["runs"]]
    assert backends == ["torch-student (fp32)", "torch-eager fp32"]
    assert all(r["articles_per_s"] > 0 and 0 < r["fraction_of_limit"] for r in parts["torch"]["runs"])
    assert result["limit"]["tokens"] == 64 and result["limit"]["non_embedding_params"] > 0
    md = (tmp_path / "gpu_run_cpu_dryrun.md").read_text()
    assert "| vllm | skipped |" in md and "torch-eager fp32" in md


def test_without_a_gpu_the_real_run_refuses_and_says_how_to_check_on_cpu(data, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible: the real run would start")
    run = subprocess.run([sys.executable, str(REPO / "benchmarks/gpu/run_gpu.py"), "--data", str(data), "--out",
                          str(tmp_path)], check=False, capture_output=True, text=True, timeout=120, env=_env())
    assert run.returncode == 2 and "--dry-run" in run.stderr and "Traceback" not in run.stderr


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k != "OUT"}
