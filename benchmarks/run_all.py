"""Run every CPU benchmark in turn (``make bench``); each writes JSON + markdown to benchmarks/results/.

GPU benchmarks (gpu_throughput.py, train_finetune_gpu.py) run on a CUDA machine and are not started
here. Benchmarks that read the real oracle-labelled data skip when ../shared/datasets is absent.

After the run, ``benchmarks/results/measured.{json,md}`` hold every figure of the README's "Measured here"
table, read from this run's results, with the machine (CPU model, cores, memory), its load average before
and after each benchmark, the git commit and the command. A full run (no ``--only``, no ``--quick``) in
which every benchmark passed also rewrites that README table (between its ``measured:start``/``end``
markers), so the README never shows figures from different runs.

    .venv/bin/python benchmarks/run_all.py [--only prefilter_throughput,oracle_throughput] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks._common import RESULTS, SHARED

HERE = Path(__file__).resolve().parent
# name -> (arguments, quick arguments, needs the shared real data)
BENCHMARKS: dict[str, tuple[list[str], list[str], bool]] = {
    "prefilter_throughput": (["--articles", "20000", "--repeat", "3"], ["--articles", "3000", "--repeat", "1"],
                             False),
    "oracle_throughput": ([], ["--articles", "120"], False),
    "inference_throughput": ([], ["--seconds", "4", "--latency-seconds", "5"], False),
    "oracle_agreement": ([], [], True),
    "train_sustainability": ([], ["--students", "lexical", "--limit", "2000"], True),
    "active_learning": ([], ["--rounds", "3", "--seeds", "13"], True),
    "stream_e2e": ([], ["--articles", "1500", "--probe-articles", "100"], True),
}
README = Path(__file__).resolve().parent.parent / "README.md"
START, END = "<!-- measured:start (written by make bench) -->", "<!-- measured:end -->"


def _result(name: str) -> dict:
    return json.loads((RESULTS / f"{name}.json").read_text())


def _run(results: dict, name: str, metric: str) -> dict:
    return next(r for r in results["runs"] if r["name"] == name and r["metric"] == metric)


def _prefilter() -> str:
    r = _result("prefilter_throughput")["results"]
    given = {k.split(",")[0]: v for k, v in r.items() if k.endswith("language given")}
    low = min(given.values(), key=lambda v: v["articles_per_s_cpu"])
    high = max(given.values(), key=lambda v: v["articles_per_s_cpu"])
    return (f"{low['articles_per_s_cpu']:,.0f}–{high['articles_per_s_cpu']:,.0f} articles/s per core (CPU time) "
            f"over {len(given)} real-text article sets ({', '.join(given)}), p99 {max(v['p99_us'] for v in given.values()):,.0f} µs")


def _oracle() -> str:
    rows = {r["scenario"]: r for r in _result("oracle_throughput")["results"]}
    fixed = [r for name, r in rows.items() if "sliding" not in name]
    sliding = [r for name, r in rows.items() if "sliding" in name]
    share = f"{min(r['share_of_limit_pct'] for r in fixed):.1f}% of the limit with fixed windows"
    if sliding:
        share += f" ({min(r['share_of_limit_pct'] for r in sliding):.1f}% with sliding windows)"
    return (f"{share}, also with faults, 2% hung requests and two processes over Redis; "
            f"{sum(r['self_caused_429'] for r in rows.values())} self-caused 429s, "
            f"{sum(r['lost'] for r in rows.values())} lost, {sum(r['paid_twice'] for r in rows.values())} paid "
            f"twice over {len(rows)} scenarios")


def _student(kind: str) -> str:
    r = _result("train_sustainability")
    s = r["students"][kind]
    return (f"test MAE {s['test_mae_calibrated']:.3f}, interval coverage {s['coverage']:.3f} "
            f"(mean predictor {r['mean_predictor_test_mae']:.3f})")


def _lexical_served() -> str:
    r = _result("inference_throughput")
    out = []
    for name in ("lexical (word + char n-grams, default)", "lexical (word n-grams only)"):
        wall = _run(r, name, "articles/s (ScoreBatch 256, 2 clients)")["value"]
        core = _run(r, name, "articles/s per server core (server CPU time)")["value"]
        out.append(f"{name.split('(')[1].rstrip(')')}: {wall:,.0f} articles/s ({core:,.0f} per server core)")
    return "; ".join(out)


def _probe_served() -> str:
    r = _result("inference_throughput")
    best = max((x for x in r["runs"] if x["metric"].startswith("articles/s at 256")), key=lambda x: x["value"])
    name = best["name"]
    p99 = _run(r, name, "p99 ms, single Score at 20 req/s")["value"]
    mae = _run(r, name, "held-out MAE (served, vs oracle)")["value"]
    return f"{name}: {best['value']:,.0f} articles/s, p99 {p99:.0f} ms at 20 req/s, held-out MAE {mae:.3f}"


def _stream() -> str:
    runs = {r["kind"]: r for r in _result("stream_e2e")["runs"]}
    return " / ".join(f"{kind} {runs[kind]['articles_per_s']:,.0f} articles/s"
                      for kind in ("lexical", "lexical-words") if kind in runs)


def _active() -> str:
    result = _result("active_learning")
    curves, summary = result["curves"], result.get("summary", {})
    target = curves["random"][-1]["test_mae"]
    final = curves["random"][-1]["labels"]
    seeds = len(summary.get("seeds", [])) or 1
    parts = []
    for strategy in ("diverse", "uncertainty"):
        saving = (summary.get(strategy) or {}).get("label_saving_interpolated")
        if strategy in curves:
            parts.append(f"{strategy} {saving:.0%} fewer labels" if saving is not None
                         else f"{strategy} did not reach it within {final:,} labels")
    return f"random's final MAE ({target:.3f}, mean of {seeds} seeds): " + ", ".join(parts)


def _cluster_loop() -> str:
    r = _result("cluster_loop")
    return (f"loop {r['timings_seconds']['loop_seconds']:.0f} s, {r['candidates_not_scored']} candidates unscored "
            f"(`make test-cluster`, load average {r['load_average_1m']:.0f})")


# Figures measured by a test run rather than `make bench`: read from their last results file as they stand.
FROM_TESTS = {"cluster_loop"}

# The README's measured table: (what, benchmark it comes from, figure from that benchmark's results)
MEASURED = [
    ("prefilter, 4 filters, 5 KB articles, one core", "prefilter_throughput", _prefilter),
    ("oracle gateway vs a 200 ms / 600 rpm provider", "oracle_throughput", _oracle),
    ("lexical student on 7,608 real labels (8 dims)", "train_sustainability", lambda: _student("lexical")),
    ("best CPU-trained student (`stack`: lexical + MiniLM probe)", "train_sustainability",
     lambda: _student("stack_lexical_probe")),
    ("inference, lexical student through gRPC", "inference_throughput", _lexical_served),
    ("inference, MiniLM probe at 256 tokens", "inference_throughput", _probe_served),
    ("streaming raw → scored, lexical (default / word n-grams)", "stream_e2e", _stream),
    (("active learning on real labels (`diverse`: learned expected error x a MiniLM ridge's disagreement with the "
      "lexical students, per oracle cost, spread by clustering; `distillery active-select`)"), "active_learning",
     _active),
    (("the chart as a cluster in a box: 3,000 articles raw → labels → Ray training → S3 → scored by 2 replicas, "
      "one pod per Deployment killed"), "cluster_loop", _cluster_loop),
]


def machine() -> dict:
    model = ""
    try:
        model = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {"cpu": model or platform.processor(), "cpus": os.cpu_count(), "memory_gib": round(memory, 1),
            "platform": platform.platform(), "python": platform.python_version()}


def git_commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=HERE, check=True).stdout.strip()
        # The run's own outputs (results, the README table) do not make the measured code dirty.
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ":(top)",
                                ":(top,exclude)benchmarks/results", ":(top,exclude)README.md"],
                               capture_output=True, text=True, cwd=HERE, check=True).stdout.strip()
        return head + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def write_summary(runs: dict, command: str, started: str, update_readme: bool) -> None:
    """measured.{json,md}: every README figure from this run's results, with machine, load and command."""
    rows = []
    for what, source, figure in MEASURED:
        if source not in FROM_TESTS and (source not in runs or runs[source]["exit"] != 0):
            value = "not measured in this run"
        else:
            try:
                value = figure()
            except (OSError, KeyError, StopIteration, ValueError) as exc:
                value = f"not in the results ({type(exc).__name__}: {exc})"
        rows.append({"what": what, "figure": value, "benchmark": source})
    loads = [r["load_average_1m"] for r in runs.values()]
    payload = {"command": command, "started_at": started,
               "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "git_commit": git_commit(),
               "machine": machine(), "benchmarks": runs, "measured": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "measured.json").write_text(json.dumps(payload, indent=2))
    load_note = (f"1-minute load average {min(min(x) for x in loads):.1f}–{max(max(x) for x in loads):.1f} during "
                 f"the run on {payload['machine']['cpus']} cores" if loads else "no benchmark ran")
    table = ["| what | figure |", "|---|---|"] + [f"| {r['what']} | {r['figure']} |" for r in rows]
    caption = (f"`{command}` at {payload['finished_at']} (commit {payload['git_commit']}) on "
               f"{payload['machine']['cpu']}, {payload['machine']['cpus']} cores, {payload['machine']['memory_gib']} "
               f"GiB; {load_note}. Per-benchmark load, duration and command: benchmarks/results/measured.json.")
    (RESULTS / "measured.md").write_text("\n".join(["# measured", "", caption, "", *table]) + "\n")
    print("\n".join(table))
    if update_readme:
        text = README.read_text()
        if START in text and END in text:
            head, rest = text.split(START, 1)
            _old, tail = rest.split(END, 1)
            README.write_text(head + START + "\n" + caption + "\n\n" + "\n".join(table) + "\n" + END + tail)
            print("README.md measured table rewritten from this run")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default="", help="comma-separated benchmark names")
    ap.add_argument("--quick", action="store_true", help="smaller runs (smoke check, not for reporting)")
    args = ap.parse_args()
    names = [n for n in args.only.split(",") if n] or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"error: unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}", file=sys.stderr)
        return 2
    failed = []
    runs: dict[str, dict] = {}
    started_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    command = "python benchmarks/run_all.py" + "".join(f" {a}" for a in sys.argv[1:])
    for name in names:
        full, quick, needs_data = BENCHMARKS[name]
        if needs_data and not SHARED.exists():
            print(f"-- {name}: skipped (no real data at {SHARED})")
            continue
        cmd = [sys.executable, str(HERE / f"{name}.py"), *(quick if args.quick else full)]
        print(f"-- {name}: {' '.join(cmd[1:])}", flush=True)
        started = time.perf_counter()
        load_before = os.getloadavg()[0]
        code = subprocess.call(cmd)
        seconds = time.perf_counter() - started
        runs[name] = {"command": "python " + " ".join(str(Path(c).relative_to(HERE.parent)) if c.startswith(str(HERE))
                                                       else c for c in cmd[1:]),
                      "exit": code, "seconds": round(seconds, 1), "load_average_1m": [load_before, os.getloadavg()[0]]}
        print(f"-- {name}: exit {code} after {seconds:.0f} s", flush=True)
        if code:
            failed.append(name)
    write_summary(runs, command, started_at, update_readme=not args.quick and not args.only and not failed
                  and len(runs) == len(BENCHMARKS))
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
