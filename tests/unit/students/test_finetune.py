"""The finetune student for real: tiny random Qwen2-like backbone + LoRA, Ray Train with 2 CPU workers."""

from __future__ import annotations

import os

import numpy as np
import pytest

from distillery.students import compose_text, load_student, make_student
from distillery.students.finetune import deepspeed_config, validate_deepspeed_config
from distillery.testing.labelled import generate

DIMS = ["climate", "evidence"]
TINY = {"model_type": "qwen2", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 256}


def _data(n, seed):
    records = generate(DIMS, n, seed=seed, noise=0.3)
    return ([compose_text(r["title"], r["text"]) for r in records],
            np.array([[r["dimension_scores"][d] for d in DIMS] for r in records]))


def _params(**kw):
    return {"random_init": True, "model_config": TINY, "tokenizer": "all-MiniLM-L6-v2", "head_tokens": 48,
            "tail_tokens": 16, "lora_r": 4, "lr": 3e-3, "head_lr": 1e-2, "epochs": 3, "batch_size": 16,
            "patience": 3, **kw}


def test_deepspeed_zero2_config_is_built_and_validated_on_cpu():
    assert deepspeed_config(micro_batch=8, grad_accum=2, world_size=2)["train_batch_size"] == 32
    # validated here as one process (DeepSpeed checks the batch arithmetic against its world size)
    cfg = deepspeed_config(zero_stage=2, bf16=True, micro_batch=8, grad_accum=2, world_size=1)
    parsed = validate_deepspeed_config(cfg)
    assert parsed.zero_optimization_stage == 2 and parsed.bfloat16_config.enabled
    assert parsed.train_batch_size == 16 and parsed.gradient_accumulation_steps == 2
    with pytest.raises(AssertionError, match="train_batch_size"):
        validate_deepspeed_config({**cfg, "train_batch_size": 7})  # inconsistent with micro batch x accum x world
    with pytest.raises(ValueError, match="zero_stage"):
        deepspeed_config(zero_stage=5)


@pytest.mark.slow
def test_finetune_on_ray_with_two_cpu_workers(tmp_path):
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    tr_x, tr_y = _data(128, 1)
    va_x, va_y = _data(32, 2)
    te_x, te_y = _data(40, 3)
    student = make_student("finetune", DIMS, **_params(num_workers=2, epochs=2))
    seen = []
    student.set_progress(lambda frac, msg: seen.append((frac, msg)))
    student.fit(tr_x, tr_y, va_x, va_y)
    assert student.history and all("val_mae" in h for h in student.history)
    # progress travels from the rank-0 worker through a Ray actor (works on a cluster, not only locally)
    epoch_ends = [msg for _, msg in seen if "val MAE" in msg]
    assert epoch_ends[-1].startswith("epoch 2/2: val MAE") and len(epoch_ends) == 2
    assert any("step" in msg for _, msg in seen)
    fracs = [frac for frac, _ in seen]
    assert fracs == sorted(fracs) and fracs[-1] == 1.0
    pred = student.predict(te_x)
    assert pred.shape == (40, 2)
    mean_mae = np.abs(tr_y.mean(0) - te_y).mean()
    assert np.abs(pred - te_y).mean() < mean_mae
    student.save(tmp_path / "ft")
    again = load_student(tmp_path / "ft")
    np.testing.assert_allclose(again.predict(te_x), pred, rtol=1e-4, atol=1e-4)


def test_finetune_without_ray_and_bad_params():
    tr_x, tr_y = _data(60, 4)
    student = make_student("finetune", DIMS, **_params(use_ray=False, epochs=1, max_steps=2))
    seen = []
    student.set_progress(lambda frac, msg: seen.append((frac, msg)))
    student.fit(tr_x, tr_y, tr_x[:10], tr_y[:10])
    assert student.predict(tr_x[:3]).shape == (3, 2) and len(student.history) == 1
    assert seen[-1][0] == 1.0 and seen[-1][1].startswith("epoch 1/1: val MAE")
    with pytest.raises(ValueError, match="deepspeed must be one of"):
        make_student("finetune", DIMS, deepspeed="maybe")


@pytest.mark.slow
def test_finetune_checkpoints_on_s3_hold_only_the_adapters_and_the_head(s3_server, monkeypatch):
    """Ray Train's storage on the job's s3:// URI (a moto server): the checkpoint every node can reach holds the
    LoRA adapters and the head, not the frozen base."""
    import uuid

    import ray
    import s3fs
    import torch

    from distillery import parallel

    for key, value in s3_server.items():
        monkeypatch.setenv(key, value)
    if ray.is_initialized():  # a local Ray started before these variables were set would not give them to its workers
        ray.shutdown()
    tr_x, tr_y = _data(48, 5)
    uri = f"s3://models/checkpoints-{uuid.uuid4().hex[:8]}"
    student = make_student("finetune", DIMS, **_params(num_workers=1, epochs=1, max_steps=2))
    with parallel.use_runner(parallel.SerialRunner()) as runner:
        runner.storage_uri = uri
        student.fit(tr_x, tr_y, tr_x[:8], tr_y[:8])
    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3_server["AWS_ENDPOINT_URL_S3"]})
    saved = [p for p in fs.find(uri.removeprefix("s3://")) if p.endswith("/model.pt")]
    assert len(saved) == 1, saved
    with fs.open(saved[0], "rb") as fh:
        state = torch.load(fh, map_location="cpu", weights_only=True)
    full = student._model.state_dict()
    assert state and all("lora_" in k or k.startswith("head.") for k in state)
    assert sum(v.numel() for v in state.values()) < sum(v.numel() for v in full.values()) / 2
    for key, value in state.items():  # the fitted student is that checkpoint
        assert torch.equal(full[key].cpu(), value)


def test_a_finetune_run_resumes_from_its_checkpoint_after_a_restart(tmp_path):
    """What a Ray Train restart (FailureConfig) does: the loop finds the last checkpoint and continues after its
    epoch instead of training from the start."""
    from distillery.students import finetune_loop

    tr_x, tr_y = _data(40, 6)
    params = make_student("finetune", DIMS, **_params(use_ray=False, epochs=2, max_steps=1)).params
    config = {"params": params, "train_texts": tr_x, "train_targets": tr_y.tolist(), "val_texts": tr_x[:8],
              "val_targets": tr_y[:8].tolist()}
    first = finetune_loop.train_loop(config)
    assert [h["epoch"] for h in first["history"]] == [1, 2]

    # what _resume reads from a run whose earlier attempt checkpointed after epoch 1
    checkpoint = {"state": first["state"], "history": first["history"][:1]}
    resumed = finetune_loop.Progress(best_mae=checkpoint["history"][0]["val_mae"], best_state=checkpoint["state"],
                                     history=list(checkpoint["history"]))
    trained_epochs = []
    original = finetune_loop._train_epoch

    def counting(w, order, epoch):
        trained_epochs.append(epoch)
        return original(w, order, epoch)

    from unittest import mock

    with mock.patch.object(finetune_loop, "_resume", lambda w: resumed), \
            mock.patch.object(finetune_loop, "_train_epoch", counting):
        again = finetune_loop.train_loop(config)
    assert trained_epochs == [1]  # epoch 0 came from the checkpoint
    assert [h["epoch"] for h in again["history"]] == [1, 2]
