"""``finetune``: a Hugging Face backbone + LoRA (peft) + a linear regression head, trained with MSE.

Training runs as a Ray Train ``TorchTrainer`` (local Ray by default, a cluster when ``ray_address`` is
set): DeepSpeed ZeRO-2 with bf16 when CUDA is available, plain DDP (gloo) on CPU. The same loop also runs
without Ray (``use_ray=false``), which is how single-GPU benchmarks and the inference path use it. Early
stopping on validation MAE; the best epoch's weights are kept (as a Ray checkpoint under Ray).

Base models by name (Qwen/Qwen2.5-0.5B, google/gemma-3-1b-pt, any AutoModel) for users with weights;
``random_init`` with ``model_config`` builds a tiny random model from ``AutoConfig.for_model`` (tests).
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from distillery.students.base import Student
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
    "ray_address": "",  # empty: a local Ray started (and stopped) by this process
    "num_workers": 2,
    "deepspeed": "auto",  # auto (on with CUDA) | on | off
    "zero_stage": 2,
    "bf16": "auto",  # auto (on with CUDA) | on | off
    "max_steps": 0,  # cap optimizer steps per epoch (0: no cap; smoke tests)
}


# -- pieces shared by the driver and the workers -------------------------------------------------------
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


def _resolve(name: str) -> str:
    from distillery.students.encoder import resolve_encoder

    return resolve_encoder(name)


def _load_tokenizer(params: dict[str, Any]):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(_resolve(params["tokenizer"] or params["base_model"]))
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
        ids = tok(text, add_special_tokens=False, truncation=False)["input_ids"]
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
        backbone = AutoModel.from_pretrained(_resolve(params["base_model"])).float()  # master weights fp32
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


def _batches(ids: list[list[int]], order: np.ndarray, batch_size: int, pad: int, device):
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


def predict_ids(model, ids: list[list[int]], pad: int, device, batch_size: int = 32, bf16: bool = False):
    import torch

    order = np.argsort([len(x) for x in ids])
    out = np.zeros((len(ids), model.head.out_features), dtype=np.float64)
    model.eval()
    with torch.inference_mode():
        for idx, input_ids, mask in _batches(ids, order, batch_size, pad, device):
            ctx = torch.autocast(device_type=device.type, dtype=torch.bfloat16) if bf16 else _Null()
            with ctx:
                pred = model(input_ids, mask)
            out[idx] = pred.float().cpu().numpy() * 10.0
    return out


class _Null:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def train_loop(config: dict[str, Any]) -> dict[str, Any] | None:
    """One worker's training loop (Ray Train's ``train_loop_per_worker``, or called directly)."""
    import torch

    params = config["params"]
    in_ray = bool(config.get("in_ray"))
    if in_ray:
        import ray.train
        import ray.train.torch

        ctx = ray.train.get_context()
        rank, world = ctx.get_world_rank(), ctx.get_world_size()
        device = ray.train.torch.get_device()
    else:
        rank, world = 0, 1
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cuda = device.type == "cuda"
    use_bf16 = params["bf16"] == "on" or (params["bf16"] == "auto" and cuda)
    use_ds = in_ray and (params["deepspeed"] == "on" or (params["deepspeed"] == "auto" and cuda))
    torch.manual_seed(int(params["seed"]) + rank)
    tok = _load_tokenizer(params)
    pad = tok.pad_token_id or 0
    # pre-tokenised input (``train_ids``/``val_ids``) skips the tokenizer, e.g. on a bare GPU machine
    train_ids = config.get("train_ids") or encode_texts(tok, config["train_texts"], int(params["head_tokens"]),
                                                        int(params["tail_tokens"]))
    val_ids = config.get("val_ids") or encode_texts(tok, config["val_texts"], int(params["head_tokens"]),
                                                    int(params["tail_tokens"]))
    y = torch.tensor(np.asarray(config["train_targets"]) / 10.0, dtype=torch.float32)
    val_y = np.asarray(config["val_targets"], dtype=np.float64)
    model = build_model(params, y.shape[1], vocab_size=len(tok))
    bs = int(params["batch_size"])
    head_params = list(model.head.parameters())
    body_params = [p for p in model.backbone.parameters() if p.requires_grad]
    groups = [{"params": body_params, "lr": float(params["lr"])},
              {"params": head_params, "lr": float(params["head_lr"])}]
    if use_ds:
        import deepspeed

        ds_cfg = deepspeed_config(int(params["zero_stage"]), use_bf16, bs, 1, float(params["lr"]),
                                  float(params["weight_decay"]), world)
        ds_cfg.pop("optimizer")
        optimizer = torch.optim.AdamW(groups, weight_decay=float(params["weight_decay"]))
        engine, optimizer, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, config=ds_cfg)
        net, raw_model = engine, engine.module
    else:
        model = model.to(device)
        if in_ray and world > 1:
            import ray.train.torch

            net = ray.train.torch.prepare_model(model, move_to_device=False)
            raw_model = model
        else:
            net, raw_model = model, model
        optimizer = torch.optim.AdamW(groups, weight_decay=float(params["weight_decay"]))
    rng = np.random.default_rng(int(params["seed"]))
    best_mae, best_state, bad_epochs, history = math.inf, None, 0, []
    sink = config.get("progress") if rank == 0 else None
    epochs = int(params["epochs"])
    for epoch in range(epochs):
        net.train()
        order = rng.permutation(len(train_ids))[rank::world]  # same permutation everywhere, one shard each
        steps, loss_sum = 0, 0.0
        steps_per_epoch = max(1, -(-len(order) // bs))
        if params["max_steps"]:
            steps_per_epoch = min(steps_per_epoch, int(params["max_steps"]))
        every = max(1, steps_per_epoch // 10)  # ~10 updates per epoch: long epochs are not silent
        for idx, input_ids, mask in _batches(train_ids, order, bs, pad, device):
            ctx = torch.autocast(device_type=device.type, dtype=torch.bfloat16) if (use_bf16 and not use_ds) else _Null()
            with ctx:
                pred = net(input_ids, mask)
            loss = torch.nn.functional.mse_loss(pred.float(), y[idx].to(device))
            if use_ds:
                net.backward(loss)
                net.step()
            else:
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(raw_model.parameters(), 1.0)
                optimizer.step()
            steps += 1
            loss_sum += float(loss.detach())
            if steps % every == 0 and steps < steps_per_epoch:
                _emit(sink, {"epoch": epoch + 1, "epochs": epochs, "step": steps, "steps": steps_per_epoch,
                             "train_loss": loss_sum / steps})
            if params["max_steps"] and steps >= int(params["max_steps"]):
                break
        val_pred = predict_ids(raw_model, val_ids, pad, device, bf16=use_bf16)
        val_mae = float(np.abs(np.clip(val_pred, 0, 10) - val_y).mean())
        history.append({"epoch": epoch + 1, "train_loss": loss_sum / max(1, steps), "val_mae": val_mae})
        improved = val_mae < best_mae - 1e-4
        if improved:
            best_mae, bad_epochs = val_mae, 0
            best_state = {k: v.detach().cpu().clone() for k, v in raw_model.state_dict().items()}
        else:
            bad_epochs += 1
        _emit(sink, {"epoch": epoch + 1, "epochs": epochs, "step": steps_per_epoch, "steps": steps_per_epoch,
                     "train_loss": loss_sum / max(1, steps), "val_mae": val_mae})
        stop = bad_epochs > int(params["patience"])
        if in_ray:
            import ray.train

            metrics = {"epoch": epoch + 1, "val_mae": val_mae, "best_val_mae": best_mae}
            if improved and rank == 0:
                with tempfile.TemporaryDirectory() as tmp:
                    torch.save(best_state, Path(tmp) / "model.pt")
                    (Path(tmp) / "history.json").write_text(json.dumps(history))
                    ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))
            else:
                ray.train.report(metrics)
        if stop:
            break
    if not in_ray:
        return {"state": best_state, "history": history, "best_val_mae": best_mae, "model": raw_model}
    return None


def _emit(sink, item: dict[str, Any]) -> None:
    """Send a progress item to the driver: a callable in process, a :class:`ProgressSink` actor under Ray."""
    if sink is None:
        return
    if callable(sink):
        sink(item)
    else:
        sink.report.remote(item)  # fire and forget: progress never slows or fails training


class ProgressSink:
    """A Ray actor that holds the rank-0 worker's progress items until the driver drains them.

    Workers may run on other machines of a Ray cluster, so progress travels through Ray, not the file system.
    """

    def __init__(self):
        self.items: list[dict[str, Any]] = []

    def report(self, item: dict[str, Any]) -> None:
        self.items.append(item)

    def drain(self) -> list[dict[str, Any]]:
        items, self.items = self.items, []
        return items


def describe_progress(item: dict[str, Any]) -> tuple[float, str]:
    """(fraction done, message) of a progress item from the training loop."""
    epochs = max(1, int(item["epochs"]))
    frac = (int(item["epoch"]) - 1 + int(item["step"]) / max(1, int(item["steps"]))) / epochs
    msg = f"epoch {item['epoch']}/{epochs} step {item['step']}/{item['steps']}: train loss {item['train_loss']:.4f}"
    if "val_mae" in item:
        msg = f"epoch {item['epoch']}/{epochs}: val MAE {item['val_mae']:.3f}"
    return min(frac, 1.0), msg


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
        model.load_state_dict(state)
        self._model = model.to("cuda" if torch.cuda.is_available() else "cpu").eval()
        return self

    def _fit_ray(self, config: dict[str, Any], tmp: Path):
        import threading

        import ray
        import torch
        from ray.train import CheckpointConfig, RunConfig, ScalingConfig
        from ray.train.torch import TorchTrainer

        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        started_here = False
        if not ray.is_initialized():
            if self.params["ray_address"]:
                ray.init(address=self.params["ray_address"])
            else:
                ray.init(address="local", _node_ip_address="127.0.0.1", include_dashboard=False,
                         num_cpus=max(2, int(self.params["num_workers"])), log_to_driver=False)
            started_here = True
        stop = threading.Event()
        sink = ray.remote(num_cpus=0)(ProgressSink).remote()

        def drain() -> None:
            for item in ray.get(sink.drain.remote()):
                self._report(*describe_progress(item))

        def watch() -> None:
            while not stop.wait(0.5):
                try:
                    drain()
                except Exception:  # progress is best effort; training reports its own errors
                    logger.debug("progress drain failed", exc_info=True)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            use_gpu = torch.cuda.is_available()
            trainer = TorchTrainer(
                train_loop, train_loop_config={**config, "in_ray": True, "progress": sink},
                scaling_config=ScalingConfig(num_workers=int(self.params["num_workers"]), use_gpu=use_gpu),
                run_config=RunConfig(name=f"finetune-{int(time.time())}", storage_path=str(tmp / "ray"),
                                     checkpoint_config=CheckpointConfig(num_to_keep=1)),
            )
            self._report(0.0, f"fine-tuning on Ray ({self.params['num_workers']} workers, "
                              f"{'GPU' if use_gpu else 'CPU'})")
            result = trainer.fit()
            if result.error:
                raise RuntimeError(f"Ray training failed: {result.error}")
            if result.checkpoint is None:
                raise RuntimeError("Ray training produced no checkpoint")
            with result.checkpoint.as_directory() as folder:
                state = torch.load(Path(folder) / "model.pt", map_location="cpu", weights_only=True)
                history = json.loads((Path(folder) / "history.json").read_text())
            stop.set()
            watcher.join(2)
            drain()  # the last epoch's items
            return state, history
        finally:
            stop.set()
            watcher.join(2)
            if started_here:
                ray.shutdown()

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
