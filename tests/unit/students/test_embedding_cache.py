"""The training encoder pass: embeddings cached by content hash within an encoder namespace (name, weights,
runtime and precision, token budget) on a folder or S3, so retraining re-embeds only new articles; the int8 drift
gate keeps quantised embeddings only when a head's scores barely move."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest

from distillery.students.encoder import Encoder, embed_gated
from distillery.students.model_cache import resolve_model

TEXTS = ["Solar farm opens in the valley.", "City adds bike lanes downtown.", "Bank reports quarterly profit."]


def _encoder(cache, **kw) -> Encoder:
    return Encoder("all-MiniLM-L6-v2", kw.pop("head_tokens", 16), 8, cache_dir=cache, **kw)


def test_a_new_encoder_on_the_same_cache_embeds_only_new_texts(tmp_path):
    first = _encoder(tmp_path)
    X = first.encode(TEXTS)
    assert first.embedded == 3
    again = _encoder(tmp_path)  # another job, same storage: the texts come from the cache
    Y = again.encode([*TEXTS, "A new article about wind power."])
    assert again.embedded == 1
    np.testing.assert_array_equal(Y[:3], X)
    assert np.allclose(np.linalg.norm(Y, axis=1), 1.0, atol=1e-5)


def test_changing_the_encoder_or_its_budget_starts_an_empty_namespace(tmp_path):
    base = _encoder(tmp_path)
    base.encode(TEXTS)
    assert _encoder(tmp_path, head_tokens=24).encode(TEXTS) is not None
    assert _encoder(tmp_path, bf16=True)._cache == {}  # another precision: its own embeddings
    # the same name with other weights (a replaced model): the fingerprint changes, nothing stale is reused
    original = resolve_model("all-MiniLM-L6-v2")
    replaced = tmp_path / "replaced-minilm"
    replaced.mkdir()
    for f in Path(original).iterdir():
        if f.name != "config.json":
            (replaced / f.name).symlink_to(f)
    (replaced / "config.json").write_text((Path(original) / "config.json").read_text()
                                          .replace("}", ', "note": "retrained"}', 1))
    other = Encoder(str(replaced), 16, 8, cache_dir=tmp_path)
    assert other.fingerprint != base.fingerprint and other.namespace != base.namespace
    assert other._cache == {}
    assert len({base.namespace, _encoder(tmp_path, head_tokens=24).namespace, other.namespace}) == 3
    assert _encoder(tmp_path)._cache.keys() == base._cache.keys()  # the original namespace is intact


def test_the_cache_lives_on_s3(s3_server, monkeypatch):
    pytest.importorskip("s3fs")
    for key, value in s3_server.items():
        monkeypatch.setenv(key, value)
    uri = f"s3://models/embeddings-{uuid.uuid4().hex[:8]}"
    first = _encoder(uri)
    X = first.encode(TEXTS[:2])
    again = _encoder(uri)
    np.testing.assert_array_equal(again.encode(TEXTS[:2]), X)
    assert again.embedded == 0
    import fsspec

    fs, root = fsspec.core.url_to_fs(uri)
    assert [p.rsplit("/", 1)[-1].endswith(".npz") for p in fs.ls(f"{root}/{first.namespace}")] == [True]


class _Quantised:
    """An int8 encoder whose embeddings differ from the unquantised ones by ``noise`` (the gate's input)."""

    quantised = True

    def __init__(self, noise: float):
        self.noise = noise
        self.reference = _Reference()

    def encode(self, texts, progress=None):
        rng = np.random.default_rng(len(texts))
        return self.reference.encode(texts) + self.noise * rng.standard_normal((len(texts), 8))

    def unquantised(self):
        return self.reference


class _Reference:
    quantised = False

    def encode(self, texts, progress=None):
        return np.stack([np.random.default_rng(abs(hash(t)) % 2**32).standard_normal(8) for t in texts])


@pytest.mark.parametrize(("noise", "kept"), [(1e-4, True), (0.5, False)])
def test_int8_embeddings_are_kept_only_within_the_drift_gate(noise, kept):
    texts = [f"article {i}" for i in range(60)]
    y = np.random.default_rng(0).uniform(0, 10, (60, 2))
    encoder = _Quantised(noise)
    X, Xv, used = embed_gated(encoder, texts[:50], y[:50], texts[50:])
    assert (used is encoder) == kept
    assert X.shape == (50, 8) and Xv.shape == (10, 8)
    if not kept:  # redone unquantised: exactly the reference embeddings
        np.testing.assert_array_equal(X, encoder.reference.encode(texts[:50]))


def test_the_openvino_runtime_embeds_like_torch(tmp_path):
    """``auto`` trains on OpenVINO (fp32 or bf16 by CPU): the same embeddings as torch, in their own namespace."""
    pytest.importorskip("openvino")
    import torch

    from distillery.students.encoder_runtime import resolve_runtime

    assert resolve_runtime("auto")[0] == ("torch" if torch.cuda.is_available() else "openvino")
    assert resolve_runtime("onnx", True) == ("onnx", "int8")
    with pytest.raises(ValueError, match="need runtime onnx"):
        resolve_runtime("openvino", True)
    torch_enc, ov_enc = _encoder(tmp_path), _encoder(tmp_path, runtime="openvino")
    assert ov_enc.namespace != torch_enc.namespace
    a, b = torch_enc.encode([*TEXTS, "x " * 40]), ov_enc.encode([*TEXTS, "x " * 40])
    cosine = (a * b).sum(axis=1)
    assert cosine.min() > (0.999 if ov_enc.precision == "bf16" else 0.99999), cosine
