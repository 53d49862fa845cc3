"""The finetune student's training loop: one worker's loop (Ray Train's ``train_loop_per_worker``, or called
directly without Ray), with early stopping on validation MAE and the best epoch's weights kept.

Under Ray every improved epoch is a checkpoint (adapters + head only with LoRA) on the run's storage; when Ray
Train restarts the workers after a failure (``FailureConfig``), the loop resumes from that checkpoint instead of
starting again.
"""

from __future__ import annotations

import json
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from distillery.students.finetune_model import (
    autocast,
    batches,
    build_model,
    deepspeed_config,
    encode_texts,
    load_tokenizer,
    load_trained_state,
    predict_ids,
    trained_state,
)


@dataclass
class Worker:
    """Everything one worker trains with."""

    params: dict[str, Any]
    in_ray: bool
    rank: int
    world: int
    device: Any
    use_bf16: bool
    use_ds: bool
    pad: int = 0
    train_ids: list = field(default_factory=list)
    val_ids: list = field(default_factory=list)
    y: Any = None
    val_y: Any = None
    net: Any = None
    raw_model: Any = None
    optimizer: Any = None
    sink: Any = None


@dataclass
class Progress:
    """Where training stands: the best validation MAE, its weights, the epochs so far."""

    best_mae: float = math.inf
    best_state: dict | None = None
    bad_epochs: int = 0
    history: list = field(default_factory=list)


def _worker(config: dict[str, Any]) -> Worker:
    import torch

    params, in_ray = config["params"], bool(config.get("in_ray"))
    if in_ray:
        import ray.train
        import ray.train.torch

        ctx = ray.train.get_context()
        rank, world, device = ctx.get_world_rank(), ctx.get_world_size(), ray.train.torch.get_device()
    else:
        rank, world = 0, 1
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cuda = device.type == "cuda"
    use_bf16 = params["bf16"] == "on" or (params["bf16"] == "auto" and cuda)
    use_ds = in_ray and (params["deepspeed"] == "on" or (params["deepspeed"] == "auto" and cuda))
    return Worker(params, in_ray, rank, world, device, use_bf16, use_ds,
                  sink=config.get("progress") if rank == 0 else None)


def _data(w: Worker, config: dict[str, Any]):
    """Token ids and scaled targets; pre-tokenised input (``train_ids``/``val_ids``) skips the tokenizer."""
    import torch

    p = w.params
    tok = load_tokenizer(p)
    w.pad = tok.pad_token_id or 0
    head, tail = int(p["head_tokens"]), int(p["tail_tokens"])
    w.train_ids = config.get("train_ids") or encode_texts(tok, config["train_texts"], head, tail)
    w.val_ids = config.get("val_ids") or encode_texts(tok, config["val_texts"], head, tail)
    w.y = torch.tensor(np.asarray(config["train_targets"]) / 10.0, dtype=torch.float32)
    w.val_y = np.asarray(config["val_targets"], dtype=np.float64)
    return len(tok)


def _model(w: Worker, vocab_size: int) -> None:
    """The model and its optimizer: DeepSpeed ZeRO on CUDA, DDP across Ray workers, else plain."""
    import torch

    p = w.params
    model = build_model(p, w.y.shape[1], vocab_size=vocab_size)
    groups = [{"params": [q for q in model.backbone.parameters() if q.requires_grad], "lr": float(p["lr"])},
              {"params": list(model.head.parameters()), "lr": float(p["head_lr"])}]
    optimizer = torch.optim.AdamW(groups, weight_decay=float(p["weight_decay"]))
    if w.use_ds:
        import deepspeed

        ds_cfg = deepspeed_config(int(p["zero_stage"]), w.use_bf16, int(p["batch_size"]), 1, float(p["lr"]),
                                  float(p["weight_decay"]), w.world)
        ds_cfg.pop("optimizer")
        engine, w.optimizer, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, config=ds_cfg)
        w.net, w.raw_model = engine, engine.module
        return
    model = model.to(w.device)
    w.net, w.raw_model, w.optimizer = model, model, optimizer
    if w.in_ray and w.world > 1:
        import ray.train.torch

        w.net = ray.train.torch.prepare_model(model, move_to_device=False)


def _resume(w: Worker) -> Progress:
    """The progress of an earlier attempt of this run (Ray Train restarted the workers), else a fresh start."""
    import torch

    if not w.in_ray:
        return Progress()
    import ray.train

    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return Progress()
    with checkpoint.as_directory() as folder:
        state = torch.load(Path(folder) / "model.pt", map_location="cpu", weights_only=True)
        history = json.loads((Path(folder) / "history.json").read_text())
    load_trained_state(w.raw_model, state)
    best = min(h["val_mae"] for h in history)
    return Progress(best_mae=best, best_state=state, history=history)


def _train_epoch(w: Worker, order: np.ndarray, epoch: int) -> tuple[float, int, int]:
    """One pass over this worker's shard; (loss sum, steps, steps per epoch)."""
    import torch

    p, epochs, bs = w.params, int(w.params["epochs"]), int(w.params["batch_size"])
    steps, loss_sum = 0, 0.0
    steps_per_epoch = max(1, -(-len(order) // bs))
    if p["max_steps"]:
        steps_per_epoch = min(steps_per_epoch, int(p["max_steps"]))
    every = max(1, steps_per_epoch // 10)  # ~10 updates per epoch: long epochs are not silent
    w.net.train()
    for idx, input_ids, mask in batches(w.train_ids, order, bs, w.pad, w.device):
        with autocast(w.device, w.use_bf16 and not w.use_ds):
            pred = w.net(input_ids, mask)
        loss = torch.nn.functional.mse_loss(pred.float(), w.y[idx].to(w.device))
        if w.use_ds:
            w.net.backward(loss)
            w.net.step()
        else:
            w.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(w.raw_model.parameters(), 1.0)
            w.optimizer.step()
        steps += 1
        loss_sum += float(loss.detach())
        if steps % every == 0 and steps < steps_per_epoch:
            emit(w.sink, {"epoch": epoch + 1, "epochs": epochs, "step": steps, "steps": steps_per_epoch,
                          "train_loss": loss_sum / steps})
        if p["max_steps"] and steps >= int(p["max_steps"]):
            break
    return loss_sum, steps, steps_per_epoch


def _end_epoch(w: Worker, progress: Progress, epoch: int, loss_sum: float, steps: int, steps_per_epoch: int) -> bool:
    """Validate, keep the best weights, report (a checkpoint when improved, under Ray); True to stop early."""
    val_pred = predict_ids(w.raw_model, w.val_ids, w.pad, w.device, bf16=w.use_bf16)
    val_mae = float(np.abs(np.clip(val_pred, 0, 10) - w.val_y).mean())
    train_loss = loss_sum / max(1, steps)
    progress.history.append({"epoch": epoch + 1, "train_loss": train_loss, "val_mae": val_mae})
    improved = val_mae < progress.best_mae - 1e-4
    if improved:
        progress.best_mae, progress.bad_epochs = val_mae, 0
        progress.best_state = trained_state(w.raw_model, w.params)
    else:
        progress.bad_epochs += 1
    epochs = int(w.params["epochs"])
    emit(w.sink, {"epoch": epoch + 1, "epochs": epochs, "step": steps_per_epoch, "steps": steps_per_epoch,
                  "train_loss": train_loss, "val_mae": val_mae})
    if w.in_ray:
        _report(w, progress, epoch, val_mae, improved)
    return progress.bad_epochs > int(w.params["patience"])


def _report(w: Worker, progress: Progress, epoch: int, val_mae: float, improved: bool) -> None:
    import ray.train
    import torch

    metrics = {"epoch": epoch + 1, "val_mae": val_mae, "best_val_mae": progress.best_mae}
    if not (improved and w.rank == 0):
        ray.train.report(metrics)
        return
    with tempfile.TemporaryDirectory() as tmp:
        torch.save(progress.best_state, Path(tmp) / "model.pt")
        (Path(tmp) / "history.json").write_text(json.dumps(progress.history))
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))


def train_loop(config: dict[str, Any]) -> dict[str, Any] | None:
    """One worker's training loop (Ray Train's ``train_loop_per_worker``, or called directly)."""
    import torch

    w = _worker(config)
    torch.manual_seed(int(w.params["seed"]) + w.rank)
    _model(w, _data(w, config))
    progress = _resume(w)
    _announce(w, config)
    rng = np.random.default_rng(int(w.params["seed"]))
    for epoch in range(int(w.params["epochs"])):
        order = rng.permutation(len(w.train_ids))[w.rank::w.world]  # same permutation everywhere, one shard each
        if epoch < len(progress.history):
            continue  # done by an earlier attempt (resumed from its checkpoint)
        if _end_epoch(w, progress, epoch, *_train_epoch(w, order, epoch)):
            break
    if not w.in_ray:
        return {"state": progress.best_state, "history": progress.history, "best_val_mae": progress.best_mae,
                "model": w.raw_model}
    return None


def _announce(w: Worker, config: dict[str, Any]) -> None:
    """Under Ray, every rank says which node it runs on (the job report records which node ran which rank)."""
    if not (w.in_ray and config.get("progress") is not None):
        return
    import ray

    from distillery.parallel import node_ip

    emit(config["progress"], {"type": "worker", "rank": w.rank, "node_id": ray.get_runtime_context().get_node_id(),
                              "ip": node_ip()})


def emit(sink, item: dict[str, Any]) -> None:
    """Send a progress item to the driver: a callable in process, a ``ProgressSink`` actor under Ray."""
    if sink is None:
        return
    if callable(sink):
        sink(item)
    else:
        sink.report.remote(item)  # fire and forget: progress never slows or fails training


def describe_progress(item: dict[str, Any]) -> tuple[float, str]:
    """(fraction done, message) of a progress item from the training loop."""
    epochs = max(1, int(item["epochs"]))
    frac = (int(item["epoch"]) - 1 + int(item["step"]) / max(1, int(item["steps"]))) / epochs
    msg = f"epoch {item['epoch']}/{epochs} step {item['step']}/{item['steps']}: train loss {item['train_loss']:.4f}"
    if "val_mae" in item:
        msg = f"epoch {item['epoch']}/{epochs}: val MAE {item['val_mae']:.3f}"
    return min(frac, 1.0), msg
