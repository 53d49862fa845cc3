"""The encoder backend interface and the tokenisation every backend shares.

Tokenisation matches :class:`distillery.students.encoder.Encoder` exactly (cut characters, tokenise
without special tokens, keep head + tail tokens, add special tokens), so that a probe head trained on
the trainer's embeddings sees the same inputs when served. Batches are formed by sorting by length and
filling each forward pass up to ``max_batch_tokens`` padded tokens (little padding, bounded memory).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

import numpy as np

CHARS_PER_TOKEN_BOUND = 12


class EncoderBackend(ABC):
    """Texts -> L2-normalised mean-pooled embeddings ``(n, dim)`` float32."""

    name = ""

    def __init__(self, encoder: str, head_tokens: int, tail_tokens: int, max_batch_tokens: int = 8192):
        from transformers import AutoTokenizer

        from distillery.students.encoder import resolve_encoder

        self.encoder = encoder
        self.path = resolve_encoder(encoder)
        self.tokenizer = AutoTokenizer.from_pretrained(self.path)
        self.head_tokens = int(head_tokens)
        self.tail_tokens = int(tail_tokens)
        self.max_batch_tokens = int(max_batch_tokens)
        self.last_preprocess_seconds = 0.0
        self.last_inference_seconds = 0.0

    def _clip_budget(self, max_positions: int) -> None:
        limit = max_positions - 2
        if self.head_tokens + self.tail_tokens > limit:
            scale = limit / (self.head_tokens + self.tail_tokens)
            self.head_tokens = int(self.head_tokens * scale)
            self.tail_tokens = limit - self.head_tokens

    @property
    def budget(self) -> int:
        return self.head_tokens + self.tail_tokens

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        max_chars = self.budget * CHARS_PER_TOKEN_BOUND
        cut = []
        for text in texts:
            if len(text) > max_chars:
                half = max_chars // 2
                text = text[:half] + " " + text[-half:]
            cut.append(text)
        encoded = self.tokenizer(cut, add_special_tokens=False, truncation=False, verbose=False)["input_ids"]
        out = []
        for ids in encoded:
            if len(ids) > self.budget:
                ids = ids[: self.head_tokens] + (ids[len(ids) - self.tail_tokens:] if self.tail_tokens else [])
            out.append(self.with_special_tokens(ids))
        return out

    def with_special_tokens(self, ids: list[int]) -> list[int]:
        """``[CLS] ids [SEP]`` (BERT-style encoders), else ``<bos> ids <eos>`` where the tokenizer has them."""
        tok = self.tokenizer
        build = getattr(type(tok), "build_inputs_with_special_tokens", None)
        if build is not None:
            return build(tok, ids)
        first = tok.cls_token_id if tok.cls_token_id is not None else tok.bos_token_id
        last = tok.sep_token_id if tok.sep_token_id is not None else tok.eos_token_id
        return ([first] if first is not None else []) + list(ids) + ([last] if last is not None else [])

    def batches(self, ids: list[list[int]]) -> list[np.ndarray]:
        """Index arrays of length-sorted sub-batches whose padded size fits ``max_batch_tokens``."""
        order = np.argsort([len(x) for x in ids], kind="stable")[::-1]
        groups, current, width = [], [], 0
        for i in order:
            w = max(width, len(ids[i]))
            if current and w * (len(current) + 1) > self.max_batch_tokens:
                groups.append(np.asarray(current))
                current, w = [], len(ids[i])
            current.append(i)
            width = w
        if current:
            groups.append(np.asarray(current))
        return groups

    def pad(self, ids: list[list[int]], rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        width = max(len(ids[i]) for i in rows)
        pad = self.tokenizer.pad_token_id or 0
        input_ids = np.full((len(rows), width), pad, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for r, i in enumerate(rows):
            input_ids[r, : len(ids[i])] = ids[i]
            mask[r, : len(ids[i])] = 1
        return input_ids, mask

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        t0 = time.perf_counter()
        ids = self.token_ids(texts)
        t1 = time.perf_counter()
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for rows in self.batches(ids):
            input_ids, mask = self.pad(ids, rows)
            out[rows] = self.forward(input_ids, mask)
        t2 = time.perf_counter()
        self.last_preprocess_seconds, self.last_inference_seconds = t1 - t0, t2 - t1
        return out

    def cost(self, text: str) -> int:
        return max(1, min(self.budget + 2, len(text) // 4 + 2))

    @property
    @abstractmethod
    def dim(self) -> int: ...

    @abstractmethod
    def forward(self, input_ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Pooled, normalised embeddings of one padded batch."""


def make_encoder(backend: str, encoder: str, head_tokens: int, tail_tokens: int, *, device: str = "auto",
                 max_batch_tokens: int = 8192, onnx_dir: Path | None = None, quantize: bool = False,
                 threads: int = 0, dtype: str = "auto",
                 calibration_texts: Sequence[str] | None = None) -> EncoderBackend:
    """The encoder backend ``backend`` (torch, onnx or openvino); ``onnx_dir`` caches exported models.

    ``calibration_texts`` are what the openvino backend's int8 quantisation calibrates on."""
    if backend == "torch":
        from distillery_services.inference.backends.torch_backend import TorchEncoder

        return TorchEncoder(encoder, head_tokens, tail_tokens, device=device, max_batch_tokens=max_batch_tokens,
                            threads=threads, dtype=dtype)
    if backend == "onnx":
        from distillery_services.inference.backends.onnx_backend import OnnxEncoder

        return OnnxEncoder(encoder, head_tokens, tail_tokens, cache_dir=onnx_dir, quantize=quantize,
                           max_batch_tokens=max_batch_tokens, threads=threads)
    if backend == "openvino":
        from distillery_services.inference.backends.openvino_backend import OpenVinoEncoder

        return OpenVinoEncoder(encoder, head_tokens, tail_tokens, cache_dir=onnx_dir, quantize=quantize,
                               calibration_texts=calibration_texts, max_batch_tokens=max_batch_tokens,
                               threads=threads, dtype=dtype)
    raise ValueError(f"unknown encoder backend {backend!r}; choose torch, onnx or openvino "
                     "(vllm serves decoder students)")
