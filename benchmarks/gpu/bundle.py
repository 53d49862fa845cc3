"""Build, here, the wheel bundle that brings vLLM, Ray and DeepSpeed to a GPU machine with no registry access.

    .venv/bin/python benchmarks/gpu/bundle.py                 # -> build/gpu_bundle/part-NN/ (git-ignored)
    .venv/bin/python benchmarks/gpu/bundle.py --verify-only   # re-check an existing bundle offline

1. Resolve (metadata only, through PyPI) vLLM + ``ray[train]`` + DeepSpeed + the project's core
   dependencies for the target interpreter (CPython 3.12, manylinux x86-64), with the machine's known
   versions as constraints (``machine_packages.txt``, read from the device README) so that the resolution
   keeps what the machine has. The vLLM release is the newest whose ``torch==`` pin equals the machine's
   torch (``--vllm auto``; DeepSpeed ships only an sdist on PyPI, so its wheel is built here).
2. Download only what the machine lacks (never torch, its CUDA libraries or triton: they must stay the
   machine's own), split it into parts of at most ``--part-mib`` (vLLM's wheel is cut into byte chunks),
   each with SHA256SUMS and the bundle manifest (``bundle_parts.py``).
3. Prove it: reassemble every part into a temporary folder, check each wheel's sha256, and run
   ``pip install --dry-run --no-index --find-links`` for the target python/platform against that folder plus
   empty stand-in wheels for the packages the machine provides (same names and versions, no code), so the
   bundle resolves offline exactly as it must there.

On the GPU machine, ``benchmarks/gpu/install_bundle.sh`` installs the parts one per device call (a call
carries at most 64 MiB, the working tree included). See benchmarks/gpu/README.md.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(HERE))
import bundle_parts

MIB = 1 << 20
# Never shipped: the machine's torch build must stay as it is; nor the CUDA libraries the machine has (they
# belong to its torch build), whatever version a requirement pins. CUDA packages it lacks do ship.
NEVER_SHIP = re.compile(r"^(torch|torchvision|torchaudio|triton)$")
CUDA_STACK = re.compile(r"^(nvidia-.*|cuda-.*|cupy-.*)$")
PROJECT_REQS = ["peft", "pydantic-settings", "kafka-python", "crc32c", "grpcio-health-checking",
                "grpcio-reflection"]


def canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_have(path: Path) -> dict[str, str]:
    """``{canonical name: version or ""}`` from a machine package list (``name`` or ``name==version``)."""
    have = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            have[canon(name)] = version.strip()
    return have


def platform_args(python: str, glibc: str) -> list[str]:
    major, minor = (int(x) for x in glibc.split("."))
    plats = [f"manylinux_{major}_{n}_x86_64" for n in range(minor, 16, -1)]
    plats += ["manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"]
    args = ["--only-binary=:all:", "--python-version", python, "--implementation", "cp"]
    for p in plats:
        args += ["--platform", p]
    return args


def pip(*args: str, capture: bool = False) -> subprocess.CompletedProcess:
    # --isolated: this machine's pip config caps torch and adds local indexes; the bundle comes from PyPI alone
    cmd = [sys.executable, "-m", "pip", "--isolated", "--disable-pip-version-check", *args]
    print("+ pip " + " ".join(args)[:300], flush=True)
    return subprocess.run(cmd, check=True, text=True, capture_output=capture)


def resolve(reqs: list[str], constraints: list[str], target: list[str], workdir: Path,
            no_deps: bool = False) -> list[dict]:
    """Resolve ``reqs`` for the target platform (metadata only); the pip report's ``install`` items."""
    cfile = workdir / "constraints.txt"
    cfile.write_text("\n".join(constraints) + "\n")
    report = workdir / f"report-{time.monotonic_ns()}.json"
    args = ["install", "--dry-run", "--ignore-installed", "--report", str(report),
            "--target", str(workdir / "never-written"), "-c", str(cfile), *target]
    if no_deps:
        args.append("--no-deps")
    pip(*args, *reqs, capture=True)
    return json.loads(report.read_text())["install"]


def resolve_keeping(reqs: list[str], have: dict[str, str], torch_version: str, target: list[str],
                    workdir: Path, rounds: int = 8) -> tuple[list[dict], list[str]]:
    """Resolve with the machine's versions as constraints, dropping those a requirement rules out.

    E.g. vLLM pins numba==0.65.0, which needs numpy<2.5 while the machine has 2.5.2: numpy's constraint is
    dropped and an older numpy ships in the bundle (installed in the venv, it shadows the machine's).
    Returns (items, the machine versions overridden)."""
    keep = {n: v for n, v in have.items() if v and n != "torch"}
    dropped: list[str] = []
    for _ in range(rounds):
        constraints = [f"{n}=={v}" for n, v in keep.items()] + [f"torch=={torch_version}"]
        try:
            return resolve(reqs, constraints, target, workdir), dropped
        except subprocess.CalledProcessError as exc:
            text = (exc.stderr or "") + (exc.stdout or "")
            culprits = {canon(n) for n in re.findall(r"requested \(constraint\) ([A-Za-z0-9_.\-]+)==", text)}
            culprits &= set(keep)
            if not culprits:
                sys.stderr.write(text[-4000:])
                raise
            for n in sorted(culprits):
                print(f"the machine's {n}=={keep.pop(n)} does not fit; shipping another version", flush=True)
                dropped.append(n)
    raise SystemExit("resolution kept failing; see the pip output above")


def torch_pin(item: dict) -> str:
    for req in item["metadata"].get("requires_dist", []):
        m = re.match(r"^torch\s*==\s*([\w.+]+)\s*(;.*)?$", req)
        if m and "extra" not in (m.group(2) or ""):
            return m.group(1)
    return ""


def pick_vllm(torch_version: str, target: list[str], workdir: Path, tries: int = 12) -> str:
    """The newest vLLM release whose ``torch==`` pin is ``torch_version`` (reads metadata of <= ``tries``)."""
    out = pip("index", "versions", "vllm", capture=True).stdout
    versions = re.search(r"Available versions: (.*)", out).group(1).split(", ")
    for v in [v for v in versions if re.fullmatch(r"[\d.]+(post\d+)?", v)][:tries]:
        item = resolve([f"vllm=={v}"], [], target, workdir, no_deps=True)[0]
        pin = torch_pin(item)
        print(f"vllm {v}: torch=={pin}", flush=True)
        if pin == torch_version:
            return v
    raise SystemExit(f"no vLLM among the newest {tries} releases pins torch=={torch_version}; pass --vllm")


def build_deepspeed(version: str, wheels: Path) -> Path:
    """DeepSpeed publishes only an sdist: build a pure-Python wheel (ops compile just in time there)."""
    env = {**os.environ, "DS_BUILD_OPS": "0", "DS_SKIP_CUDA_CHECK": "1"}
    cmd = [sys.executable, "-m", "pip", "--isolated", "wheel", "--no-deps", "--no-build-isolation", "-w",
           str(wheels), f"deepspeed=={version}"]
    print("+ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, env=env)
    return next(wheels.glob(f"deepspeed-{version}-*.whl"))


def wheel_requires(path: Path) -> list[str]:
    with zipfile.ZipFile(path) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        lines = z.read(meta).decode().splitlines()
    return [ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("Requires-Dist:")]


def exact_pins(items: list[dict]) -> dict[str, set[str]]:
    """Names pinned with ``==`` by any resolved package (outside extras): the machine's copy may not fit."""
    pins: dict[str, set[str]] = {}
    for it in items:
        for req in it["metadata"].get("requires_dist", []):
            m = re.match(r"^([A-Za-z0-9_.\-]+)(\[[^\]]*\])?\s*==\s*([\w.+]+)\s*(;.*)?$", req)
            if m and "extra" not in (m.group(4) or ""):
                pins.setdefault(canon(m.group(1)), set()).add(m.group(3))
    return pins


def lacks(items: list[dict], have: dict[str, str]) -> tuple[list[dict], list[dict]]:
    """Split resolved items into (ship, provided by the machine)."""
    pins = exact_pins(items)
    ship, provided = [], []
    for it in items:
        name, version = canon(it["metadata"]["name"]), it["metadata"]["version"]
        if NEVER_SHIP.match(name) or (name in have and CUDA_STACK.match(name)) or name in have and (have[name] == version or (not have[name] and name not in pins)):
            provided.append(it)
        else:
            ship.append(it)
    return ship, provided


def stand_in_wheel(name: str, version: str, out: Path) -> None:
    """An empty wheel with the machine's package name and version (no requirements): for the offline check."""
    dist = f"{re.sub(r'[-.]+', '_', name)}-{version}"
    files = {f"{dist}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
             f"{dist}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: stand-in\nRoot-Is-Purelib: true\n"
                                        "Tag: py3-none-any\n"}
    record = [f"{p},sha256={base64.urlsafe_b64encode(hashlib.sha256(t.encode()).digest()).rstrip(b'=').decode()},"
              f"{len(t.encode())}" for p, t in files.items()] + [f"{dist}.dist-info/RECORD,,"]
    files[f"{dist}.dist-info/RECORD"] = "\n".join(record) + "\n"
    with zipfile.ZipFile(out / f"{dist}-py3-none-any.whl", "w") as z:
        for p, t in files.items():
            z.writestr(p, t)


def verify(out: Path, target: list[str], workdir: Path) -> dict:
    """Reassemble every part in a temp dir, check sha256s, then resolve offline against it + stand-ins."""
    manifest = json.loads((out / bundle_parts.MANIFEST).read_text())
    staging = workdir / "staging"
    shutil.rmtree(staging, ignore_errors=True)
    for part in manifest["parts"]:
        copy = workdir / part["name"]
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(out / part["name"], copy)  # stage() moves files: work on a copy
        bundle_parts.stage(copy, staging)
        shutil.rmtree(copy)
    for name, info in manifest["wheels"].items():
        if bundle_parts.sha256_file(staging / name) != info["sha256"]:
            raise bundle_parts.BundleError(f"{name}: sha256 differs after reassembly")
    links = workdir / "links"
    shutil.rmtree(links, ignore_errors=True)
    links.mkdir()
    for name in manifest["wheels"]:
        os.link(staging / name, links / name)
    # the machine's packages, and the ones left out on purpose (--exclude), stand in as empty wheels
    for name, version in {**manifest["provided"], **manifest.get("excluded", {})}.items():
        stand_in_wheel(name, version, links)
    report = workdir / "offline-report.json"
    pip("install", "--dry-run", "--quiet", "--ignore-installed", "--no-index", "--find-links", str(links),
        "--report", str(report), "--target", str(workdir / "never-written"), *target, *manifest["requirements"])
    installed = json.loads(report.read_text())["install"]
    shipped = {canon(i["metadata"]["name"]) for i in installed} - set(manifest["provided"]) - set(
        manifest.get("excluded", {}))
    print(f"offline resolution OK: {len(installed)} packages ({len(shipped)} from the bundle, the rest "
          "provided by the machine)", flush=True)
    shutil.rmtree(staging)
    shutil.rmtree(links)
    return {"offline_packages": len(installed), "from_bundle": len(shipped)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--have", type=Path, default=HERE / "machine_packages.txt",
                    help="what the GPU machine has: one 'name' or 'name==version' a line")
    ap.add_argument("--torch", default="", help="the machine's torch version (default: from --have)")
    ap.add_argument("--vllm", default="auto", help="vLLM version, or auto: newest pinning --torch")
    ap.add_argument("--ray", default="", help="Ray version (default: this venv's)")
    ap.add_argument("--deepspeed", default="", help="DeepSpeed version (default: this venv's)")
    ap.add_argument("--python", default="3.12", help="the machine's Python (major.minor)")
    ap.add_argument("--glibc", default="2.39", help="the machine's glibc (Ubuntu 24.04: 2.39)")
    ap.add_argument("--part-mib", type=float, default=60.0,
                    help="largest part; a call carries 64 MiB in all, the working tree (~3 MiB) included")
    ap.add_argument("--out", type=Path, default=REPO / "build" / "gpu_bundle" / "parts")
    ap.add_argument("--cache", type=Path, default=REPO / "build" / "gpu_bundle" / "wheels",
                    help="downloaded wheels are kept here between builds")
    ap.add_argument("--exclude", action="append", default=[], metavar="NAME",
                    help="leave a package out (repeatable) to save device calls, e.g. pynvvideocodec, torchcodec, "
                         "z3-solver, nvidia-cutlass-dsl-libs-cu12 (video decoding, a kernel-search solver and CUDA "
                         "12 kernels a text-scoring run on a CUDA 13 machine never loads); the installer then "
                         "installs without dependency resolution and reports `pip check`")
    ap.add_argument("--verify-only", action="store_true")
    args = ap.parse_args(argv)
    if args.part_mib > 64:
        ap.error("--part-mib must be at most 64 (the device tool carries 64 MiB per call)")
    target = platform_args(args.python, args.glibc)
    with tempfile.TemporaryDirectory(prefix="gpu-bundle-") as tmp:
        work = Path(tmp)
        if args.verify_only:
            print(json.dumps(verify(args.out, target, work)))
            print(device_calls(args.out, json.loads((args.out / bundle_parts.MANIFEST).read_text())))
            return 0
        have = read_have(args.have)
        torch_version = args.torch or have.get("torch", "")
        if not torch_version:
            ap.error("no torch version: pass --torch or list torch==X in --have")
        from importlib.metadata import version as installed

        ray_v = args.ray or installed("ray")
        ds_v = args.deepspeed or installed("deepspeed")
        vllm_v = args.vllm if args.vllm != "auto" else pick_vllm(torch_version, target, work)
        args.cache.mkdir(parents=True, exist_ok=True)
        ds_wheel = next(args.cache.glob(f"deepspeed-{ds_v}-*.whl"), None) or build_deepspeed(ds_v, args.cache)
        ds_reqs = [r for r in wheel_requires(ds_wheel) if "extra ==" not in r]
        reqs = [f"vllm=={vllm_v}", f"ray[train]=={ray_v}", *ds_reqs, *PROJECT_REQS]
        items, overridden = resolve_keeping(reqs, have, torch_version, target, work)
        ship, provided = lacks(items, have)
        excluded = {canon(n) for n in args.exclude}
        left_out = [i for i in ship if canon(i["metadata"]["name"]) in excluded]
        ship = [i for i in ship if i not in left_out]
        if excluded - {canon(i["metadata"]["name"]) for i in left_out}:
            ap.error(f"--exclude names no shipped package: {sorted(excluded - {canon(i['metadata']['name']) for i in left_out})}")
        ship_names = {canon(i["metadata"]["name"]) for i in ship}
        print(f"resolved {len(items)} packages: ship {len(ship)}, the machine provides {len(provided)}", flush=True)
        wanted = {f"{canon(i['metadata']['name'])}=={i['metadata']['version']}" for i in ship}
        cached = {canon(p.name.split("-")[0]) + "==" + p.name.split("-")[1] for p in args.cache.glob("*.whl")}
        missing = sorted(wanted - cached)
        if missing:
            pip("download", "--no-deps", "--quiet", "-d", str(args.cache), *target, *missing)
        wheels = work / "wheels"
        wheels.mkdir()
        for p in args.cache.glob("*.whl"):
            key = canon(p.name.split("-")[0])
            if key in ship_names or (key == "deepspeed" and p == ds_wheel):
                os.link(p, wheels / p.name)
        meta = {"bundle_id": hashlib.sha256("\n".join(sorted(p.name for p in wheels.iterdir())).encode())
                .hexdigest()[:16],
                "requirements": [f"vllm=={vllm_v}", f"ray[train]=={ray_v}", f"deepspeed=={ds_v}", *PROJECT_REQS],
                "target": {"python": args.python, "glibc": args.glibc, "torch": torch_version},
                "overridden": overridden,
                "excluded": {canon(i["metadata"]["name"]): i["metadata"]["version"] for i in left_out},
                "provided": {canon(i["metadata"]["name"]): i["metadata"]["version"] for i in provided},
                "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        manifest = bundle_parts.pack(wheels, args.out, int(args.part_mib * MIB), meta)
        total = sum(w["size"] for w in manifest["wheels"].values())
        print(f"{len(manifest['wheels'])} wheels, {total / MIB:.0f} MiB in {len(manifest['parts'])} parts "
              f"under {args.out}", flush=True)
        for w, info in sorted(manifest["wheels"].items(), key=lambda kv: -kv[1]["size"])[:8]:
            print(f"  {info['size'] / MIB:7.1f} MiB  {w}{'  (chunked)' if info['chunks'] else ''}")
        print(json.dumps(verify(args.out, target, work)))
        print(device_calls(args.out, manifest), flush=True)
    return 0


def tree_mib() -> float:
    """What a device call sends besides its carry: tracked and untracked-not-ignored files."""
    try:
        out = subprocess.run(["git", "ls-files", "-z", "-co", "--exclude-standard"], cwd=REPO, check=True,
                             capture_output=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return 0.0
    names = [n for n in out.decode().split("\0") if n]
    return sum((REPO / n).stat().st_size for n in names if (REPO / n).is_file()) / MIB


def device_calls(out: Path, manifest: dict) -> str:
    """The device calls that install this bundle and run, written to <out>/CALLS.md too."""
    rel = out.resolve().relative_to(REPO) if out.resolve().is_relative_to(REPO) else out
    parts = [p["name"] for p in manifest["parts"]]
    tree = tree_mib()
    lines = [f"# Device calls for this bundle ({len(parts)} parts; the working tree sends {tree:.1f} MiB)", ""]
    for name in parts[:-1]:
        lines.append(f'run(command="bash benchmarks/gpu/install_bundle.sh {rel}/{name}", '
                     f'carry=["{rel}/{name}"], timeout_s=120)')
    last = parts[-1]
    lines.append(f'run(command="bash benchmarks/gpu/run_all.sh {rel}/{last}", '
                 f'carry=["{rel}/{last}", "build/gpu_run"], timeout_s=560)')
    biggest = max(p["bytes"] for p in manifest["parts"]) / MIB
    if biggest + tree + 0.1 > 64:
        lines += ["", (f"WARNING: a {biggest:.1f} MiB part plus the {tree:.1f} MiB tree is over the 64 MiB a "
                       "call carries: rebuild with a smaller --part-mib")]
    text = "\n".join(lines) + "\n"
    (out / "CALLS.md").write_text(text)
    return text


if __name__ == "__main__":
    sys.exit(main())
