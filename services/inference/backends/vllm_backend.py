"""``vllm`` backend: decoder students (a ``*ForSequenceClassification`` checkpoint, one label per dimension)
served by vLLM's pooling runner on GPU.

vLLM applies an activation (a sigmoid for one-label heads, softmax otherwise) to classifier outputs by
default; our heads are regressions on the 0-10 scale, so the activation is turned off both in the pooler
config and per request (``use_activation=False``; older releases call it ``activation``). vLLM is an
optional extra (``gpu``) with its own CUDA torch: it is imported only here, lazily.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from services.inference.models import Prediction, estimate_tokens


class VllmUnavailableError(RuntimeError):
    """vLLM is not installed or there is no GPU: the message says what to install or choose instead."""


def vllm_available() -> tuple[bool, str]:
    try:
        import vllm  # noqa: F401
    except ImportError:
        return False, "vllm is not installed (pip install 'llm-distillery[gpu]' on a CUDA machine)"
    try:
        import torch

        if not torch.cuda.is_available():
            return False, "vllm needs a CUDA GPU and none is visible"
    except ImportError:
        return False, "torch is not installed"
    return True, ""


def _pooling_params():
    from vllm import PoolingParams

    try:
        return PoolingParams(use_activation=False)
    except TypeError:  # releases before use_activation
        return PoolingParams(activation=False)


class VllmRegressor:
    """Raw regression outputs ``(n, n_labels)`` from a sequence-classification checkpoint."""

    def __init__(self, model_dir: Path | str, max_model_len: int = 512, gpu_memory_utilization: float = 0.5,
                 dtype: str = "bfloat16", max_num_seqs: int = 256):
        ok, why = vllm_available()
        if not ok:
            raise VllmUnavailableError(why)
        from vllm import LLM

        kwargs = {"model": str(model_dir), "max_model_len": max_model_len, "dtype": dtype,
                  "gpu_memory_utilization": gpu_memory_utilization, "max_num_seqs": max_num_seqs,
                  "enforce_eager": False}
        try:
            from vllm.config import PoolerConfig

            self.llm = LLM(runner="pooling", convert="classify",
                           pooler_config=PoolerConfig(use_activation=False), **kwargs)
        except TypeError:  # older releases: task= instead of runner/convert, no use_activation
            self.llm = LLM(task="classify", **kwargs)
        self.params = _pooling_params()
        self.max_model_len = max_model_len

    def __call__(self, texts: Sequence[str] | None = None, token_ids: Sequence[list[int]] | None = None) -> np.ndarray:
        if token_ids is not None:
            prompts = [{"prompt_token_ids": list(ids)} for ids in token_ids]
        else:
            prompts = list(texts or [])
        outputs = self.llm.classify(prompts, pooling_params=self.params, use_tqdm=False)
        return np.asarray([o.outputs.probs for o in outputs], dtype=np.float64)


class VllmModel:
    """A registry version whose student folder holds an ``hf/`` sequence-classification checkpoint."""

    def __init__(self, loaded, regressor: VllmRegressor, max_tokens: int):
        self.loaded = loaded
        self.version = loaded.info.version_id
        self.kind = loaded.info.kind
        self.dimensions = list(loaded.info.dimensions)
        self.regressor = regressor
        self.max_tokens = max_tokens

    @classmethod
    def from_loaded(cls, loaded, device: str = "auto", max_tokens: int = 512) -> VllmModel:
        folder = getattr(loaded.student, "path", None) or loaded.info.uri
        hf = Path(folder) / "student" / "hf" if not (Path(folder) / "hf").is_dir() else Path(folder) / "hf"
        if not (hf / "config.json").is_file():
            raise VllmUnavailableError(
                f"model {loaded.info.version_id} has no merged sequence-classification checkpoint at {hf}; "
                "serve it with the torch backend or export the merged model first"
            )
        return cls(loaded, VllmRegressor(hf, max_model_len=max_tokens + 2), max_tokens)

    def predict(self, texts: Sequence[str]) -> Prediction:
        t0 = time.perf_counter()
        raw = self.regressor(list(texts))
        elapsed = time.perf_counter() - t0
        calibrated, lower, upper = self.loaded.calibration.apply(raw)
        return Prediction(raw, calibrated, lower, upper, inference_seconds=elapsed)

    def cost(self, text: str) -> int:
        return estimate_tokens(text, self.max_tokens)
