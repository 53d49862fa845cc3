"""Run every CPU benchmark in turn (``make bench``); each writes JSON + markdown to benchmarks/results/.

GPU benchmarks (gpu_throughput.py, train_finetune_gpu.py) run on a CUDA machine and are not started
here. Benchmarks that read the real oracle-labelled data skip when ../shared/datasets is absent.

    .venv/bin/python benchmarks/run_all.py [--only prefilter_throughput,oracle_throughput] [--quick]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks._common import SHARED

HERE = Path(__file__).resolve().parent
# name -> (arguments, quick arguments, needs the shared real data)
BENCHMARKS: dict[str, tuple[list[str], list[str], bool]] = {
    "prefilter_throughput": (["--articles", "20000", "--repeat", "3"], ["--articles", "3000", "--repeat", "1"],
                             False),
    "oracle_throughput": ([], ["--articles", "120"], False),
    "inference_throughput": ([], ["--seconds", "4", "--latency-seconds", "5"], False),
    "oracle_agreement": ([], [], True),
    "train_sustainability": ([], ["--students", "lexical", "--limit", "2000"], True),
    "active_learning": ([], ["--rounds", "3"], True),
}


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
    for name in names:
        full, quick, needs_data = BENCHMARKS[name]
        if needs_data and not SHARED.exists():
            print(f"-- {name}: skipped (no real data at {SHARED})")
            continue
        cmd = [sys.executable, str(HERE / f"{name}.py"), *(quick if args.quick else full)]
        print(f"-- {name}: {' '.join(cmd[1:])}", flush=True)
        started = time.perf_counter()
        code = subprocess.call(cmd)
        print(f"-- {name}: exit {code} after {time.perf_counter() - started:.0f} s", flush=True)
        if code:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
