"""``vllm`` backend: ``finetune`` (decoder) students served by vLLM's pooling runner on GPU.

A finetune student is a backbone (+ LoRA) whose hidden states are mean-pooled and fed to a linear regression
head; its raw output is ``10 x head(mean(h))``. vLLM serves exactly that as a sequence classifier: the LoRA
adapters are merged into the backbone, the head (scaled by 10, with its bias, which vLLM loads as
``score.bias``) becomes ``score``, the config says ``problem_type: regression`` (vLLM then applies no
activation) and the pooler is told to mean-pool (``PoolerConfig(seq_pooling_type="MEAN")``; vLLM's default
for ``*ForSequenceClassification`` is the last token). :func:`export_sequence_classifier` writes that
checkpoint (plus ``distillery_head.json``) from a loaded student; :class:`VllmModel` does it once per
version into a cache folder, so registry versions need nothing extra stored.

Token ids come from the student's own tokenizer and head+tail truncation (``encode_texts``), so vLLM sees
the same inputs as the torch path. vLLM is an optional extra (``gpu``) with its own CUDA torch; it is
imported only here, lazily. API as of vLLM 0.26: ``LLM(runner="pooling", convert="classify",
pooler_config=PoolerConfig(...))``, ``LLM.classify(prompts, pooling_params=...)`` returning outputs whose
``.outputs.probs`` are the raw scores; older releases (``task="classify"``, ``pooling_type``) are tried next.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from distillery_services.inference.models import Prediction, estimate_tokens

HEAD_FILE = "distillery_head.json"
OUTPUT_SCALE = 10.0  # the finetune student's head predicts targets / 10


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


def export_sequence_classifier(student, out_dir: Path | str) -> Path:
    """Write a fitted finetune student as a ``<Arch>ForSequenceClassification`` checkpoint for vLLM.

    Runs on CPU (tests) or GPU; the student itself is not modified (its backbone is copied before the LoRA
    weights are merged). Weights are stored in bf16, the head in fp32."""
    import copy

    import torch
    from safetensors.torch import save_file
    from transformers.models.auto.modeling_auto import MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES

    model, tok = getattr(student, "_model", None), getattr(student, "_tok", None)
    if getattr(student, "kind", "") != "finetune" or model is None:
        raise VllmUnavailableError("only fitted finetune students can be served by vLLM")
    backbone = copy.deepcopy(model.backbone).to("cpu").float()
    if hasattr(backbone, "merge_and_unload"):  # peft: fold the LoRA adapters into the base weights
        backbone = backbone.merge_and_unload()
    config = copy.deepcopy(backbone.config)
    arch = MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES.get(config.model_type)
    if arch is None:
        raise VllmUnavailableError(f"backbone type {config.model_type!r} has no sequence-classification "
                                   "architecture; serve this model with the torch backend")
    dims = list(student.dimensions)
    config.architectures = [arch]
    config.num_labels = len(dims)
    config.id2label = dict(enumerate(dims))
    config.label2id = {d: i for i, d in enumerate(dims)}
    config.problem_type = "regression"  # vLLM: identity activation
    if tok is not None and tok.pad_token_id is not None:
        config.pad_token_id = int(tok.pad_token_id)
    setattr(config, "dtype" if hasattr(config, "dtype") else "torch_dtype", torch.bfloat16)  # transformers 5 / 4
    state = {f"model.{k}": v.detach().to(torch.bfloat16).contiguous() for k, v in backbone.state_dict().items()}
    state["score.weight"] = (model.head.weight.detach().float().cpu() * OUTPUT_SCALE).contiguous()
    state["score.bias"] = (model.head.bias.detach().float().cpu() * OUTPUT_SCALE).contiguous()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(out)
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    if tok is not None:
        tok.save_pretrained(out)
    (out / HEAD_FILE).write_text(json.dumps({"pooling": "MEAN", "scale": OUTPUT_SCALE, "dimensions": dims,
                                             "head_tokens": int(student.params["head_tokens"]),
                                             "tail_tokens": int(student.params["tail_tokens"])}))
    return out


def _pooler_config(pooling: str):
    from vllm.config import PoolerConfig

    try:
        return PoolerConfig(seq_pooling_type=pooling, use_activation=False)
    except TypeError:  # releases before seq_pooling_type (<= 0.14)
        return PoolerConfig(pooling_type=pooling, use_activation=False)


def _pooling_params():
    from vllm import PoolingParams

    try:
        return PoolingParams(use_activation=False)
    except TypeError:  # releases before use_activation
        return PoolingParams(activation=False)


class VllmRegressor:
    """Raw regression outputs ``(n, n_labels)`` from a sequence-classification checkpoint.

    ``load_format="dummy"`` starts vLLM on random weights (throughput only: the scores mean nothing);
    ``engine_kwargs`` go to ``vllm.LLM`` (e.g. ``max_num_batched_tokens``: its default budget of a few
    thousand tokens per step holds only a handful of 512-token articles)."""

    def __init__(self, model_dir: Path | str, max_model_len: int = 512, gpu_memory_utilization: float = 0.5,
                 dtype: str = "bfloat16", max_num_seqs: int = 256, load_format: str = "auto",
                 pooling: str | None = None, enforce_eager: bool = False, **engine_kwargs):
        ok, why = vllm_available()
        if not ok:
            raise VllmUnavailableError(why)
        from vllm import LLM

        head = Path(model_dir) / HEAD_FILE
        if pooling is None:
            pooling = json.loads(head.read_text())["pooling"] if head.is_file() else "LAST"
        kwargs = {"model": str(model_dir), "max_model_len": max_model_len, "dtype": dtype,
                  "gpu_memory_utilization": gpu_memory_utilization, "max_num_seqs": max_num_seqs,
                  "enforce_eager": enforce_eager, "load_format": load_format,
                  # mean pooling turns chunked prefill off: every prompt runs whole, so the per-step token
                  # budget, not max_num_seqs, bounds the batch (vLLM's default holds a few 512-token articles)
                  "max_num_batched_tokens": max(max_model_len, min(max_num_seqs * max_model_len, 131072)),
                  **engine_kwargs}
        try:
            self.llm = LLM(runner="pooling", convert="classify", pooler_config=_pooler_config(pooling), **kwargs)
        except TypeError:  # releases before runner/convert (< 0.10)
            from vllm.config import PoolerConfig

            self.llm = LLM(task="classify", override_pooler_config=PoolerConfig(pooling_type=pooling), **kwargs)
        self.params = _pooling_params()
        self.max_model_len = max_model_len

    def __call__(self, texts: Sequence[str] | None = None, token_ids: Sequence[list[int]] | None = None) -> np.ndarray:
        if token_ids is not None:
            prompts = [{"prompt_token_ids": [int(t) for t in ids]} for ids in token_ids]
        else:
            prompts = list(texts or [])
        if not prompts:
            return np.zeros((0, 0))
        outputs = self.llm.classify(prompts, pooling_params=self.params, use_tqdm=False)
        return np.asarray([o.outputs.probs for o in outputs], dtype=np.float64)


def export_dir_for(version_id: str, cache_dir: Path | str | None = None) -> Path:
    root = Path(cache_dir or os.environ.get("DISTILLERY_VLLM_CACHE")
                or Path(tempfile.gettempdir()) / "distillery-vllm")
    return root / version_id  # version ids are checked identifiers (distillery.identifiers), never paths


def ensure_export(loaded, cache_dir: Path | str | None = None) -> Path:
    """The version's vLLM checkpoint, exported once (atomically: a half-written folder is never used)."""
    target = export_dir_for(loaded.info.version_id, cache_dir)
    if (target / HEAD_FILE).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{loaded.info.version_id}-", dir=target.parent))
    try:
        export_sequence_classifier(loaded.student, tmp)
        os.replace(tmp, target)
    except OSError:
        if not (target / HEAD_FILE).is_file():  # not a concurrent export that won the rename
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


class VllmModel:
    """A registered finetune version served by vLLM (exported to a sequence classifier on first load)."""

    def __init__(self, loaded, regressor: VllmRegressor, max_tokens: int):
        self.loaded = loaded
        self.version = loaded.info.version_id
        self.kind = loaded.info.kind
        self.dimensions = list(loaded.info.dimensions)
        self.regressor = regressor
        self.max_tokens = max_tokens
        params = loaded.student.params
        self.head_tokens, self.tail_tokens = int(params["head_tokens"]), int(params["tail_tokens"])

    @classmethod
    def from_loaded(cls, loaded, device: str = "auto", max_tokens: int = 512, cache_dir: Path | str | None = None,
                    **vllm_kwargs) -> VllmModel:
        if loaded.info.kind != "finetune":
            raise VllmUnavailableError(f"model {loaded.info.version_id} is a {loaded.info.kind} student; vLLM "
                                       "serves finetune students (choose the torch, onnx or openvino backend)")
        ok, why = vllm_available()
        if not ok:
            raise VllmUnavailableError(why)
        folder = ensure_export(loaded, cache_dir)
        params = loaded.student.params
        budget = int(params["head_tokens"]) + int(params["tail_tokens"]) + 2  # + the special tokens
        return cls(loaded, VllmRegressor(folder, max_model_len=budget, **vllm_kwargs), max_tokens)

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        from distillery.students.finetune import encode_texts

        return encode_texts(self.loaded.student._tok, list(texts), self.head_tokens, self.tail_tokens)

    def raw(self, texts: Sequence[str]) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros((0, len(self.dimensions)))
        return self.regressor(token_ids=self.token_ids(texts))

    def predict(self, texts: Sequence[str]) -> Prediction:
        t0 = time.perf_counter()
        raw = self.raw(texts)
        elapsed = time.perf_counter() - t0
        calibrated, lower, upper = self.loaded.calibration.apply(raw)
        return Prediction(raw, calibrated, lower, upper, inference_seconds=elapsed)

    def cost(self, text: str) -> int:
        return estimate_tokens(text, self.max_tokens)
