"""Training parts (distillery.parallel) in process: what a job's runner sees, and that a student fitted through a
recording runner is the same model as one fitted directly; fine-tuning checkpoints hold only the adapters."""

from __future__ import annotations

import numpy as np
import pytest

from distillery import parallel
from distillery.students import make_student


def test_chunks_cut_work_into_contiguous_pieces_of_a_minimum_size():
    assert parallel.chunks(10, 3) == [(0, 3), (3, 7), (7, 10)]
    assert parallel.chunks(100, 8, min_size=64) == [(0, 100)]  # too small to split
    assert parallel.chunks(300, 4, min_size=64) == [(0, 75), (75, 150), (150, 225), (225, 300)]
    assert parallel.chunks(0, 4) == []


def test_a_job_runner_records_every_stage_and_part_and_reports_progress():
    seen = []
    runner = parallel.SerialRunner(on_stage=seen.append)
    assert runner.map(pow, [(2, 3), (3, 2)], stage="powers") == [8, 9]
    assert runner.call(abs, -4, stage="powers") == 4  # the same stage again gets its own name
    assert [(s.stage, s.done, s.total) for s in seen] == [("powers", 1, 2), ("powers", 2, 2), ("powers #2", 1, 1)]
    report = runner.nodes_report()
    assert report["stages"] == {"powers": {"local": 2}, "powers #2": {"local": 1}}
    assert [p["part"] for p in report["parts"]] == [0, 1, 0]


def test_outside_a_job_parts_run_in_process_and_leave_no_records():
    assert parallel.current() is parallel.current() and not parallel.current().distributed
    parallel.current().map(abs, [(-1,)], stage="x")
    assert parallel.current().parts == []


@pytest.mark.parametrize("kind", ["stack", "ensemble"])
def test_students_fitted_through_a_job_runner_are_the_same_model(data, kind):
    (tr_x, tr_y), (va_x, va_y), (te_x, _) = data
    tr_x, tr_y = tr_x[:120], tr_y[:120]
    params = {"members": [{"kind": "lexical"}, {"kind": "probe", "params": {"head_tokens": 48, "tail_tokens": 16}}],
              "folds": 2} if kind == "stack" else {"k": 2}
    direct = make_student(kind, ["climate", "evidence", "community"], **params).fit(tr_x, tr_y, va_x, va_y)
    stages = []
    with parallel.use_runner(parallel.SerialRunner(on_stage=stages.append)) as runner:
        recorded = make_student(kind, ["climate", "evidence", "community"], **params).fit(tr_x, tr_y, va_x, va_y)
    assert np.allclose(direct.predict(te_x), recorded.predict(te_x))
    expected = {"stack": {"stack members": 2 * (2 + 1)}, "ensemble": {"ensemble members": 2}}[kind]
    for stage, parts in expected.items():
        assert runner.nodes_report()["stages"][stage] == {"local": parts}


def test_finetune_checkpoints_hold_only_the_adapters_and_the_head():
    import torch

    from distillery.students.finetune import DEFAULTS, build_model, load_trained_state, trained_state
    from distillery.students.params import check_params
    from tests.unit.students.test_finetune import _params

    params = check_params("finetune", DEFAULTS, _params())
    model = build_model(params, 2, vocab_size=64)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.requires_grad:
                p.add_(0.01)  # "trained"
    state = trained_state(model, params)
    assert state and all("lora_" in k or k.startswith("head.") for k in state)
    assert sum(v.numel() for v in state.values()) < sum(v.numel() for v in model.state_dict().values()) / 2
    fresh = build_model(params, 2, vocab_size=64)  # the frozen base again (same seed; the model cache in production)
    load_trained_state(fresh, state)
    ids = torch.randint(0, 64, (3, 9))
    mask = torch.ones_like(ids)
    model.eval()
    fresh.eval()
    assert torch.allclose(model(ids, mask), fresh(ids, mask))
    with pytest.raises(ValueError, match="does not match"):
        load_trained_state(build_model(params, 2, vocab_size=64), {k: v for k, v in state.items() if "head" not in k})


def test_models_come_from_the_model_cache_never_a_hub(tmp_path, monkeypatch):
    from distillery.students.model_cache import ModelNotFoundError, resolve_model

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hf-cache"))
    folder = tmp_path / "cache" / "Org" / "Tiny-1B"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    assert resolve_model("Org/Tiny-1B", cache=str(tmp_path / "cache")) == str(folder)
    snapshot = tmp_path / "cache" / "models--Org--Other" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    assert resolve_model("Org/Other", cache=str(tmp_path / "cache")) == str(snapshot)
    with pytest.raises(ModelNotFoundError, match="never downloaded"):
        resolve_model("Org/Missing", cache=str(tmp_path / "cache"))
    with pytest.raises(ModelNotFoundError, match="model name"):
        resolve_model("Org/../../secrets", cache=str(tmp_path / "cache"))
    assert resolve_model("all-MiniLM-L6-v2").endswith(tuple("0123456789abcdefghijklmnopqrstuvwxyz/_-"))
