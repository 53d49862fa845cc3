"""The finetune student's model: tokenisation (head+tail), the backbone + LoRA + regression head, batches,
prediction, and what a checkpoint holds (adapters and head only with LoRA). Shared by the driver and the Ray
Train workers."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np


def deepspeed_config(zero_stage: int = 2, bf16: bool = True, micro_batch: int = 8, grad_accum: int = 1,
                     lr: float = 2e-4, weight_decay: float = 0.01, world_size: int = 1) -> dict[str, Any]:
    """The DeepSpeed ZeRO configuration the finetune student uses on CUDA."""
    if zero_stage not in (0, 1, 2, 3):
        raise ValueError(f"zero_stage must be 0-3, got {zero_stage}")
    return {
        "train_micro_batch_size_per_gpu": int(micro_batch),
        "gradient_accumulation_steps": int(grad_accum),
        "train_batch_size": int(micro_batch) * int(grad_accum) * int(world_size),
        "gradient_clipping": 1.0,
        "bf16": {"enabled": bool(bf16)},
        "zero_optimization": {
            "stage": int(zero_stage),
            "overlap_comm": True,
            "contiguous_gradients": True,
            "reduce_bucket_size": 5e7,
            "allgather_bucket_size": 5e7,
        },
        "optimizer": {"type": "AdamW", "params": {"lr": float(lr), "weight_decay": float(weight_decay)}},
        "steps_per_print": 1_000_000,
        "wall_clock_breakdown": False,
    }


def validate_deepspeed_config(config: dict[str, Any]) -> Any:
    """Parse ``config`` with DeepSpeed's own config class (raises on invalid settings); runs on CPU."""
    os.environ.setdefault("DS_BUILD_OPS", "0")
    from deepspeed.runtime.config import DeepSpeedConfig

    return DeepSpeedConfig(dict(config))


def resolve(name: str) -> str:
    from distillery.students.encoder import resolve_encoder

    return resolve_encoder(name)


def load_tokenizer(params: dict[str, Any]):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(resolve(params["tokenizer"] or params["base_model"]))
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token or tok.unk_token
    return tok


def _special(tok) -> tuple[list[int], list[int]]:
    first = tok.cls_token_id if tok.cls_token_id is not None else tok.bos_token_id
    last = tok.sep_token_id if tok.sep_token_id is not None else tok.eos_token_id
    return ([first] if first is not None else []), ([last] if last is not None else [])


def encode_texts(tok, texts: Sequence[str], head: int, tail: int) -> list[list[int]]:
    """Head+tail token truncation: keep the first ``head`` and last ``tail`` tokens of long texts."""
    prefix, suffix = _special(tok)
    budget = head + tail
    out = []
    for text in texts:
        if len(text) > budget * 12:
            half = budget * 6
            text = text[:half] + " " + text[-half:]
        ids = tok(text, add_special_tokens=False, truncation=False, verbose=False)["input_ids"]  # cut below
        if len(ids) > budget:
            ids = ids[:head] + (ids[len(ids) - tail:] if tail else [])
        out.append(prefix + ids + suffix)
    return out


def build_model(params: dict[str, Any], n_outputs: int, vocab_size: int | None = None):
    """Backbone (pretrained or random) + LoRA + mean-pooled linear regression head."""
    import torch
    from transformers import AutoConfig, AutoModel

    if params["random_init"]:
        cfg = dict(params["model_config"])
        model_type = cfg.pop("model_type", "qwen2")
        if vocab_size:
            cfg.setdefault("vocab_size", vocab_size)
        config = AutoConfig.for_model(model_type, **cfg)
        torch.manual_seed(int(params["seed"]))
        backbone = AutoModel.from_config(config)
    else:
        backbone = AutoModel.from_pretrained(resolve(params["base_model"])).float()  # master weights fp32
    if int(params["lora_r"]) > 0:
        from peft import LoraConfig, get_peft_model

        targets = params["lora_targets"]
        lora = LoraConfig(r=int(params["lora_r"]), lora_alpha=int(params["lora_alpha"]),
                          lora_dropout=float(params["lora_dropout"]),
                          target_modules=targets if targets == "all-linear" else list(str(targets).split(",")))
        backbone = get_peft_model(backbone, lora)
    return RegressionModel(backbone, n_outputs)


def _regression_model_class():
    import torch

    class _RegressionModel(torch.nn.Module):
        def __init__(self, backbone, n_outputs: int):
            super().__init__()
            self.backbone = backbone
            hidden = backbone.config.hidden_size
            self.head = torch.nn.Linear(hidden, n_outputs)
            torch.nn.init.zeros_(self.head.weight)
            torch.nn.init.constant_(self.head.bias, 0.5)  # targets are scaled to 0-1

        def forward(self, input_ids, attention_mask):
            hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
            return self.head(pooled.to(self.head.weight.dtype))

    return _RegressionModel


def RegressionModel(backbone, n_outputs: int):
    return _regression_model_class()(backbone, n_outputs)


def batches(ids: list[list[int]], order: np.ndarray, batch_size: int, pad: int, device):
    """(row indices, padded input ids, attention mask) per batch of ``order``."""
    import torch

    for start in range(0, len(order), batch_size):
        idx = order[start: start + batch_size]
        width = max(len(ids[i]) for i in idx)
        input_ids = torch.full((len(idx), width), pad, dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        for row, i in enumerate(idx):
            input_ids[row, : len(ids[i])] = torch.tensor(ids[i])
            mask[row, : len(ids[i])] = 1
        yield idx, input_ids.to(device), mask.to(device)


def autocast(device, enabled: bool):
    import torch

    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled)


def predict_ids(model, ids: list[list[int]], pad: int, device, batch_size: int = 32, bf16: bool = False):
    import torch

    order = np.argsort([len(x) for x in ids])
    out = np.zeros((len(ids), model.head.out_features), dtype=np.float64)
    model.eval()
    with torch.inference_mode():
        for idx, input_ids, mask in batches(ids, order, batch_size, pad, device):
            with autocast(device, bf16):
                pred = model(input_ids, mask)
            out[idx] = pred.float().cpu().numpy() * 10.0
    return out


def trained_state(model, params: dict[str, Any]) -> dict[str, Any]:
    """What a checkpoint holds: with LoRA only the adapters and the head (the frozen base comes from the model
    cache, or from the seed for random-init models), else every weight."""
    names = {n for n, p in model.named_parameters() if p.requires_grad} if int(params["lora_r"]) > 0 else None
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items() if names is None or k in names}


def load_trained_state(model, state: dict[str, Any]) -> None:
    """Put a checkpoint's weights into a freshly built model; an adapter checkpoint must cover every trainable
    weight (the rest is the frozen base)."""
    result = model.load_state_dict(state, strict=False)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    missing = sorted(trainable & set(result.missing_keys))
    if missing or result.unexpected_keys:
        raise ValueError(f"checkpoint does not match the model: missing {missing[:3]}, unexpected "
                         f"{list(result.unexpected_keys)[:3]}")
