#!/usr/bin/env bash
# The one GPU call of issue 19 (run on the device machine; see benchmarks/gpu/README.md):
#   [install the last bundle part] -> benchmarks/gpu/run_gpu.py under a deadline -> results and log in $OUT.
#
#   bash benchmarks/gpu/run_all.sh                                     # bundle already installed
#   bash benchmarks/gpu/run_all.sh build/gpu_bundle/parts/part-17      # last part first, then the run
#
# Python: build/gpu_venv (made by install_bundle.sh) when it exists, else the machine's python3 (then the
# vLLM and Ray parts report that they are missing and the torch parts still run). GPU_RUN_SECONDS bounds the
# whole run (default 480 s: the parts budget themselves to 450 s and are skipped when they no longer fit).
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
OUT_DIR="${OUT:-$ROOT/build/gpu_out}"
mkdir -p "$OUT_DIR"
LOG="$OUT_DIR/gpu_run.log"
if [ "${1:-}" != "" ] && [ -d "$1" ]; then
  bash benchmarks/gpu/install_bundle.sh "$1" 2>&1 | tee "$OUT_DIR/install.log" || echo "bundle install failed: see install.log"
  shift
fi
PY="${GPU_PYTHON:-}"
if [ -z "$PY" ]; then
  if [ -x build/gpu_venv/bin/python ]; then PY=build/gpu_venv/bin/python; else PY=python3; fi
fi
{ echo "python: $PY"; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true; } | tee "$LOG"
PYTHONUNBUFFERED=1 timeout -k 15 "${GPU_RUN_SECONDS:-480}" "$PY" benchmarks/gpu/run_gpu.py --budget-s "${GPU_BUDGET_SECONDS:-450}" "$@" 2>&1 | tee -a "$LOG"
rc=${PIPESTATUS[0]}
cp benchmarks/results/gpu_run.json benchmarks/results/gpu_run.md "$OUT_DIR/" 2>/dev/null || true
echo "run_gpu.py exit status $rc; results in $OUT_DIR" | tee -a "$LOG"
exit "$rc"
