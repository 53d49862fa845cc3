"""Benchmark students on the real sustainability/v1 oracle set (7,608 articles, 8 dimensions).

    .venv/bin/python benchmarks/train_sustainability.py [--students lexical,probe,stack] [--limit N]
        [--ray off|local|cluster|local,cluster] [--runtime auto|torch|onnx|openvino] [--fresh-cache]

``--ray local`` runs every student's parts (encoder batches, stack members and folds, probe heads, calibration)
as Ray tasks on a local Ray, as a trainer job does; ``--ray cluster`` on a 2-node Ray cluster started here (a head
and a worker, ``ray start`` processes, each with half the CPUs); ``off`` (the default) in this process. The fit
times per student then compare the three (results are written under ``<name>_ray_<mode>`` unless ``--name``);
``--ray local,cluster`` runs both one after the other and also writes ``train_sustainability_ray_modes`` (one
table: every student's wall time and test MAE in each mode).

The stack is fitted first, so that with ``--fresh-cache`` (an empty embedding cache per mode) its time includes the
whole encoder pass, on ``--runtime`` (default ``auto``: the fastest CPU runtime here, see
distillery.students.encoder_runtime); the probe student then reads the same embeddings from the cache.

A fixed seeded split (80/10/10, stratified by overall-score bins, grouped by URL and near-duplicates),
calibration fitted on validation, every figure on test. Writes benchmarks/results/train_sustainability.json
and .md. Probe embeddings are cached under build/embeddings (the first run embeds every article once).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from distillery_services.trainer.datasets import build_dataset, records_from_jsonl
from distillery_services.trainer.evaluation import evaluate

from distillery.calibration import DEFAULT_MAPS, Calibration
from distillery.filters import load_filter
from distillery.students import make_student
from distillery.students.stack import DEFAULTS as STACK_DEFAULTS
from distillery.uncertainty import flag, flagged_report

DATA = Path(os.environ.get("DISTILLERY_ORIGIN_DATA", ROOT.parent / "shared" / "datasets" / "origin")) / \
    "oracle" / "sustainability__v1__bulk-labeling__gemini.jsonl"
RESULTS = ROOT / "benchmarks" / "results"
CACHE = ROOT / "build" / "embeddings"
FLAG_SHARE = 0.1  # the uncertain flag's target share (the spec's default), reported per student
NOTES = """
Notes:
- Every figure is on the test split; calibration and the conformal intervals (Mondrian by predicted band, target
  90%) are fitted on the validation split only. `calibrated (auto)` is what the trainer registers and the service
  serves: per dimension the monotone map (isotonic median, isotonic mean or none) with the lowest 5-fold
  cross-validated MAE on the validation points. The median map is MAE-optimal: oracle scores are skewed whole
  numbers, so mapping to the conditional median instead of the mean cut every student's MAE by 0.05-0.07.
  `mean-isotonic` is the previous calibration, for comparison. Intervals are centred on the mean map.
- lexical: word 1-2 + char_wb 3-5 TF-IDF from hashed n-grams counted in compiled code (numba; 2**20 word +
  2**21 char buckets, min_df 3), ridge with per-dimension alpha chosen on validation (~7,000 articles/s).
- probe: frozen all-MiniLM-L6-v2 (128 head + 128 tail tokens, English-only), MLP or ridge head chosen on
  validation. The encoder pass runs on `--runtime` (auto: OpenVINO, bf16 on CPUs that have it, else fp32) and is
  cached by content hash per encoder/runtime/budget under build/embeddings (`--fresh-cache`: an empty cache per
  mode, so the first fit, the stack's, includes the whole encoder pass).
- `mean_*`: plain mean of the raw predictions (no weights fitted), then calibrated like the others.
- `stack_lexical_probe`: the `stack` student as it ships (meta `distribution`): per dimension a multinomial
  logistic head over both members' 5-fold out-of-fold predictions of all 8 dimensions predicts the distribution
  of the oracle's score; its median (interpolated within whole scores) is the raw output and calibration may
  round it (the `whole` map). Members refitted on all training data. Everything trains on this 2-core CPU.
- `stack_ridge`: the same members with the earlier per-dimension ridge meta-model (the conditional mean).
- `stack_boosted_embeddings`: the same with an absolute-error gradient-boosted meta-model that also sees the
  MiniLM embedding; not better here.
- `finetune_* (H200, earlier run)`: all-MiniLM-L6-v2 fine-tuned end to end (`full`, lora_r=0) or with LoRA r16
  (`lora`) by the finetune student's own loop on one NVIDIA H200 (`benchmarks/train_finetune_gpu.py`, bf16,
  early stopping on validation MAE), carried over from the last run that had their predictions (same dataset
  hash); that run calibrated with the mean map only, so they have no `auto` figure. `510`/`256` = token budget.
"""

MODES_NOTES = """
Notes:
- `fit s` is wall time on this machine at the load shown; the stack is fitted first, so with `--fresh-cache` its
  time includes the whole encoder pass (train + validation texts), and the probe student then reads the cache.
- CPU seconds per stage are what the stage costs whatever the load: on an idle 2-core machine its wall time is
  about CPU seconds / 2 (the parts run single-threaded, two at a time). Extrapolate the encoder pass from its
  CPU seconds per text.
- `cluster`: a head and a worker node (`ray start --block`, `--num-cpus 1` each, own `--temp-dir`) on this same
  machine, stopped by pid: Ray's overhead without more CPUs.
- Same seeds, same models: the MAE is the same in every mode.
"""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--students", default="lexical,probe,stack,stack_ridge,stack_boosted")
    ap.add_argument("--limit", type=int, default=0, help="use only the first N labels (smoke runs)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--head-tokens", type=int, default=128)
    ap.add_argument("--tail-tokens", type=int, default=128)
    ap.add_argument("--folds", type=int, default=5, help="out-of-fold splits of the stack student")
    ap.add_argument("--name", default="")
    ap.add_argument("--embed-cache", type=Path, default=CACHE,
                    help="probe embedding cache (a fresh folder makes the encoder pass part of the timing)")
    ap.add_argument("--ray", default="off",
                    help="where the students' parts run: off (this process), local (a local Ray), cluster (a 2-node "
                         "Ray cluster started here), or several comma-separated, run one after the other")
    ap.add_argument("--runtime", default="auto", choices=("auto", "torch", "onnx", "openvino"),
                    help="encoder runtime of the probe (and the stack's probe member)")
    ap.add_argument("--int8", action="store_true",
                    help="int8 encoder (runtime onnx; used only if a sample passes the 0.02 score drift gate)")
    ap.add_argument("--fresh-cache", action="store_true",
                    help="an empty embedding cache per mode (the encoder pass is part of the first fit's time)")
    ap.add_argument("--gpu-preds", type=Path, default=ROOT / "build" / "gpu_bench" / "finetune_preds.npz",
                    help="raw val/test predictions of finetuned MiniLM from benchmarks/train_finetune_gpu.py")
    args = ap.parse_args(argv)
    modes = args.ray.split(",")
    if not set(modes) <= {"off", "local", "cluster"}:
        ap.error(f"--ray takes off, local, cluster or a comma-separated list of them, not {args.ray!r}")
    base_name, cache = args.name, args.embed_cache
    summary = {}
    for mode in modes:
        args.ray = mode
        suffix = f"_limit{args.limit}" if args.limit else ""
        args.name = base_name or ("train_sustainability" if mode == "off" else f"train_sustainability_ray_{mode}{suffix}")
        args.embed_cache = (cache.parent / f"{cache.name}-fresh-{mode}-{os.getpid()}") if args.fresh_cache else cache
        started = time.perf_counter()
        with ray_runner(mode) as where:
            summary[mode] = run(args, ap, where)
        summary[mode]["wall_seconds_with_ray_start"] = time.perf_counter() - started
        if args.fresh_cache:
            shutil.rmtree(args.embed_cache, ignore_errors=True)
    if len(modes) > 1:
        write_modes_summary(summary, args, modes)
    return 0


def write_modes_summary(summary: dict, args, modes: list[str]) -> None:
    """One table for several modes: each student's fit time and calibrated test MAE per mode."""
    suffix = f"_limit{args.limit}" if args.limit else ""
    name = f"train_sustainability_ray_modes{suffix}"
    (RESULTS / f"{name}.json").write_text(json.dumps(summary, indent=2, default=float))
    first = summary[modes[0]]
    command = (f"python benchmarks/train_sustainability.py --students {args.students} --ray {','.join(modes)} "
               f"--runtime {args.runtime}" + (" --int8" if args.int8 else "") + (" --fresh-cache" if args.fresh_cache else "")
               + (f" --limit {args.limit}" if args.limit else ""))
    lines = [f"# {name}", "", f"`{command}`", "",
             (f"dataset `{first['dataset']['hash']}` train/val/test {first['dataset']['n_train']}/"
             f"{first['dataset']['n_val']}/{first['dataset']['n_test']}; CPU: {first.get('cpu', '?')}"), "",
             "| mode | where | load at start | student | fit s | test MAE raw | test MAE calibrated (auto) |",
             "|---|---|---:|---|---:|---:|---:|"]
    for mode in modes:
        r = summary[mode]
        for student, row in r["students"].items():
            lines.append(f"| {mode} | {r['ray']} | {r['load_average_at_start']:.1f} | {student} | "
                         f"{row['fit_seconds']:.0f} | {row['test_mae_raw']:.3f} | {row['test_mae_calibrated']:.3f} |")
    lines += ["", "Encoder: " + "; ".join(f"{m}: {summary[m].get('encoder', {})}" for m in modes), "",
              "Stack stages (Ray parts: count, wall seconds summed over parts, CPU seconds summed, longest part):"]
    for mode in modes:
        stages = summary[mode].get("stack_stages", {})
        lines.append(f"- {mode}: " + "; ".join(f"{name} {row['parts']} parts, {row['part_seconds']:.0f} s, CPU {row.get('cpu_seconds', 0):.0f} s, longest "
                                               f"{row['longest_part_seconds']:.0f} s" for name, row in stages.items()))
    (RESULTS / f"{name}.md").write_text("\n".join(lines) + "\n" + MODES_NOTES)
    print("\n".join(lines))


def run(args, ap, where: str) -> int:

    spec = load_filter(ROOT / "filters" / "sustainability" / "v1")
    records = records_from_jsonl(DATA)
    if args.limit:
        records = records[: args.limit]
    t0 = time.perf_counter()
    ds = build_dataset(spec, records, seed=args.seed)
    build_s = time.perf_counter() - t0
    tr_x, tr_y = ds.arrays("train")
    va_x, va_y = ds.arrays("val")
    te_x, te_y = ds.arrays("test")
    print(f"dataset {ds.hash}: {len(tr_x)}/{len(va_x)}/{len(te_x)} (built in {build_s:.1f}s); dropped "
          f"{ds.report['dropped']}", flush=True)
    results = {"dataset": {"hash": ds.hash, "n_train": len(tr_x), "n_val": len(va_x), "n_test": len(te_x),
                           "dropped": ds.report["dropped"], "build_seconds": build_s, "seed": args.seed},
               "ray": where, "load_average_at_start": os.getloadavg()[0], "cpus": os.cpu_count(),
               "cpu": cpu_model(), "python": platform.python_version(),
               "students": {}}
    mean = tr_y.mean(axis=0)
    results["mean_predictor_test_mae"] = float(np.abs(mean - te_y).mean())
    preds: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def record(name, val_raw, test_raw, fit_s, predict_rate, extra=None, maps=DEFAULT_MAPS, spread=(None, None)):
        cal = Calibration.fit(val_raw, va_y, spec.dimension_names, coverage=0.9, maps=maps)
        calibrated, lower, upper = cal.apply(test_raw)
        rep = evaluate(spec, te_y, test_raw, calibrated, lower, upper, train_mean=mean)
        cal.fit_error_model(val_raw, va_y, spread[0])  # the uncertain flag as the trainer fits it
        flagged = flag(cal.expected_error(test_raw, lower, upper, spread[1]), cal.error_model, FLAG_SHARE, None)
        extra = {**(extra or {}), "uncertain_flag": {"share_target": FLAG_SHARE,
                                                     **flagged_report(te_y, calibrated, flagged)}}
        mean_map = Calibration.fit(val_raw, va_y, spec.dimension_names, coverage=0.9, method="mean")
        extra = {**(extra or {}), "calibration_maps": cal.info["maps"],
                 "test_mae_mean_isotonic": float(np.abs(mean_map.apply(test_raw)[0] - te_y).mean())}
        preds[name] = (val_raw, test_raw)
        results["students"][name] = {
            "test_mae_raw": rep["mae_raw"], "test_mae_calibrated": rep["mae"], "spearman": rep["spearman"],
            "overall_mae": rep["overall_mae"], "coverage": rep["coverage"], "interval_width": rep["interval_width"],
            "tier_agreement": rep["tier_agreement"], "recall_at_k": rep["recall_at_k"]["recall"],
            "fn_rate_medium": rep["medium_or_above"]["false_negative_rate"],
            "per_dimension_mae_raw": {d: v["mae_raw"] for d, v in rep["dimensions"].items()},
            "per_dimension_coverage": {d: v["coverage"] for d, v in rep["dimensions"].items()},
            "fit_seconds": fit_s, "predict_articles_per_s": predict_rate, **(extra or {}),
        }
        s = results["students"][name]
        print(f"{name:>12}: raw {s['test_mae_raw']:.3f} calibrated {s['test_mae_calibrated']:.3f} coverage "
              f"{s['coverage']:.3f} width {s['interval_width']:.2f} fit {fit_s:.0f}s", flush=True)

    wanted = args.students.split(",")
    encoder_params = {"head_tokens": args.head_tokens, "tail_tokens": args.tail_tokens, "runtime": args.runtime,
                      "int8": args.int8}
    fit_stacks(args, spec, wanted, encoder_params, (tr_x, tr_y, va_x, va_y, te_x), record, results)
    results["stack_stages"] = stage_summary()
    if "lexical" in wanted or "stack" in wanted:
        student = make_student("lexical", spec.dimension_names)
        t = time.perf_counter()
        student.fit(tr_x, tr_y, va_x, va_y)
        fit_s = time.perf_counter() - t
        t = time.perf_counter()
        test_raw = student.predict(te_x)
        rate = len(te_x) / (time.perf_counter() - t)
        record("lexical", student.predict(va_x), test_raw, fit_s, rate, {"alphas": student.chosen_alphas})
    if "probe" in wanted or "stack" in wanted:
        fit_probe(args, spec, encoder_params, (tr_x, tr_y, va_x, va_y, te_x), record, results)
    if "stack" in wanted and "lexical" in preds and "probe" in preds:
        v = (preds["lexical"][0] + preds["probe"][0]) / 2
        t_ = (preds["lexical"][1] + preds["probe"][1]) / 2
        record("mean_lexical_probe", v, t_, 0.0, 0.0, {"note": "plain mean of the two raw predictions"})
    if args.gpu_preds.exists() and not args.limit:
        gpu_rows(args, preds, record, results)
    elif not args.limit:
        carry_over_gpu_rows(results, RESULTS / f"{args.name}.json")
    write_mode_files(args, ap, where, ds, results)
    return results


def gpu_rows(args, preds, record, results) -> None:
    """Rows of the fine-tuned MiniLM runs (GPU predictions saved by benchmarks/train_finetune_gpu.py)."""
    gpu = np.load(args.gpu_preds)
    summary_file = args.gpu_preds.with_name("gpu_summary.json")
    gpu_summary = json.loads(summary_file.read_text()) if summary_file.exists() else {}
    results["gpu"] = {k: v for k, v in gpu_summary.items() if not isinstance(v, dict)}
    for name in sorted({k.rsplit("_", 1)[0] for k in gpu.files}):
        info = gpu_summary.get(name, {})
        record(f"finetune_{name}", gpu[f"{name}_val"], gpu[f"{name}_test"], info.get("fit_seconds", 0.0),
               info.get("predict_articles_per_s", 0.0), {"trained_on": gpu_summary.get("device", "gpu"),
                                                         "epochs": len(info.get("history", []))})
        if "lexical" in preds:
            v = (preds["lexical"][0] + gpu[f"{name}_val"]) / 2
            t_ = (preds["lexical"][1] + gpu[f"{name}_test"]) / 2
            record(f"mean_lexical_finetune_{name}", v, t_, 0.0, 0.0, {"note": "plain mean"})
    seeds_file = args.gpu_preds.with_name("finetune_preds_seeds.npz")
    if seeds_file.exists() and "lexical" in preds:
        more = np.load(seeds_file)
        names = [k[:-4] for k in gpu.files if k.endswith("_val")]
        vals = [gpu[f"{n}_val"] for n in names] + [more[k] for k in more.files if k.endswith("_val")]
        tests = [gpu[f"{n}_test"] for n in names] + [more[k] for k in more.files if k.endswith("_test")]
        fv, ft = np.mean(vals, axis=0), np.mean(tests, axis=0)
        record(f"finetune_ensemble_{len(vals)}", fv, ft, 0.0, 0.0,
               {"note": "mean of all fine-tuned MiniLM runs (variants x seeds)"})
        record(f"mean_lexical_finetune_ensemble_{len(vals)}", (fv + preds["lexical"][0]) / 2,
               (ft + preds["lexical"][1]) / 2, 0.0, 0.0, {"note": "plain mean of lexical and the ensemble"})
    if "lexical" in preds and "probe" in preds and {"full510_val", "lora510_val"} <= set(gpu.files):
        v = (preds["lexical"][0] + preds["probe"][0] + gpu["full510_val"] + gpu["lora510_val"]) / 4
        t_ = (preds["lexical"][1] + preds["probe"][1] + gpu["full510_test"] + gpu["lora510_test"]) / 4
        record("mean_lexical_probe_finetunes", v, t_, 0.0, 0.0, {"note": "plain mean of four"})


def write_mode_files(args, ap, where: str, ds, results: dict) -> None:
    """``<name>.json`` and ``<name>.md`` of one mode."""
    n = results["dataset"]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(results, indent=2, default=float))
    command = "python benchmarks/train_sustainability.py" + (f" --students {args.students}"
                                                             if args.students != ap.get_default("students") else "")
    command += f" --ray {args.ray}" if args.ray != "off" else ""
    command += f" --limit {args.limit}" if args.limit else ""
    command += f" --runtime {args.runtime}" + (" --int8" if args.int8 else "") + (" --fresh-cache" if args.fresh_cache
                                                                                  else "")
    lines = [f"# {args.name}", "", f"`{command}`", "", (f"Parts ran: {where}; load average at start "
             f"{results['load_average_at_start']:.1f} on {results['cpus']} CPUs."), "", (f"dataset `{ds.hash}` train/val/test {n['n_train']}/{n['n_val']}/{n['n_test']}; "
             f"mean predictor test MAE {results['mean_predictor_test_mae']:.3f}"), "",
             ("| student | test MAE raw | mean-isotonic | calibrated (auto) | coverage (90% target) | "
             "mean interval width | uncertain flag: share, MAE flagged / unflagged | fit s |"),
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, s in results["students"].items():
        label = f"{name} (H200, earlier run)" if s.get("carried_over") else name
        mean_iso = s.get("test_mae_mean_isotonic")
        auto = "n/a" if s.get("carried_over") and "calibration_maps" not in s else f"{s['test_mae_calibrated']:.3f}"
        lines.append(f"| {label} | {s['test_mae_raw']:.3f} | {'' if mean_iso is None else f'{mean_iso:.3f}'} | "
                     f"{auto} | {s['coverage']:.3f} | {s['interval_width']:.2f} | {flag_cell(s)} | "
                     f"{s['fit_seconds']:.0f} |")
    (RESULTS / f"{args.name}.md").write_text("\n".join(lines) + "\n" + NOTES)
    print("\n".join(lines))


def flag_cell(row: dict) -> str:
    """The uncertain flag's test share and its MAE ratio (flagged / unflagged), or blank (carried-over rows)."""
    f = row.get("uncertain_flag")
    if not f or not f.get("n_flagged"):
        return ""
    return f"{f['share']:.1%}, {f['mae_ratio']:.2f}x"


def fit_probe(args, spec, encoder_params, split, record, results) -> None:
    tr_x, tr_y, va_x, va_y, te_x = split
    student = make_student("probe", spec.dimension_names, cache_dir=args.embed_cache, **encoder_params)
    t = time.perf_counter()
    last = [0.0]

    def progress(done, total):
        if time.perf_counter() - last[0] > 30:
            last[0] = time.perf_counter()
            print(f"  embedding {done}/{total}", flush=True)

    X, Xv = student.embed_for_training(tr_x, tr_y, va_x, progress)
    Xt = student.embed(te_x, progress)
    embed_s = time.perf_counter() - t
    t = time.perf_counter()
    student.fit_embeddings(X, tr_y, Xv, va_y)
    fit_s = time.perf_counter() - t
    results.setdefault("encoder", {"runtime": f"{student.encoder.backend}-{student.encoder.precision}",
                                   "embedded_here": student.encoder.embedded})
    record("probe", student.predict_embeddings(Xv), student.predict_embeddings(Xt), fit_s, 0.0,
           {"embed_seconds_uncached_or_cached": embed_s, "tokens": args.head_tokens + args.tail_tokens,
            "encoder_runtime": f"{student.encoder.backend}-{student.encoder.precision}"})


def fit_stacks(args, spec, wanted, encoder_params, split, record, results) -> None:
    """The stacks first: with a fresh cache, their fit time includes the whole encoder pass."""
    tr_x, tr_y, va_x, va_y, te_x = split
    stacks = {"stack": ("stack_lexical_probe", {"meta": "distribution"},
                        ("distribution heads (the default) over both members' out-of-fold predictions of all "
                         "dimensions; the median of each predicted score distribution")),
              "stack_ridge": ("stack_ridge", {"meta": "ridge"},
                              "ridge meta-model over both members' out-of-fold predictions of all dimensions"),
              "stack_boosted": ("stack_boosted_embeddings", {"meta": "boosted", "meta_embeddings": True},
                                "absolute-error boosted trees over the out-of-fold predictions + MiniLM embedding")}
    for key, (name, meta, note) in stacks.items():
        if key not in wanted:
            continue
        members = [{"kind": m["kind"], "params": {**m["params"], **(encoder_params if m["kind"] == "probe" else {})}}
                   for m in STACK_DEFAULTS["members"]]  # the stack's own members, on this run's encoder budget
        student = make_student("stack", spec.dimension_names, members=members, folds=args.folds,
                               cache_dir=args.embed_cache, **meta)
        t, cpu = time.perf_counter(), time.process_time()
        student.fit(tr_x, tr_y, va_x, va_y)
        fit_s, driver_cpu = time.perf_counter() - t, time.process_time() - cpu
        t = time.perf_counter()
        test_raw, test_spread = student.predict_with_spread(te_x)
        rate = len(te_x) / (time.perf_counter() - t)
        val_raw, val_spread = student.predict_with_spread(va_x)
        probe = student.members[1]
        runtime = f"{probe.encoder.backend}-{probe.encoder.precision}"
        results["encoder"] = {"runtime": runtime}
        record(name, val_raw, test_raw, fit_s, rate, {"folds": args.folds, **meta, "note": note,
                                                                    "encoder_runtime": runtime,
                                                                    "driver_cpu_seconds": driver_cpu},
               maps=student.calibration_maps, spread=(val_spread, test_spread))


@contextlib.contextmanager
def ray_runner(mode: str):
    """The students' parts in this process (``off``), on a local Ray, or on a 2-node cluster started here."""
    if mode == "off":
        yield "in this process"
        return
    from distillery import parallel

    nodes = []
    try:
        address = ""
        if mode == "cluster":
            address = start_two_nodes(nodes)
        with parallel.ray_session(address) as connected:
            import ray

            where = f"Ray at {connected} ({len([n for n in ray.nodes() if n['Alive']])} node(s), " \
                    f"{ray.cluster_resources().get('CPU', 0):g} CPUs)"
            print(where, flush=True)
            with parallel.use_runner(parallel.RayRunner()):
                yield where
    finally:
        import ray

        ray.shutdown()  # this process's own Ray (local) or connection (cluster); the next mode starts afresh
        for proc in reversed(nodes):
            proc.send_signal(signal.SIGTERM)  # --block: stops the Ray processes of that node (never `ray stop`)
            proc.wait(60)


def start_two_nodes(nodes: list) -> str:
    """A head and a worker (``ray start --block`` processes, own temp folders, one CPU each on a 2-core machine),
    appended to ``nodes`` as they start so that the caller stops them by pid whatever happens."""
    from distillery_services.trainer.localray import free_port, ray_executable

    port = free_port()
    cpus = max(1, (os.cpu_count() or 2) // 2)
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    common = ["--block", f"--num-cpus={cpus}", "--node-ip-address=127.0.0.1", "--disable-usage-stats"]
    nodes.append(subprocess.Popen([ray_executable(), "start", "--head", f"--port={port}", "--include-dashboard=false",
                                   f"--ray-client-server-port={free_port()}",
                                   f"--temp-dir={tempfile.mkdtemp(prefix='bray-')}", *common],
                                  env=env, start_new_session=True))
    time.sleep(10)
    nodes.append(subprocess.Popen([ray_executable(), "start", f"--address=127.0.0.1:{port}",
                                   f"--temp-dir={tempfile.mkdtemp(prefix='bray-')}", *common], env=env,
                                  start_new_session=True))
    import ray

    deadline = time.monotonic() + 180
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(address=f"127.0.0.1:{port}", log_to_driver=False)
    try:
        while len([n for n in ray.nodes() if n["Alive"]]) < 2:
            if time.monotonic() > deadline:
                raise RuntimeError("the Ray worker node did not join")
            time.sleep(1)
    finally:
        ray.shutdown()
    return f"127.0.0.1:{port}"


def stage_summary() -> dict:
    """Per stage of the Ray runner so far: parts, the seconds they ran (summed over parts, and the longest), and
    their CPU seconds (what the stage costs on an idle machine: about CPU seconds / cores of wall time)."""
    from distillery import parallel

    stages: dict = {}
    for part in parallel.current().parts:
        if part.stage.startswith("calibration"):  # the benchmark's own calibration of each row, not training
            continue
        row = stages.setdefault(part.stage, {"parts": 0, "part_seconds": 0.0, "longest_part_seconds": 0.0,
                                             "cpu_seconds": 0.0})
        row["parts"] += 1
        row["part_seconds"] += part.seconds
        row["cpu_seconds"] += part.cpu_seconds
        row["longest_part_seconds"] = max(row["longest_part_seconds"], part.seconds)
    return stages


def cpu_model() -> str:
    try:
        return next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor()


def carry_over_gpu_rows(results: dict, previous: Path) -> None:
    """Without the GPU predictions at hand, keep the fine-tuned rows of the last run that had them.

    Only rows that depend on nothing but the GPU run are kept (same dataset hash); rows that mixed them with
    this run's CPU students would be stale and are dropped.
    """
    if not previous.exists():
        return
    old = json.loads(previous.read_text())
    if old.get("dataset", {}).get("hash") != results["dataset"]["hash"]:
        return
    for name, row in old.get("students", {}).items():
        if name.startswith("finetune_"):
            # that run calibrated with the mean isotonic map only (before the median map existed)
            mean_iso = row.get("test_mae_mean_isotonic", row["test_mae_calibrated"])
            results["students"][name] = {**row, "carried_over": True, "test_mae_mean_isotonic": mean_iso}
    if "gpu" in old:
        results["gpu"] = old["gpu"]


if __name__ == "__main__":
    sys.exit(main())
