"""Models from the registry (:mod:`distillery.registry`), with the configured encoder backend for probes.

Roles: ``primary`` is the version the registry's pointer promotes for the filter. ``cheap`` (the first
stage of a cascade) is the newest registered ``lexical`` version for the same filter version, used only
when the promoted one is not itself lexical and the spec sets ``student.cascade_threshold``.

Probe and ``multi`` students are served through an encoder backend (torch or onnx) instead of their own
training-time encoder: same tokenisation and pooling, but no unbounded embedding cache, token-budget
batching, and the choice of runtime (with the vllm backend they keep their own encoder). Either way they
are :class:`~distillery_services.inference.models.SharedModel` s keyed by their encoder instance: every filter whose
model embeds with the same encoder and token budget shares one embedding pass per batch, and the views of
one ``multi`` model (same weight fingerprint) share one trunk pass. Ensembles report their members' spread.
Other kinds run their own ``predict``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from distillery_services.inference.backends.base import EncoderBackend, make_encoder
from distillery_services.inference.models import (
    CHEAP,
    PRIMARY,
    ModelRef,
    Prediction,
    SharedOutput,
    estimate_tokens,
)

from distillery.filters import FilterSpec

logger = logging.getLogger(__name__)


class BackendEncoder:
    """An encoder backend behind the training-time :class:`~distillery.students.encoder.Encoder` interface."""

    def __init__(self, backend: EncoderBackend):
        self.backend = backend

    @property
    def dim(self) -> int:
        return self.backend.dim

    def encode(self, texts: Sequence[str], progress=None) -> np.ndarray:
        return self.backend.embed(list(texts))


class RegistryModel:
    """A :class:`distillery.registry.LoadedModel` as a ServedModel (a SharedModel for probe and multi)."""

    def __init__(self, loaded, encoder: EncoderBackend | None = None, max_tokens: int = 512,
                 share_label: str = ""):
        self.loaded = loaded
        self.version = loaded.info.version_id
        self.kind = loaded.info.kind
        self.dimensions = list(loaded.info.dimensions)
        self.encoder = encoder
        self.max_tokens = max_tokens
        student = loaded.student
        # The multi model behind a view, whose full output (every filter's columns) views of it share.
        self._multi = getattr(student, "multi", None) if self.kind == "multi" else None
        # Views of one multi model (equal weights: equal fingerprint, whatever version ids they got) share it.
        self._multi_key = ("multi", self._multi.fingerprint()) if self._multi is not None else None
        self._own_encoder = None
        self.share_key = None
        self.share_label = ""
        if self.kind in ("probe", "multi") and hasattr(student, "predict_embeddings"):
            if encoder is None:  # the student's own (process-wide shared) training-time encoder
                self._own_encoder = self._multi.encoder if self._multi is not None else student.encoder
            embedder = encoder if encoder is not None else self._own_encoder
            self.share_key = ("encoder", id(embedder))
            self.share_label = share_label or _encoder_label(embedder)

    # -- SharedModel -----------------------------------------------------------------------------------
    def forward(self, texts: Sequence[str]) -> SharedOutput:
        """Embeddings of the batch: the part every probe/multi model on this encoder shares."""
        if self.encoder is not None:
            emb = self.encoder.embed(texts)
            return SharedOutput(emb, self.encoder.last_preprocess_seconds, self.encoder.last_inference_seconds)
        t0 = time.perf_counter()
        emb = self._own_encoder.encode(list(texts))
        return SharedOutput(emb, 0.0, time.perf_counter() - t0)

    def finish(self, shared: SharedOutput, rows: Sequence[int]) -> Prediction:
        t0 = time.perf_counter()
        rows = np.asarray(rows, dtype=np.int64)
        if self._multi is not None:
            # The trunk and every head once per batch and multi model, whichever view asks first.
            full = shared.memo.get(self._multi_key)
            if full is None:
                full = shared.memo[self._multi_key] = self._multi.predict_embeddings(shared.value)
            raw = full[np.ix_(rows, self.loaded.student.column_indices)]
        else:
            raw = self.loaded.student.predict_embeddings(shared.value[rows])
        raw = np.asarray(raw, dtype=np.float64).reshape(len(rows), -1)
        calibrated, lower, upper = self.loaded.calibration.apply(raw)
        head = time.perf_counter() - t0
        return self._with_expected_error(Prediction(raw, calibrated, lower, upper,
                                                    preprocess_seconds=shared.preprocess_seconds,
                                                    inference_seconds=shared.inference_seconds + head))

    # -- ServedModel -----------------------------------------------------------------------------------
    def predict(self, texts: Sequence[str]) -> Prediction:
        if self.share_key is not None:
            return self.finish(self.forward(texts), range(len(texts)))
        if hasattr(self.loaded.student, "predict_with_spread"):  # an ensemble: its members' disagreement too
            return self._with_expected_error(Prediction.from_tuple(self.loaded.predict_with_spread(list(texts))))
        return self._with_expected_error(Prediction.from_tuple(self.loaded.predict(list(texts))))

    def _with_expected_error(self, pred: Prediction) -> Prediction:
        """The version's expected error per row (what the ``uncertain`` flag ranks by), when it has an error model."""
        calibration = self.loaded.calibration
        model = getattr(calibration, "error_model", None)
        if model is not None and len(pred.raw):
            pred.expected_error = calibration.expected_error(pred.raw, pred.lower, pred.upper, pred.spread)
            pred.error_model = model
        return pred

    def cost(self, text: str) -> int:
        if self.encoder is not None:
            return self.encoder.cost(text)
        return estimate_tokens(text, self.max_tokens)


def _encoder_label(encoder) -> str:
    """``encoder:<name>/<head>+<tail>`` (a bounded metric label: one per served encoder and budget)."""
    name = getattr(encoder, "encoder", None) or getattr(encoder, "name", "encoder")
    return f"encoder:{name}/{encoder.head_tokens}+{encoder.tail_tokens}"


class RegistrySource:
    """ModelSource over a :class:`distillery.registry.ModelRegistry` folder or URI."""

    def __init__(self, root: Path | str, backend: str = "torch", device: str = "auto", quantize: bool = False,
                 onnx_dir: Path | None = None, max_batch_tokens: int = 8192, threads: int = 0,
                 cascade: bool = True, dtype: str = "auto", int8_max_drift: float | None = None,
                 cache_dir: Path | None = None):
        from distillery.registry import ModelRegistry

        # A remote registry (s3://...) is read through the same layer as the trainer writes it; versions are
        # copied once into cache_dir (immutable, so never re-downloaded).
        self.registry = ModelRegistry(root, cache_dir=cache_dir)
        self.int8_max_drift = INT8_MAX_MAE if int8_max_drift is None else float(int8_max_drift)
        self.backend = backend
        self.device = device
        self.quantize = quantize
        self.onnx_dir = onnx_dir
        self.max_batch_tokens = max_batch_tokens
        self.threads = threads
        self.cascade = cascade
        self.dtype = dtype
        self._encoders: dict[tuple, EncoderBackend] = {}
        self.last_int8_mae: float | None = None

    def promoted(self, spec: FilterSpec) -> dict[str, ModelRef]:
        info = self.registry.promoted(spec.name)
        if info is None:
            return {}
        if info.filter_version != spec.version:
            logger.warning("promoted model is for another filter version; not serving it",
                           extra={"fields": {"filter": spec.ref, "model_filter_version": info.filter_version,
                                             "version": info.version_id}})
            return {}
        refs = {PRIMARY: ModelRef(spec.name, PRIMARY, info.version_id, info.kind, {"info": info})}
        if self.cascade and spec.student.cascade_threshold is not None and info.kind != "lexical":
            cheap = [i for i in self.registry.list(spec.name)
                     if i.kind == "lexical" and i.filter_version == spec.version]
            if cheap:
                refs[CHEAP] = ModelRef(spec.name, CHEAP, cheap[0].version_id, "lexical", {"info": cheap[0]})
        return refs

    def load(self, spec: FilterSpec, ref: ModelRef) -> RegistryModel:
        info = ref.extra.get("info") or self.registry.get(spec.name, ref.version)
        loaded = self.registry.load(info)
        max_tokens = spec.student.truncation.max_tokens
        if info.kind in ("probe", "multi") and self.backend in ENCODER_BACKENDS:
            p = loaded.student.params
            key = (p["encoder"], int(p["head_tokens"]), int(p["tail_tokens"]))
            encoder = self._encoder(*key, quantize=self.quantize, spec=spec,
                                    samples=getattr(loaded, "samples", None))
            if self.quantize:
                encoder = self._guard_int8(spec, loaded, key, encoder)
            int8 = encoder is not self._encoders.get((*key, False))
            label = f"encoder:{self.backend}{'-int8' if int8 else ''}:{key[0]}/{key[1]}+{key[2]}"
            return RegistryModel(loaded, encoder, max_tokens, share_label=label)
        if info.kind in ("stack", "ensemble") and self.backend in ENCODER_BACKENDS:
            self._serve_probe_members(loaded.student)
        if info.kind == "finetune" and self.backend == "vllm":
            from distillery_services.inference.backends.vllm_backend import VllmModel

            return VllmModel.from_loaded(loaded, device=self.device)
        return RegistryModel(loaded, None, max_tokens)

    def _serve_probe_members(self, student) -> None:
        """Probe members of a stack or ensemble embed through this source's encoder backend (its runtime, its
        token-budget batching, weights shared with other models) instead of their training-time encoder,
        whose content-hash cache would grow without bound in a long-running server."""
        for member in getattr(student, "members", []):
            if getattr(member, "kind", "") == "probe":
                p = member.params
                backend = self._encoder(p["encoder"], int(p["head_tokens"]), int(p["tail_tokens"]))
                member._encoder = BackendEncoder(backend)

    def _encoder(self, name: str, head: int, tail: int, quantize: bool = False,
                 spec: FilterSpec | None = None, samples: Sequence[str] | None = None) -> EncoderBackend:
        key = (name, head, tail, quantize)
        if key not in self._encoders:  # probes of several filters share one encoder (and its weights)
            calibration = None
            if quantize and self.backend == "openvino":  # static int8 calibrates on texts like the filter's
                calibration = calibration_texts(spec, samples) if spec is not None else None
            self._encoders[key] = make_encoder(
                self.backend, name, head, tail, device=self.device, max_batch_tokens=self.max_batch_tokens,
                onnx_dir=self.onnx_dir, quantize=quantize, threads=self.threads,
                dtype=self.dtype, calibration_texts=calibration)
        return self._encoders[key]

    def _guard_int8(self, spec: FilterSpec, loaded, key: tuple, int8: EncoderBackend) -> EncoderBackend:
        """Serve the int8 encoder only if this head's scores stay within ``int8_max_drift`` of fp32 on probe
        texts (default INT8_MAX_MAE)."""
        fp32 = self._encoder(*key, quantize=False)
        samples = getattr(loaded, "samples", None)
        mae = int8_agreement(spec, loaded.student, fp32, int8, texts=gate_texts(spec, samples))
        on = "held-out articles" if samples and len(samples) >= MIN_SAMPLES else "synthetic texts"
        self.last_int8_mae = mae
        if mae <= self.int8_max_drift:
            logger.info("int8 encoder accepted", extra={"fields": {"filter": spec.ref, "mae": round(mae, 4), "on": on}})
            return int8
        logger.warning("int8 encoder moves this head's scores too much; serving the unquantised encoder instead",
                       extra={"fields": {"filter": spec.ref, "mae": round(mae, 4), "limit": self.int8_max_drift,
                                         "on": on}})
        return fp32


INT8_MAX_MAE = 0.02
ENCODER_BACKENDS = ("torch", "onnx", "openvino")
CALIBRATION_TEXTS = 64


MIN_SAMPLES = 16  # fewer held-out texts than this: synthetic texts instead


def calibration_texts(spec: FilterSpec, samples: Sequence[str] | None) -> list[str]:
    """What int8 quantisation calibrates on: the first half of the version's held-out texts (real articles),
    else the filter's synthetic corpus. The gate checks on the other half, never on calibration texts."""
    if samples and len(samples) >= MIN_SAMPLES:
        return list(samples[: len(samples) // 2])
    return synthetic_texts(spec, CALIBRATION_TEXTS, seed=11)


def gate_texts(spec: FilterSpec, samples: Sequence[str] | None) -> list[str]:
    """What the int8 gate compares on: the second half of the held-out texts, else synthetic texts."""
    if samples and len(samples) >= MIN_SAMPLES:
        return list(samples[len(samples) // 2:])
    return synthetic_texts(spec, 48, seed=7)


def synthetic_texts(spec: FilterSpec, n: int, seed: int) -> list[str]:
    """Texts from the filter's synthetic corpus, composed as students see them."""
    from distillery.students.manifest import compose_text
    from distillery.synthetic import generate

    return [compose_text(r["title"], r.get("text") or r.get("content", "")) for r in generate(spec, n, seed=seed)]


def int8_agreement(spec: FilterSpec, probe, fp32: EncoderBackend, int8: EncoderBackend, n: int = 48,
                   texts: Sequence[str] | None = None) -> float:
    """Mean absolute difference (0-10 scale) of a probe's scores through the two encoders on ``texts``
    (default: ``n`` synthetic texts, not the synthetic calibration ones)."""
    texts = list(texts) if texts else synthetic_texts(spec, n, seed=7)
    a = np.clip(probe.predict_embeddings(fp32.embed(texts)), 0, 10)
    b = np.clip(probe.predict_embeddings(int8.embed(texts)), 0, 10)
    return float(np.abs(a - b).mean())
