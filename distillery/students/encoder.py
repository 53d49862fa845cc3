"""Frozen text encoders with head+tail token truncation, mean pooling and an embedding cache.

The cache is keyed by the content hash of the exact input text within a namespace of the encoder (name, weights
fingerprint, runtime and precision, token budget), so an article is embedded once, whatever job or student asks
for it, and retraining on mostly the same articles embeds only the new ones. With ``cache_dir`` (a folder or an
fsspec URI such as ``s3://bucket/embeddings``) the cache persists as ``.npz`` shards.
"""

from __future__ import annotations

import hashlib
import io
import logging
import threading
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

CHARS_PER_TOKEN_BOUND = 12  # cut characters before tokenising: no token is longer than this on average
MIN_TEXTS_PER_PART = 64  # smaller batches of a distributed encoder pass cost more in scheduling than they save
INT8_MAX_DRIFT = 0.02  # the inference service's int8 gate: largest mean score drift (0-10 scale) accepted
GATE_TEXTS = 48  # texts the int8 drift is measured on
GATE_SAMPLE = 512  # training texts the gate's ridge head is fitted on


def resolve_encoder(name: str) -> str:
    """The local folder of an encoder or base model (bundled MiniLM, a path, or the model cache; never a hub)."""
    from distillery.students.model_cache import resolve_model

    return resolve_model(name)


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


class Encoder:
    """Embeds texts with a frozen HF encoder (mean pooling over tokens, L2-normalised) on a runtime of
    :mod:`distillery.students.encoder_runtime` (torch, ONNX Runtime, OpenVINO; ``auto``: the fastest here).

    The embedding cache is keyed by the text's content hash within a *namespace*: the encoder's name, its weights'
    fingerprint, the runtime and precision, and the token budget. Changing any of them starts an empty namespace
    (never a stale hit). ``cache_dir`` may be a folder or an fsspec URI (``s3://bucket/embeddings``, the registry's
    storage), shared by every job and node that trains on the same articles.
    """

    def __init__(self, name: str = "all-MiniLM-L6-v2", head_tokens: int = 128, tail_tokens: int = 128,
                 batch_size: int = 32, cache_dir: Path | str | None = None, device: str | None = None,
                 bf16: bool = False, runtime: str = "torch", int8: bool | str = False):
        from distillery.students.encoder_runtime import model_fingerprint, resolve_runtime

        self.name = name
        self.head_tokens = int(head_tokens)
        self.tail_tokens = int(tail_tokens)
        self.batch_size = int(batch_size)
        self.bf16 = bool(bf16)
        self.runtime_setting, self.int8_setting = runtime, int8
        self.backend, self.precision = resolve_runtime(runtime, int8, self.bf16)
        self._device = device
        self._model = None
        self._tokenizer = None
        self._lock = threading.Lock()
        self._cache: dict[str, np.ndarray] = {}
        self.embedded = 0  # texts this instance ran through the model (the rest came from the cache)
        self.fingerprint = model_fingerprint(resolve_encoder(name))
        self.runtime_id = f"{self.backend}-{self.precision}"
        self.namespace = hashlib.sha256(f"{name}|{self.fingerprint}|{self.runtime_id}|{self.head_tokens}|"
                                        f"{self.tail_tokens}".encode()).hexdigest()[:16]
        self.store = EmbeddingStore(f"{str(cache_dir).rstrip('/')}/{self.namespace}") if cache_dir else None
        if self.store:
            self._cache.update(self.store.load())

    @property
    def quantised(self) -> bool:
        return self.precision == "int8"

    def unquantised(self) -> Encoder:
        """The same encoder without int8 (same runtime, its own cache namespace)."""
        return shared_encoder(self.name, self.head_tokens, self.tail_tokens, self.store.root.rsplit("/", 1)[0]
                              if self.store else None, batch_size=self.batch_size, bf16=self.bf16,
                              runtime=self.backend, int8=False)

    # -- model -------------------------------------------------------------------------------------
    def _load(self) -> None:
        if self._model is not None:
            return
        from transformers import AutoConfig, AutoTokenizer

        from distillery.students.encoder_runtime import make_runtime

        path = resolve_encoder(self.name)
        self._tokenizer = tok = AutoTokenizer.from_pretrained(path)
        first = tok.cls_token_id if tok.cls_token_id is not None else tok.bos_token_id
        last = tok.sep_token_id if tok.sep_token_id is not None else tok.eos_token_id
        self._prefix = [first] if first is not None else []
        self._suffix = [last] if last is not None else []
        config = AutoConfig.from_pretrained(path)
        self._dim = int(config.hidden_size)
        limit = int(getattr(config, "max_position_embeddings", 512)) - 2
        if self.head_tokens + self.tail_tokens > limit:
            scale = limit / (self.head_tokens + self.tail_tokens)
            self.head_tokens = int(self.head_tokens * scale)
            self.tail_tokens = limit - self.head_tokens
        self._model = make_runtime(self.backend, self.precision, path, self.fingerprint, self._device)
        self._model.max_width = self.head_tokens + self.tail_tokens + len(self._prefix) + len(self._suffix)

    @property
    def dim(self) -> int:
        self._load()
        return self._dim

    def _token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        budget = self.head_tokens + self.tail_tokens
        max_chars = budget * CHARS_PER_TOKEN_BOUND
        out = []
        for text in texts:
            if len(text) > max_chars:
                half = max_chars // 2
                text = text[:half] + " " + text[-half:]
            # verbose=False: the whole text is tokenised on purpose (head and tail are cut below), so the
            # tokenizer's "longer than the maximum sequence length (> 512)" warning would be misleading.
            ids = self._tokenizer(text, add_special_tokens=False, truncation=False, verbose=False)["input_ids"]
            if len(ids) > budget:
                ids = ids[: self.head_tokens] + (ids[len(ids) - self.tail_tokens:] if self.tail_tokens else [])
            out.append(self._prefix + ids + self._suffix)
        return out

    def _embed(self, texts: Sequence[str], progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        self._load()
        ids = self._token_ids(texts)
        order = np.argsort([len(x) for x in ids])[::-1]
        result = np.zeros((len(texts), self.dim), dtype=np.float32)
        pad = self._tokenizer.pad_token_id or 0
        for start in range(0, len(order), self.batch_size):
            batch_idx = order[start: start + self.batch_size]
            width = max(len(ids[i]) for i in batch_idx)
            input_ids = np.full((len(batch_idx), width), pad, dtype=np.int64)
            mask = np.zeros((len(batch_idx), width), dtype=np.int64)
            for row, i in enumerate(batch_idx):
                input_ids[row, : len(ids[i])] = ids[i]
                mask[row, : len(ids[i])] = 1
            result[batch_idx] = self._model.forward(input_ids, mask)
            if progress:
                progress(start + len(batch_idx), len(texts))
        self.embedded += len(texts)
        return result

    def _embed_missing(self, texts: list[str], progress: Callable[[int, int], None] | None) -> np.ndarray:
        """Embed here, or, inside a training job on Ray, as batches of texts spread over the cluster."""
        from distillery import parallel

        runner = parallel.current()
        # 4 pieces per CPU: the last pieces of a pass are short, so no CPU idles long waiting for the slowest
        pieces = parallel.chunks(len(texts), 4 * runner.parallelism(), MIN_TEXTS_PER_PART)
        if not runner.distributed or len(pieces) < 2:
            return self._embed(texts, progress)
        from distillery.students.encoder_runtime import ensure_exported

        # a local Ray's workers share this machine's export folder: export once here, not in every worker at once
        ensure_exported(self.backend, self.precision, resolve_encoder(self.name), self.fingerprint)
        settings = (self.name, self.head_tokens, self.tail_tokens, self.batch_size, self.bf16, self.backend,
                    self.quantised)
        parts = runner.map(embed_part, [(settings, texts[a:b]) for a, b in pieces], stage="embed")
        self.embedded += len(texts)
        if progress:
            progress(len(texts), len(texts))
        return np.concatenate(parts).astype(np.float32, copy=False)

    # -- public ------------------------------------------------------------------------------------
    def encode(self, texts: Sequence[str], progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        """Embeddings of shape (n, dim); cached texts are not embedded again."""
        keys = [text_key(t) for t in texts]
        with self._lock:
            missing = {k: t for k, t in zip(keys, texts) if k not in self._cache}
            if missing:
                new_keys = list(missing)
                vectors = self._embed_missing([missing[k] for k in new_keys], progress)
                for k, v in zip(new_keys, vectors):
                    self._cache[k] = v
                if self.store:
                    self.store.append(new_keys, vectors)
            elif progress:
                progress(len(texts), len(texts))
            if not keys:
                return np.zeros((0, self.dim), dtype=np.float32)
            return np.stack([self._cache[k] for k in keys])


class EmbeddingStore:
    """One cache namespace on a folder or an fsspec URI: ``.npz`` shards (keys + vectors), one per encoder pass,
    written whole (a temporary name renamed locally; object stores write objects whole), so readers never see a
    partial shard and concurrent writers never overwrite each other."""

    def __init__(self, root: str):
        import fsspec

        self.root = root
        self.fs, self.path = fsspec.core.url_to_fs(root)

    def load(self) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        try:
            shards = sorted(p for p in self.fs.ls(self.path, detail=False) if p.endswith(".npz"))
        except FileNotFoundError:
            return found
        for shard in shards:
            try:
                with np.load(io.BytesIO(self.fs.cat_file(shard))) as data:
                    found.update(zip((str(k) for k in data["keys"]), data["vectors"]))
            except (OSError, ValueError, KeyError) as exc:
                logger.warning("skipping unreadable embedding cache shard %s: %s", shard, exc)
        return found

    def append(self, keys: list[str], vectors: np.ndarray) -> None:
        buf = io.BytesIO()
        np.savez(buf, keys=np.array(keys), vectors=vectors)
        name = f"{self.path.rstrip('/')}/{uuid.uuid4().hex}.npz"
        from fsspec.implementations.local import LocalFileSystem

        if isinstance(self.fs, LocalFileSystem):
            self.fs.makedirs(self.path, exist_ok=True)
            self.fs.pipe_file(name + ".tmp", buf.getvalue())
            self.fs.mv(name + ".tmp", name)
        else:
            self.fs.pipe_file(name, buf.getvalue())


def int8_drift(encoder: Encoder, X: np.ndarray, y: np.ndarray, gate_texts: Sequence[str]) -> float:
    """How far int8 embeddings move a head's scores: a ridge head fitted on the int8 embeddings ``X`` (targets
    ``y``, 0-10) scores ``gate_texts`` through the int8 and the unquantised encoder; the mean absolute difference
    (0-10 scale), as the inference service's int8 gate measures it."""
    from sklearn.linear_model import Ridge

    head = Ridge(alpha=1.0).fit(X, y)
    gate = list(gate_texts)
    a = np.clip(head.predict(encoder.encode(gate)), 0, 10)
    b = np.clip(head.predict(encoder.unquantised().encode(gate)), 0, 10)
    return float(np.abs(a - b).mean())


def embed_gated(encoder: Encoder, texts: Sequence[str], y: np.ndarray, val_texts: Sequence[str] | None,
                progress=None, max_drift: float = INT8_MAX_DRIFT) -> tuple[np.ndarray, np.ndarray | None, Encoder]:
    """One encoder pass over training and validation texts. An int8 encoder is first gated on a sample: a ridge
    head fitted on up to GATE_SAMPLE training texts' int8 embeddings may move the scores of up to GATE_TEXTS
    validation texts (else training texts) by at most ``max_drift`` (:func:`int8_drift`); otherwise the pass runs
    unquantised. The sample's embeddings are cached, so the int8 pass does not embed them again.
    Returns (X, validation X or None, the encoder used)."""
    texts, val_texts = list(texts), list(val_texts or [])
    y = np.asarray(y, dtype=np.float64)
    if encoder.quantised and len(texts) >= 2:
        sample = texts[:GATE_SAMPLE]
        drift = int8_drift(encoder, encoder.encode(sample), y[: len(sample)], (val_texts or texts)[-GATE_TEXTS:])
        if drift <= max_drift:
            logger.info("int8 training embeddings accepted (score drift %.4f <= %.3f)", drift, max_drift)
        else:
            logger.warning("int8 embeddings move scores by %.4f > %.3f: embedding unquantised", drift, max_drift)
            encoder = encoder.unquantised()
    both = encoder.encode(texts + val_texts, progress)
    return both[: len(texts)], (both[len(texts):] if val_texts else None), encoder


def embed_part(settings: tuple, texts: list[str]) -> np.ndarray:
    """One batch of an encoder pass, on a Ray worker: the worker keeps its encoder between batches."""
    name, head, tail, batch_size, bf16, runtime, int8 = settings
    return shared_encoder(name, head, tail, None, batch_size=batch_size, bf16=bf16, runtime=runtime,
                          int8=int8)._embed(texts)


_SHARED: dict[tuple, Encoder] = {}
_SHARED_LOCK = threading.Lock()


def shared_encoder(name: str, head_tokens: int, tail_tokens: int, cache_dir: Path | str | None = None,
                   **kwargs) -> Encoder:
    """One encoder instance per (name, budget, cache) in a process: students share weights and cache."""
    key = (name, int(head_tokens), int(tail_tokens), str(cache_dir or ""), tuple(sorted(kwargs.items())))
    with _SHARED_LOCK:
        if key not in _SHARED:
            _SHARED[key] = Encoder(name, head_tokens, tail_tokens, cache_dir=cache_dir, **kwargs)
        return _SHARED[key]
