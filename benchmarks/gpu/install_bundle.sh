#!/usr/bin/env bash
# Install the wheel bundle built by benchmarks/gpu/bundle.py on the GPU machine, one part per device call.
#
#   bash benchmarks/gpu/install_bundle.sh build/gpu_bundle/parts/part-03   # verify, stage, install that part
#   bash benchmarks/gpu/install_bundle.sh --status                         # parts still missing (exit 1)
#
# Each call: checks the part's files against SHA256SUMS, moves them into the staging folder, rebuilds every
# wheel whose byte chunks are now all there (sha256 of the whole wheel checked), and installs the wheels that
# became complete into the virtualenv without their dependencies (so the work is spread over the calls).
# When the last part is in, it installs the bundle's requirements offline (--no-index --find-links staging)
# so that pip checks that every dependency is satisfied, then runs `pip check` on the bundle's packages.
# The virtualenv sees the machine's own packages (torch and its CUDA libraries stay the machine's) through a
# .pth file; wheels installed in it shadow the machine's copies (e.g. an older numpy that numba needs).
# Rerunning a call with the same part is harmless. Everything lives under build/ (kept between calls of one
# held machine; a fresh machine starts bare and needs every part again).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUNDLE="${GPU_BUNDLE_DIR:-$ROOT/build/gpu_bundle}"
STAGING="$BUNDLE/staging"
VENV="${GPU_VENV:-$ROOT/build/gpu_venv}"
PY="${PYTHON:-python3}"
PARTS_PY="$ROOT/benchmarks/gpu/bundle_parts.py"

die() { echo "install_bundle: $*" >&2; exit 2; }

make_venv() {
  [ -x "$VENV/bin/python" ] && return 0
  local base_site
  base_site="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  "$PY" -m venv --without-pip "$VENV" || die "cannot create a virtualenv at $VENV with $PY"
  local venv_site
  venv_site="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  # the machine's packages (torch, CUDA libraries, transformers, ...) after the venv's own
  echo "$base_site" > "$venv_site/_machine_site.pth"
  "$VENV/bin/python" -c 'import sys' || die "the virtualenv's python does not start"
}

vpip() { "$PY" -m pip --python "$VENV/bin/python" --disable-pip-version-check "$@"; }

if [ "${1:-}" = "--status" ]; then
  exec "$PY" "$PARTS_PY" status "$STAGING"
fi
PART="${1:?usage: install_bundle.sh PART_DIR | --status}"
[ -d "$PART" ] || die "$PART is not a folder (did the call carry it?)"

# Rerun after a completed stage: the part folder was emptied by the move; nothing left to verify.
if [ -f "$STAGING/.staged" ] && grep -qx "$(basename "$PART")" "$STAGING/.staged" \
    && [ -z "$(ls -A "$PART" | grep -v -e SHA256SUMS -e bundle.json || true)" ]; then
  echo "$(basename "$PART") already staged"
  complete='[]'
else
  result="$("$PY" "$PARTS_PY" stage "$PART" "$STAGING")" || die "$(basename "$PART") failed its checks"
  echo "$result"
  complete="$("$PY" -c 'import json,sys; print(json.dumps(json.loads(sys.argv[1])["complete"]))' "$result")"
fi

make_venv
wheels=()
while IFS= read -r w; do [ -n "$w" ] && wheels+=("$STAGING/$w"); done \
  < <("$PY" -c 'import json,sys; print("\n".join(json.loads(sys.argv[1])))' "$complete")
if [ "${#wheels[@]}" -gt 0 ]; then
  echo "installing ${#wheels[@]} wheel(s) without dependencies"
  vpip install --quiet --no-index --no-deps --no-compile --no-warn-conflicts "${wheels[@]}"
fi

if "$PY" "$PARTS_PY" status "$STAGING" > /dev/null; then
  mapfile -t reqs < <("$PY" -c 'import json,sys; print("\n".join(json.load(open(sys.argv[1]))["requirements"]))' \
    "$STAGING/bundle.json")
  excluded="$("$PY" -c 'import json,sys; print(" ".join(json.load(open(sys.argv[1])).get("excluded", {})))' \
    "$STAGING/bundle.json")"
  if [ -n "$excluded" ]; then
    # a lean bundle (bundle.py --exclude): the left-out packages cannot resolve, so no resolution here
    echo "all parts in (lean bundle, left out: $excluded): installing ${reqs[*]} without resolution"
    vpip install --quiet --no-index --find-links "$STAGING" --no-compile --no-deps "${reqs[@]}"
  else
    echo "all parts in: resolving ${reqs[*]} offline"
    if ! vpip install --quiet --no-index --find-links "$STAGING" --no-compile "${reqs[@]}"; then
      # every wheel of the bundle is installed already (--no-deps, part by part): what failed is a requirement
      # the machine's own copy does not meet (its version was not known when the bundle was built)
      echo "install_bundle: offline resolution failed (pip says which requirement above); the bundle's wheels" \
           "are installed, so a run can still try; rebuild with that package's version in machine_packages.txt" >&2
      resolution_failed=1
    fi
  fi
  vpip check || echo "install_bundle: pip check reports conflicts among the machine's own packages (above)" >&2
  "$VENV/bin/python" - <<'EOF'
import importlib.metadata as md
for name in ("vllm", "ray", "deepspeed", "torch", "transformers", "numpy"):
    try:
        print(f"{name} {md.version(name)}")
    except md.PackageNotFoundError:
        print(f"{name} MISSING")
EOF
  echo "bundle installed: $VENV/bin/python"
  [ -z "${resolution_failed:-}" ] || exit 3
else
  "$PY" "$PARTS_PY" status "$STAGING" || true
fi
