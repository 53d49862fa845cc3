"""``finetune``: a Hugging Face backbone + LoRA (peft) + a linear regression head, trained with MSE.

Training runs as a Ray Train ``TorchTrainer`` (local Ray by default, a cluster when ``ray_address`` is
set): DeepSpeed ZeRO-2 with bf16 when CUDA is available, plain DDP (gloo) on CPU. The same loop also runs
without Ray (``use_ray=false``), which is how single-GPU benchmarks and the inference path use it. Early
stopping on validation MAE; the best epoch's weights are kept (as a Ray checkpoint under Ray: adapters and head
only, on the job's storage, ``s3://`` on a cluster), and a failed worker group is restarted a bounded number of
times from that checkpoint.

Modules: :mod:`~distillery.students.finetune_model` (model, tokenisation, checkpoint contents),
:mod:`~distillery.students.finetune_loop` (one worker's loop), :mod:`~distillery.students.finetune_ray` (the Ray
Train runner).

Base models by name (Qwen/Qwen2.5-0.5B, google/gemma-3-1b-pt, any AutoModel) for users with weights;
``random_init`` with ``model_config`` builds a tiny random model from ``AutoConfig.for_model`` (tests).
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from distillery.students.base import Student
from distillery.students.finetune_loop import describe_progress, train_loop
from distillery.students.finetune_model import (  # noqa: F401 - the public names of the finetune student
    build_model,
    deepspeed_config,
    encode_texts,
    load_trained_state,
    predict_ids,
    trained_state,
    validate_deepspeed_config,
)
from distillery.students.finetune_model import load_tokenizer as _load_tokenizer
from distillery.students.finetune_model import resolve as _resolve
from distillery.students.finetune_ray import ProgressSink, ray_storage  # noqa: F401
from distillery.students.manifest import read_manifest, write_manifest
from distillery.students.params import check_params

logger = logging.getLogger(__name__)

DEFAULTS: dict[str, Any] = {
    "base_model": "Qwen/Qwen2.5-0.5B",
    "tokenizer": "",  # default: the base model's
    "random_init": False,  # build the backbone from model_config with random weights
    "model_config": {},  # AutoConfig.for_model(**model_config) when random_init
    "head_tokens": 256,
    "tail_tokens": 256,
    "lora_r": 16,  # 0: train the whole backbone
    "lora_alpha": 32,
    "lora_dropout": 0.05,
    "lora_targets": "all-linear",
    "lr": 2e-4,
    "head_lr": 1e-3,
    "weight_decay": 0.01,
    "epochs": 3,
    "batch_size": 8,
    "patience": 1,  # epochs without validation improvement before stopping
    "seed": 0,
    "use_ray": True,
    "ray_address": "",  # empty: the training job's Ray, else $RAY_ADDRESS, else a local Ray started here
    "num_workers": 2,
    "deepspeed": "auto",  # auto (on with CUDA) | on | off
    "zero_stage": 2,
    "bf16": "auto",  # auto (on with CUDA) | on | off
    "max_steps": 0,  # cap optimizer steps per epoch (0: no cap; smoke tests)
    "max_failures": 2,  # Ray Train restarts of the workers after a failure (resumed from the last checkpoint)
    "worker_start_timeout_s": 60.0,  # per restart: waiting longer for the workers' resources fails the job
}


class FinetuneStudent(Student):
    kind = "finetune"

    def __init__(self, dimensions: Sequence[str], filter: str = "", **params: Any):
        super().__init__(dimensions)
        self.filter = filter
        if isinstance(params.get("model_config"), str):
            params["model_config"] = json.loads(params["model_config"] or "{}")
        self.params = check_params("finetune", DEFAULTS, params)
        for key, allowed in (("deepspeed", {"auto", "on", "off"}), ("bf16", {"auto", "on", "off"})):
            if self.params[key] not in allowed:
                raise ValueError(f"finetune {key} must be one of {sorted(allowed)}, got {self.params[key]!r}")
        self._model = None
        self._tok = None
        self.history: list[dict[str, float]] = []
        self._progress: Callable[[float, str], None] | None = None

    def set_progress(self, callback: Callable[[float, str], None]) -> None:
        self._progress = callback

    def _report(self, frac: float, msg: str) -> None:
        if self._progress:
            self._progress(frac, msg)

    def fit(self, texts, targets, val_texts=None, val_targets=None) -> FinetuneStudent:
        import torch

        y = np.asarray(targets, dtype=np.float64)
        if y.shape != (len(texts), len(self.dimensions)):
            raise ValueError(f"targets must have shape ({len(texts)}, {len(self.dimensions)}), got {y.shape}")
        if val_texts is None or not len(val_texts):
            val_texts, val_targets = list(texts)[: max(1, len(texts) // 10)], y[: max(1, len(texts) // 10)]
        with tempfile.TemporaryDirectory(prefix="distillery-finetune-") as tmp:
            config = {"params": self.params, "train_texts": list(texts), "train_targets": y.tolist(),
                      "val_texts": list(val_texts), "val_targets": np.asarray(val_targets).tolist()}
            if self.params["use_ray"]:
                state, history = self._fit_ray(config, Path(tmp))
            else:
                self._report(0.0, "fine-tuning")
                result = train_loop({**config, "progress": lambda item: self._report(*describe_progress(item))})
                state, history = result["state"], result["history"]
        self.history = history
        self._tok = _load_tokenizer(self.params)
        model = build_model(self.params, len(self.dimensions), vocab_size=len(self._tok))
        load_trained_state(model, state)
        self._model = model.to("cuda" if torch.cuda.is_available() else "cpu").eval()
        return self

    def _fit_ray(self, config: dict[str, Any], tmp: Path):
        from distillery import parallel
        from distillery.students.finetune_ray import train_on_ray

        # a training job is connected already (its cluster); alone, this connects to RAY_ADDRESS or a local Ray
        with parallel.ray_session(self.params["ray_address"], num_cpus=max(2, int(self.params["num_workers"]))):
            return train_on_ray(self.params, config, tmp, self._report)

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        if self._model is None:
            raise RuntimeError("finetune student is not fitted")
        if len(texts) == 0:
            return np.zeros((0, len(self.dimensions)))
        device = next(self._model.parameters()).device
        ids = encode_texts(self._tok, list(texts), int(self.params["head_tokens"]), int(self.params["tail_tokens"]))
        bf16 = device.type == "cuda" and self.params["bf16"] != "off"
        return predict_ids(self._model, ids, self._tok.pad_token_id or 0, device, bf16=bf16)

    def save(self, path: Path) -> None:
        import torch
        from safetensors.torch import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self._model.state_dict().items()}
        save_file(state, str(path / "model.safetensors"))
        (path / "history.json").write_text(json.dumps(self.history))
        del torch
        write_manifest(path, self)

    @classmethod
    def load(cls, path: Path) -> FinetuneStudent:
        import torch
        from safetensors.torch import load_file

        path = Path(path)
        manifest = read_manifest(path)
        student = cls(manifest["dimensions"], filter=manifest.get("filter", ""), **manifest.get("params", {}))
        student._tok = _load_tokenizer(student.params)
        params = dict(student.params)
        if not params["random_init"]:
            # rebuild the architecture without downloading weights: the saved state holds them all
            from transformers import AutoConfig

            cfg = AutoConfig.from_pretrained(_resolve(params["base_model"])).to_dict()
            params.update(random_init=True, model_config={**cfg})
        model = build_model(params, len(student.dimensions), vocab_size=len(student._tok))
        model.load_state_dict(load_file(str(path / "model.safetensors")))
        student._model = model.to("cuda" if torch.cuda.is_available() else "cpu").eval()
        student.history = json.loads((path / "history.json").read_text()) if (path / "history.json").exists() else []
        return student
