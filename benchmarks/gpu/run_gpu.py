"""The one prepared GPU run (issue 19): vLLM vs torch serving, Ray + DeepSpeed LoRA training, agreement.

    python3 benchmarks/gpu/run_gpu.py                   # on the GPU machine (see benchmarks/gpu/README.md)
    .venv/bin/python benchmarks/gpu/run_gpu.py --dry-run   # here, on CPU: tiny shapes, same code paths

Parts, in this order; each reports its own error and the next ones still run (results are rewritten after
every part, so a run cut short keeps what finished):

train    the project's ``finetune`` student on a Qwen2.5-0.5B-shaped backbone (random weights from the
         config; no download) under Ray Train + DeepSpeed ZeRO-2, LoRA adapters only, bf16 — the chart's
         GPU settings — for a bounded number of steps on real oracle-labelled articles: tokens/s, peak GPU
         memory (nvidia-smi), the loss curve.
register the trained student (or, if training failed, the same shape with random weights) goes into a
         model registry and is loaded back the way the inference service loads it.
vllm     the registered student through the project's vLLM backend (``VllmModel``: exported to a
         mean-pooled regression classifier, ``runner="pooling"``, ``problem_type: regression``):
         articles/s at 512 tokens and the fraction of the FLOP limit (2 x non-embedding params x tokens
         against this GPU's measured bf16 matmul rate). Goal: >= 60%.
agree    the same 200 test articles scored by vLLM and by the torch path (the student's own predict):
         max abs difference <= 0.05 on the 0-10 scale.
torch    the torch path at 512 tokens: the student's forward (bf16 autocast), the exported checkpoint in
         bf16 eager and with torch.compile (the 52% reference), as fractions of the same limit.

Results: benchmarks/results/gpu_run.json and .md (``--dry-run``: gpu_run_cpu_dryrun.*). Exit status 1 when
a part failed or a goal that was measured was missed. Needs build/gpu_run (benchmarks/gpu/prepare_run.py).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# Ray's workers import the project by module name: on the GPU machine it is not installed, only checked out
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
# CUDA is initialised in this process before vLLM starts its engine process: fork would break it
os.environ.setdefault("VLLM_WORKER_MULTIPROC_METHOD", "spawn")

from gpu_throughput import QWEN05_SHAPE, matmul_tflops, time_torch

RESULTS = ROOT / "benchmarks" / "results"
DATA = ROOT / "build" / "gpu_run"
TINY_SHAPE = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
              "num_key_value_heads": 2, "max_position_embeddings": 1024, "tie_word_embeddings": True,
              "vocab_size": 30522}
GOALS = {"vllm_fraction_of_limit": 0.60, "agreement_max_abs_diff": 0.05}


class Run:
    """Runs parts under one deadline, records each one's status, writes the results after every part."""

    def __init__(self, args, device: str):
        self.args, self.device = args, device
        self.deadline = time.monotonic() + args.budget_s
        self.result: dict = {"benchmark": "gpu_run", "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
                             "dry_run": args.dry_run, "device": device, "parts": {}, "goals": {},
                             "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        stem = "gpu_run_cpu_dryrun" if args.dry_run else "gpu_run"
        self.json_path, self.md_path = args.out / f"{stem}.json", args.out / f"{stem}.md"

    def part(self, name: str, fn, needs_s: float = 0.0):
        left = self.deadline - time.monotonic()
        if left < needs_s:
            self.result["parts"][name] = {"status": "skipped",
                                          "reason": f"time budget: {left:.0f}s left, the part needs ~{needs_s:.0f}s"}
            self.write()
            print(f"== {name}: skipped ({left:.0f}s left)", flush=True)
            return None
        print(f"== {name}", flush=True)
        t0 = time.monotonic()
        entry: dict = {}
        self.result["parts"][name] = entry
        try:
            value = fn(entry)
            entry["status"] = entry.get("status", "ok")
            return value
        except Skip as exc:
            entry.update(status="skipped", reason=str(exc))
            return None
        except Exception as exc:  # noqa: BLE001 - one part's failure must not stop the others
            traceback.print_exc()
            entry.update(status="error", error=f"{type(exc).__name__}: {exc}"[:600])
            return None
        finally:
            entry["seconds"] = round(time.monotonic() - t0, 1)
            print(f"== {name}: {entry.get('status')} in {entry['seconds']}s", flush=True)
            self.write()

    def write(self) -> None:
        self.args.out.mkdir(parents=True, exist_ok=True)
        self.result["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.json_path.write_text(json.dumps(self.result, indent=2, default=_jsonable))
        self.md_path.write_text(markdown(self.result))
        out = os.environ.get("OUT")  # the device tool brings back what is under $OUT
        if out and Path(out).is_dir():
            shutil.copy(self.json_path, Path(out) / self.json_path.name)
            shutil.copy(self.md_path, Path(out) / self.md_path.name)


class Skip(Exception):
    """A part that cannot run here (e.g. vLLM on a CPU dry run): recorded as skipped with the reason."""


def _jsonable(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


class GpuMemory:
    """Peak GPU memory in use (all processes: the Ray worker trains in its own) sampled with nvidia-smi."""

    def __init__(self, interval: float = 0.5):
        self.peak_mib, self.interval = 0, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                                     capture_output=True, text=True, timeout=5, check=True).stdout
                self.peak_mib = max(self.peak_mib, max(int(x) for x in out.split()))
            except (OSError, subprocess.SubprocessError, ValueError):
                return
            self._stop.wait(self.interval)

    def __enter__(self):
        if shutil.which("nvidia-smi"):
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(2)
        return False


def load_articles(folder: Path) -> tuple[dict, dict[str, tuple[list[str], np.ndarray]]]:
    if not (folder / "articles.jsonl").is_file():
        raise SystemExit(f"{folder}/articles.jsonl is missing: run benchmarks/gpu/prepare_run.py here and carry "
                         "build/gpu_run with the device call")
    meta = json.loads((folder / "meta.json").read_text())
    splits: dict[str, tuple[list[str], list]] = {}
    for line in (folder / "articles.jsonl").read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        texts, targets = splits.setdefault(rec["split"], ([], []))
        texts.append(rec["text"])
        targets.append(rec["targets"])
    return meta, {k: (t, np.asarray(y, dtype=np.float64)) for k, (t, y) in splits.items()}


def student_params(args, tokenizer: Path) -> dict:
    shape = TINY_SHAPE if args.dry_run else QWEN05_SHAPE
    return {"random_init": True, "model_config": {"model_type": "qwen2", **shape}, "tokenizer": str(tokenizer),
            "head_tokens": args.head_tokens, "tail_tokens": args.tail_tokens, "lora_r": 16, "epochs": args.epochs,
            "max_steps": args.max_steps, "batch_size": args.batch_size, "patience": args.epochs, "seed": 0,
            "use_ray": True, "num_workers": 1, "deepspeed": args.deepspeed, "zero_stage": 2, "bf16": "auto",
            "lr": 2e-4, "head_lr": 1e-3}


# -- parts ------------------------------------------------------------------------------------------------
def train(run: Run, entry: dict, meta: dict, data: dict, tokenizer: Path):
    from distillery.students.finetune import FinetuneStudent, encode_texts

    params = student_params(run.args, tokenizer)
    student = FinetuneStudent(meta["dimensions"], filter=meta["filter"], **params)
    reports: list[tuple[float, float, str]] = []
    student.set_progress(lambda frac, msg: reports.append((time.perf_counter(), frac, msg)))
    (tr_x, tr_y), (va_x, va_y) = data["train"], data["val"]
    t0 = time.perf_counter()
    with GpuMemory() as mem:
        student.fit(tr_x, tr_y, va_x, va_y)
    fit_s = time.perf_counter() - t0
    lengths = [len(i) for i in encode_texts(student._tok, tr_x, params["head_tokens"], params["tail_tokens"])]
    bs, epochs_run = params["batch_size"], len(student.history)
    steps_per_epoch = min(-(-len(tr_x) // bs), params["max_steps"] or 10**9)
    tokens_per_step = bs * float(np.mean(lengths))
    total_steps = epochs_run * steps_per_epoch
    step_reports = [(t, f) for t, f, m in reports if "train loss" in m]
    steady = None
    if len(step_reports) >= 3:  # between the first and last in-epoch reports (validation passes included)
        (t1, f1), (t2, f2) = step_reports[0], step_reports[-1]
        # reports reach the driver through a Ray actor drained every 0.5 s: time spans under 5 s mean nothing
        if t2 - t1 >= 5:
            steady = (f2 - f1) * params["epochs"] * steps_per_epoch * tokens_per_step / (t2 - t1)
    trainable = sum(p.numel() for p in student._model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in student._model.parameters())
    curve = [{"fraction": round(f, 3), "train_loss": float(m.group(1))}
             for _, f, msg in reports if (m := re.search(r"train loss ([0-9.]+)", msg))]
    entry.update({
        "settings": {k: params[k] for k in ("deepspeed", "zero_stage", "bf16", "lora_r", "batch_size", "epochs",
                                           "max_steps", "head_tokens", "tail_tokens", "num_workers")},
        "shape": "tiny (dry run)" if run.args.dry_run else "Qwen2.5-0.5B",
        "train_articles": len(tr_x), "mean_tokens_per_article": float(np.mean(lengths)),
        "optimizer_steps": total_steps, "fit_seconds": fit_s,
        "tokens_per_s_overall": total_steps * tokens_per_step / fit_s,
        "tokens_per_s_steady": steady,
        "peak_gpu_memory_mib": mem.peak_mib or None,
        "trainable_params": trainable, "total_params": total,
        "history": student.history, "loss_curve_running_mean": curve,
        "progress_messages": [m for _, _, m in reports][-40:],
    })
    print(f"trained {total_steps} steps in {fit_s:.0f}s; steady {steady or 0:.0f} tokens/s; "
          f"peak GPU memory {mem.peak_mib} MiB; history {student.history}", flush=True)
    return student


def random_student(run: Run, meta: dict, tokenizer: Path):
    """The same architecture with random weights and a random head (scores vary between articles)."""
    import torch

    from distillery.students.finetune import FinetuneStudent, _load_tokenizer, build_model

    student = FinetuneStudent(meta["dimensions"], filter=meta["filter"], **student_params(run.args, tokenizer))
    student._tok = _load_tokenizer(student.params)
    model = build_model(student.params, len(meta["dimensions"]), vocab_size=len(student._tok))
    torch.manual_seed(1)
    with torch.no_grad():
        model.head.weight.normal_(0, 0.02)
    student._model = model.to(run.device).eval()
    return student


def register(run: Run, entry: dict, student, trained: bool, workdir: Path):
    from distillery.calibration import Calibration
    from distillery.filters import load_filter
    from distillery.registry import ModelRegistry

    spec = load_filter(ROOT / "filters" / "sustainability" / "v1")
    registry = ModelRegistry(workdir / "registry", cache_dir=workdir / "registry-cache")
    info = registry.register(spec, student, Calibration.identity(spec.dimension_names),
                             {"trained_on_gpu_run": float(trained)})
    loaded = registry.load(info)
    entry.update(version=info.version_id, student="trained in part train" if trained else
                 "random weights (part train did not produce a student)")
    return loaded


def flop_limit(run: Run, model) -> dict:
    import torch

    if run.device == "cuda":
        peak = matmul_tflops(torch)
    else:
        peak = matmul_tflops(torch, n=1024, reps=5, device="cpu", dtype=torch.float32)
    # what vLLM serves: the merged backbone (LoRA adapters folded in), so adapter weights do not count
    emb = model.get_input_embeddings().weight.numel()
    nonemb = sum(p.numel() for n, p in model.named_parameters() if "lora_" not in n) - emb
    flop = 2 * nonemb * run.args.tokens
    return {"matmul_tflops": peak, "non_embedding_params": nonemb, "flop_per_article": flop,
            "limit_articles_per_s": peak * 1e12 / flop, "tokens": run.args.tokens}


def serve_vllm(run: Run, entry: dict, loaded, limit: dict, workdir: Path):
    from distillery_services.inference.backends.vllm_backend import VllmModel, vllm_available

    ok, why = vllm_available()
    if not ok:
        if run.args.dry_run:
            raise Skip(why)
        raise RuntimeError(why)
    t0 = time.perf_counter()
    vmodel = VllmModel.from_loaded(loaded, cache_dir=workdir / "vllm-export",
                                   gpu_memory_utilization=run.args.vllm_memory,
                                   max_num_seqs=run.args.vllm_max_seqs)
    entry["startup_seconds"] = time.perf_counter() - t0
    import vllm

    entry["vllm"] = vllm.__version__
    rng = np.random.default_rng(0)
    vocab = int(loaded.student._model.backbone.config.vocab_size)
    n = run.args.vllm_articles
    ids = rng.integers(1, min(vocab, 30000), size=(n, run.args.tokens)).tolist()
    vmodel.regressor(token_ids=ids[:256])  # warm-up: CUDA graphs, allocator
    t0 = time.perf_counter()
    vmodel.regressor(token_ids=ids)
    rate = n / (time.perf_counter() - t0)
    entry.update(articles=n, articles_per_s=rate, fraction_of_limit=rate / limit["limit_articles_per_s"],
                 achieved_tflops=rate * limit["flop_per_article"] / 1e12)
    run.result["goals"]["vllm_fraction_of_limit"] = {"goal": GOALS["vllm_fraction_of_limit"],
                                                     "value": entry["fraction_of_limit"],
                                                     "met": entry["fraction_of_limit"] >= GOALS["vllm_fraction_of_limit"]}
    print(f"vllm: {rate:.0f} articles/s = {entry['fraction_of_limit']:.1%} of the FLOP limit", flush=True)
    return vmodel


def agree(run: Run, entry: dict, loaded, vmodel, data: dict):
    from distillery.students.finetune import encode_texts, predict_ids

    if vmodel is None:
        raise Skip("no vLLM model (see part vllm)")
    texts, targets = data["test"]
    student = loaded.student
    torch_scores = student.predict(texts)  # the torch serving path (bf16 autocast on CUDA)
    ids = encode_texts(student._tok, texts, int(student.params["head_tokens"]), int(student.params["tail_tokens"]))
    device = next(student._model.parameters()).device
    fp32 = predict_ids(student._model, ids, student._tok.pad_token_id or 0, device, bf16=False)
    vllm_scores = vmodel.raw(texts)
    diff = np.abs(vllm_scores - torch_scores)
    entry.update(articles=len(texts), max_abs_diff=float(diff.max()), mean_abs_diff=float(diff.mean()),
                 max_abs_diff_vs_fp32=float(np.abs(vllm_scores - fp32).max()),
                 torch_bf16_vs_fp32_max=float(np.abs(torch_scores - fp32).max()),
                 score_spread=float(np.ptp(torch_scores)),
                 mae_vs_oracle_torch=float(np.abs(np.clip(torch_scores, 0, 10) - targets).mean()))
    met = entry["max_abs_diff"] <= GOALS["agreement_max_abs_diff"]
    run.result["goals"]["agreement_max_abs_diff"] = {"goal": GOALS["agreement_max_abs_diff"],
                                                     "value": entry["max_abs_diff"], "met": met}
    print(f"agreement: max |vllm - torch| = {entry['max_abs_diff']:.4f} over {len(texts)} articles "
          f"(vs fp32: {entry['max_abs_diff_vs_fp32']:.4f}; score spread {entry['score_spread']:.2f})", flush=True)
    if not met:
        entry["status"] = "goal missed"


def serve_torch(run: Run, entry: dict, loaded, limit: dict, workdir: Path):
    import torch
    from distillery_services.inference.backends.vllm_backend import ensure_export

    args, device = run.args, run.device
    model = loaded.student._model
    vocab = int(model.backbone.config.vocab_size)
    runs = entry.setdefault("runs", [])

    def record(name: str, batch: int, rate: float) -> None:
        runs.append({"backend": name, "batch": batch, "articles_per_s": rate,
                     "fraction_of_limit": rate / limit["limit_articles_per_s"],
                     "achieved_tflops": rate * limit["flop_per_article"] / 1e12})
        print(f"{name:>22} batch {batch}: {rate:8.1f} articles/s = {runs[-1]['fraction_of_limit']:.1%}", flush=True)

    autocast = device == "cuda"

    def student_forward(ids, mask):
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=autocast):
            return model(ids, mask)

    b = args.torch_batch
    record("torch-student (autocast)" if autocast else "torch-student (fp32)", b,
           time_torch(torch, student_forward, b, args.tokens, vocab, args.seconds, device=device))
    from transformers import AutoModelForSequenceClassification

    folder = ensure_export(loaded, workdir / "vllm-export")
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    hf = AutoModelForSequenceClassification.from_pretrained(folder, dtype=dtype, attn_implementation="sdpa")
    hf = hf.to(device).eval()

    def eager(ids, mask):
        return hf(input_ids=ids, attention_mask=mask).logits

    label = "bf16" if device == "cuda" else "fp32"
    record(f"torch-eager {label}", b, time_torch(torch, eager, b, args.tokens, vocab, args.seconds, device=device))
    if args.no_compile or run.deadline - time.monotonic() < 90:
        entry["compile"] = "not run (--no-compile or under 90 s left)"
        return
    compiled = torch.compile(hf.model, dynamic=False)

    def comp(ids, mask):
        hidden = compiled(input_ids=ids, attention_mask=mask).last_hidden_state
        return hf.score(hidden[:, -1])  # full-length rows: the last token is the pooled one

    record(f"torch-compile {label}", b, time_torch(torch, comp, b, args.tokens, vocab, args.seconds, device=device))


def markdown(result: dict) -> str:
    lines = [f"# GPU run ({result.get('device_name', result['device'])})", "",
             f"`{result['command']}` — started {result['started_at']}" + (" — CPU DRY RUN: tiny shapes, "
                                                                          "figures mean nothing" if result["dry_run"]
                                                                          else ""), ""]
    if "environment" in result:
        lines += ["Versions: " + ", ".join(f"{k} {v}" for k, v in result["environment"].items()), ""]
    lines += ["| part | status | seconds | detail |", "|---|---|---|---|"]
    for name, p in result["parts"].items():
        detail = p.get("error") or p.get("reason") or ""
        if name == "train" and p.get("status") == "ok":
            steady = f"{p['tokens_per_s_steady']:.0f}" if p["tokens_per_s_steady"] else "n/a (too short)"
            detail = (f"{p['optimizer_steps']} steps, {p['tokens_per_s_overall']:.0f} tokens/s overall (Ray, model "
                      f"build and validation included), {steady} steady, peak GPU {p['peak_gpu_memory_mib']} MiB, "
                      f"trainable {p['trainable_params'] / 1e6:.2f}M of {p['total_params'] / 1e6:.0f}M params")
        elif name == "vllm" and "articles_per_s" in p:
            detail = f"{p['articles_per_s']:.0f} articles/s = {p['fraction_of_limit']:.1%} of the FLOP limit"
        elif name == "agree" and "max_abs_diff" in p:
            detail = f"max abs diff {p['max_abs_diff']:.4f} over {p['articles']} articles"
        lines.append(f"| {name} | {p.get('status', 'running')} | {p.get('seconds', '')} | {detail} |")
    lim = result.get("limit")
    if lim:
        lines += ["", (f"FLOP limit: {lim['limit_articles_per_s']:.0f} articles/s at {lim['tokens']} tokens "
                       f"({lim['non_embedding_params'] / 1e6:.2f}M non-embedding params, measured matmul "
                       f"{lim['matmul_tflops']:.2f} TFLOP/s).")]
    rows = [dict(r) for r in result["parts"].get("torch", {}).get("runs", [])]
    v = result["parts"].get("vllm", {})
    if "articles_per_s" in v:
        rows.insert(0, {"backend": "vllm", "batch": v["articles"], **v})
    if rows:
        lines += ["", "| backend | batch | articles/s | fraction of FLOP limit |", "|---|---|---|---|"]
        lines += [f"| {r['backend']} | {r['batch']} | {r['articles_per_s']:.1f} | {r['fraction_of_limit']:.1%} |"
                  for r in rows]
    curve = result["parts"].get("train", {}).get("history")
    if curve:
        lines += ["", "| epoch | train loss | val MAE |", "|---|---|---|"]
        lines += [f"| {h['epoch']} | {h['train_loss']:.4f} | {h['val_mae']:.3f} |" for h in curve]
    if result["goals"]:
        lines += ["", "| goal | target | value | met |", "|---|---|---|---|"]
        lines += [f"| {k} | {g['goal']} | {g['value']:.4f} | {'yes' if g['met'] else 'NO'} |"
                  for k, g in result["goals"].items()]
    return "\n".join(lines) + "\n"


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in ("torch", "transformers", "peft", "ray", "deepspeed", "vllm"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "missing"
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dry-run", action="store_true", help="CPU, tiny shapes: checks the code paths only")
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--budget-s", type=float, default=450, help="parts that no longer fit are skipped")
    ap.add_argument("--tokens", type=int, default=512)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--max-steps", type=int, default=15, help="optimizer steps per epoch")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--head-tokens", type=int, default=256)
    ap.add_argument("--tail-tokens", type=int, default=256)
    ap.add_argument("--deepspeed", default="on", choices=["on", "off", "auto"])
    ap.add_argument("--vllm-articles", type=int, default=4096)
    ap.add_argument("--vllm-max-seqs", type=int, default=256)
    ap.add_argument("--vllm-memory", type=float, default=0.45, help="vLLM's gpu_memory_utilization")
    ap.add_argument("--torch-batch", type=int, default=256)
    ap.add_argument("--seconds", type=float, default=5.0, help="timing window of each torch measurement")
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--parts", default="train,register,vllm,agree,torch")
    args = ap.parse_args(argv)
    if args.dry_run:  # tiny and quick; DeepSpeed on CPU (gloo) is what CI-like machines can check
        for k, v in {"tokens": 64, "epochs": 2, "max_steps": 3, "batch_size": 4, "head_tokens": 48, "tail_tokens": 16,
                     "vllm_articles": 64, "torch_batch": 8, "seconds": 1.0}.items():
            if getattr(args, k) == ap.get_default(k):
                setattr(args, k, v)
        args.no_compile = True
    import torch

    cuda = torch.cuda.is_available()
    if not cuda and not args.dry_run:
        print("no CUDA device: this run needs a GPU (use --dry-run to check the code paths on CPU)", file=sys.stderr)
        return 2
    run = Run(args, "cuda" if cuda else "cpu")
    run.result["device_name"] = torch.cuda.get_device_name(0) if cuda else f"CPU ({os.cpu_count()} cores)"
    run.result["environment"] = versions()
    meta, data = load_articles(args.data)
    tokenizer = (args.data / "tokenizer").resolve()
    wanted = set(args.parts.split(","))
    workdir = Path(tempfile.mkdtemp(prefix="gpu-run-"))
    try:
        student = run.part("train", lambda e: train(run, e, meta, data, tokenizer), 60) if "train" in wanted else None
        trained = student is not None
        if student is None:
            student = random_student(run, meta, tokenizer)
        loaded = run.part("register", lambda e, s=student: register(run, e, s, trained, workdir), 20)
        del student
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()
        if loaded is None:
            return 1
        limit = flop_limit(run, loaded.student._model.backbone)
        run.result["limit"] = limit
        vmodel = None
        if "vllm" in wanted:
            vmodel = run.part("vllm", lambda e: serve_vllm(run, e, loaded, limit, workdir), 60)
        if "agree" in wanted:
            run.part("agree", lambda e: agree(run, e, loaded, vmodel, data), 10)
        if "torch" in wanted:
            run.part("torch", lambda e: serve_torch(run, e, loaded, limit, workdir), 20)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        run.write()
    print(markdown(run.result), flush=True)
    failed = [n for n, p in run.result["parts"].items() if p.get("status") not in ("ok", "skipped")]
    missed = [k for k, g in run.result["goals"].items() if not g["met"]]
    if failed or missed:
        print(f"FAILED parts: {failed}; goals missed: {missed}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
