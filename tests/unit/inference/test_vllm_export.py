"""The vLLM backend's export of a finetune student: the checkpoint vLLM loads computes the student's scores.

vLLM itself needs a GPU (the serving test is benchmarks/gpu/run_gpu.py); here the exported weights are
checked on CPU by doing what vLLM's pooling runner does with them: mean-pool the backbone's last hidden
states and apply ``score`` (weight and bias), with ``problem_type: regression`` (no activation)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from distillery_services.inference.backends.vllm_backend import (
    HEAD_FILE,
    VllmModel,
    VllmUnavailableError,
    export_sequence_classifier,
    vllm_available,
)

from distillery.students.finetune import FinetuneStudent, _load_tokenizer, build_model, encode_texts

DIMS = ["climate", "evidence", "novelty"]
TINY = {"model_type": "qwen2", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 256}
TEXTS = ["Solar farms cut emissions in the region by a third, the audit found.",
         "A short note.", "Wind " * 80, "Investors weigh carbon prices against grid costs in a long report."]


@pytest.fixture(scope="module")
def student():
    import torch

    s = FinetuneStudent(DIMS, random_init=True, model_config=TINY, tokenizer="all-MiniLM-L6-v2", head_tokens=40,
                        tail_tokens=20, lora_r=4, use_ray=False)
    s._tok = _load_tokenizer(s.params)
    s._model = build_model(s.params, len(DIMS), vocab_size=len(s._tok)).eval()
    torch.manual_seed(1)
    with torch.no_grad():  # a trained-looking student: non-zero head and LoRA updates that matter
        s._model.head.weight.normal_(0, 0.05)
        s._model.head.bias.copy_(torch.tensor([0.2, 0.5, 0.7]))
        for name, p in s._model.backbone.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.2)
    return s


def test_exported_checkpoint_reproduces_the_students_scores(student, tmp_path):
    import torch
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModel

    before = student.predict(TEXTS)
    out = export_sequence_classifier(student, tmp_path / "hf")
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["Qwen2ForSequenceClassification"]
    assert config["problem_type"] == "regression" and len(config["id2label"]) == 3
    assert json.loads((out / HEAD_FILE).read_text())["pooling"] == "MEAN"
    np.testing.assert_array_equal(student.predict(TEXTS), before)  # the student keeps its LoRA modules

    state = load_file(str(out / "model.safetensors"))
    assert not any("lora" in k for k in state) and {"score.weight", "score.bias"} <= set(state)
    base = AutoModel.from_config(AutoConfig.from_pretrained(out)).float().eval()
    base.load_state_dict({k.removeprefix("model."): v.float() for k, v in state.items() if k.startswith("model.")})
    ids = encode_texts(student._tok, TEXTS, 40, 20)
    got = []
    with torch.no_grad():
        for row in ids:  # one prompt at a time, no padding: as vLLM schedules them
            h = base(input_ids=torch.tensor([row])).last_hidden_state[0].mean(0)
            got.append((h @ state["score.weight"].T + state["score.bias"]).numpy())
    # the checkpoint holds bf16 weights (8-bit mantissa), the student fp32: ~1% of the score range apart
    diff = np.abs(np.array(got) - before).max()
    assert diff < 0.02 * np.abs(before).max(), (diff, before)
    assert np.ptp(before, axis=0).min() > 0.1  # the scores differ between texts: the check can fail


def test_only_fitted_finetune_students_are_exported(tmp_path):
    with pytest.raises(VllmUnavailableError, match="fitted finetune"):
        export_sequence_classifier(FinetuneStudent(DIMS), tmp_path)


@pytest.mark.skipif(vllm_available()[0], reason="checks the message given where vLLM cannot run")
def test_serving_without_vllm_or_gpu_says_what_to_do(student):
    class Info:
        version_id, kind, dimensions = "v1", "finetune", DIMS

    class Loaded:
        info, calibration = Info(), None

    Loaded.student = student
    with pytest.raises(VllmUnavailableError, match="vllm"):
        VllmModel.from_loaded(Loaded())
