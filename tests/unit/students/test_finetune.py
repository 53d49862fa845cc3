"""The finetune student for real: tiny random Qwen2-like backbone + LoRA, Ray Train with 2 CPU workers."""

from __future__ import annotations

import os

import numpy as np
import pytest

from distillery.students import compose_text, load_student, make_student
from distillery.students.finetune import deepspeed_config, validate_deepspeed_config
from services.trainer.synthetic import generate

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
