"""The GPU wheel bundle: parts of bounded size, chunked wheels rebuilt byte for byte, damage caught, and
install_bundle.sh installing real wheels part by part into a virtualenv, offline."""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import os
import random
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "benchmarks" / "gpu"))
import bundle_parts
from bundle_parts import BundleError, pack, plan, stage, verify_part


def _random_wheels(folder: Path, sizes: dict[str, int]) -> dict[str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    digests = {}
    for name, size in sizes.items():
        data = rng.randbytes(size)
        (folder / name).write_bytes(data)
        digests[name] = hashlib.sha256(data).hexdigest()
    return digests


def test_plan_covers_every_byte_once_and_no_part_exceeds_the_limit():
    sizes = {"big.whl": 1000, "mid.whl": 300, "a.whl": 90, "b.whl": 250, "edge.whl": 256}
    parts = plan(sizes, 256)
    assert all(sum(item[3] for item in part) <= 256 for part in parts)
    covered: dict[str, list[tuple[int, int]]] = {}
    for part in parts:
        for name, _k, offset, length in part:
            covered.setdefault(name, []).append((offset, length))
    for name, size in sizes.items():
        spans = sorted(covered[name])
        assert spans[0][0] == 0 and sum(n for _, n in spans) == size
        assert all(a + n == b for (a, n), (b, _) in itertools.pairwise(spans))
    assert len(covered["big.whl"]) == 4 and len(covered["a.whl"]) == 1
    with pytest.raises(ValueError):
        plan(sizes, 0)


def test_pack_then_stage_in_any_order_rebuilds_identical_wheels(tmp_path):
    digests = _random_wheels(tmp_path / "w", {"vllm-1-py3-none-any.whl": 5000, "ray-2-py3-none-any.whl": 1500,
                                              "small-1-py3-none-any.whl": 300})
    manifest = pack(tmp_path / "w", tmp_path / "parts", 1024, {"bundle_id": "b1", "requirements": []})
    assert len(manifest["wheels"]["vllm-1-py3-none-any.whl"]["chunks"]) == 5
    for part in manifest["parts"]:
        assert sum(f.stat().st_size for f in (tmp_path / "parts" / part["name"]).iterdir()
                   if f.name.endswith((".whl", ".chunk"))) <= 1024
    names = [p["name"] for p in manifest["parts"]]
    random.Random(1).shuffle(names)
    staging = tmp_path / "staging"
    completed = []
    for name in names:
        result = stage(tmp_path / "parts" / name, staging)
        completed += result["complete"]
    assert result["missing_parts"] == []
    assert sorted(completed) == sorted(digests)
    for name, digest in digests.items():
        assert bundle_parts.sha256_file(staging / name) == digest
    assert not list(staging.glob("*.chunk"))  # chunks are removed once their wheel is rebuilt


def test_damaged_chunk_and_missing_part_are_reported_by_name(tmp_path):
    _random_wheels(tmp_path / "w", {"vllm-1-py3-none-any.whl": 3000})
    pack(tmp_path / "w", tmp_path / "parts", 1024, {"bundle_id": "b1", "requirements": []})
    part = tmp_path / "parts" / "part-02"
    chunk = next(part.glob("*.chunk"))
    data = bytearray(chunk.read_bytes())
    data[10] ^= 0xFF
    chunk.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=f"{chunk.name} does not match its sha256"):
        verify_part(part)
    stage(tmp_path / "parts" / "part-01", tmp_path / "staging")
    out = subprocess.run([sys.executable, str(REPO / "benchmarks/gpu/bundle_parts.py"), "status",
                          str(tmp_path / "staging")], check=False, capture_output=True, text=True)
    assert out.returncode == 1 and json.loads(out.stdout)["missing_parts"] == ["part-02", "part-03"]


def test_a_part_of_another_bundle_is_refused(tmp_path):
    _random_wheels(tmp_path / "w", {"x-1-py3-none-any.whl": 100})
    pack(tmp_path / "w", tmp_path / "a", 1024, {"bundle_id": "one"})
    pack(tmp_path / "w", tmp_path / "b", 1024, {"bundle_id": "two"})
    stage(tmp_path / "a" / "part-01", tmp_path / "staging")
    with pytest.raises(BundleError, match="another bundle"):
        stage(tmp_path / "b" / "part-01", tmp_path / "staging")


def _code_wheel(folder: Path, name: str, version: str, payload: int, requires: list[str]) -> None:
    """A real installable wheel: module ``name`` with a VALUE constant and ``payload`` bytes of data."""
    dist = f"{name}-{version}"
    files = {f"{name}/__init__.py": f"VALUE = {version!r}\n",
             f"{name}/blob.bin": os.urandom(payload).hex(),
             f"{dist}.dist-info/METADATA": "Metadata-Version: 2.1\nName: {}\nVersion: {}\n{}".format(
                 name, version, "".join(f"Requires-Dist: {r}\n" for r in requires)),
             f"{dist}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                                        "Tag: py3-none-any\n"}
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    files[f"{dist}.dist-info/RECORD"] = "\n".join(record + [f"{dist}.dist-info/RECORD,,"]) + "\n"
    with zipfile.ZipFile(folder / f"{dist}-py3-none-any.whl", "w", zipfile.ZIP_STORED) as z:
        for path, text in files.items():
            z.writestr(path, text)


@pytest.mark.integration
def test_install_bundle_installs_part_by_part_into_a_virtualenv_offline(tmp_path):
    wheels = tmp_path / "w"
    wheels.mkdir()
    _code_wheel(wheels, "gpubig", "1.0", 6000, ["gpusmall>=2"])  # ~12 kB: chunked
    _code_wheel(wheels, "gpusmall", "2.0", 100, [])
    parts = tmp_path / "bundle" / "parts"
    manifest = pack(wheels, parts, 4096, {"bundle_id": "t", "requirements": ["gpubig==1.0"]})
    assert manifest["wheels"]["gpubig-1.0-py3-none-any.whl"]["chunks"]
    env = {**os.environ, "GPU_BUNDLE_DIR": str(tmp_path / "bundle"), "GPU_VENV": str(tmp_path / "venv"),
           "PYTHON": sys.executable, "PIP_NO_INDEX": "1", "PIP_CONFIG_FILE": os.devnull}
    script = REPO / "benchmarks" / "gpu" / "install_bundle.sh"
    outputs = []
    for part in manifest["parts"]:
        copy = tmp_path / "carried" / part["name"]  # what a device call carries
        shutil.copytree(parts / part["name"], copy)
        run = subprocess.run(["bash", str(script), str(copy)], env=env, check=False, capture_output=True, text=True,
                             timeout=240)
        assert run.returncode == 0, run.stderr
        outputs.append(run.stdout)
    assert "bundle installed" in outputs[-1] and all("bundle installed" not in o for o in outputs[:-1])
    probe = subprocess.run([str(tmp_path / "venv" / "bin" / "python"), "-c",
                            "import gpubig, gpusmall, numpy; print(gpubig.VALUE, gpusmall.VALUE)"],
                           check=False, capture_output=True, text=True)
    assert probe.stdout.split() == ["1.0", "2.0"], probe.stderr  # numpy: the machine's packages stay visible
    rerun = subprocess.run(["bash", str(script), str(tmp_path / "carried" / manifest["parts"][-1]["name"])],
                           env=env, check=False, capture_output=True, text=True, timeout=240)
    assert rerun.returncode == 0 and "already staged" in rerun.stdout


def _item(name: str, version: str, requires: list[str] | None = None) -> dict:
    return {"metadata": {"name": name, "version": version, "requires_dist": requires or []}}


def test_what_the_machine_lacks_is_shipped_and_its_torch_and_cuda_stack_never_are():
    import bundle

    have = {"torch": "2.11.0", "numpy": "2.5.2", "numba": "", "requests": "", "nvidia-cublas": ""}
    items = [_item("vllm", "0.26.0", ["numba==0.65.0", "torch==2.11.0", "requests>=2", "msgspec"]),
             _item("torch", "2.11.0", ["nvidia-cublas==13.1.0.3"]), _item("nvidia-cublas", "13.1.0.3"),
             _item("numpy", "2.3.5"), _item("numba", "0.65.0"), _item("requests", "2.34.2"),
             _item("msgspec", "0.19.0"), _item("nvidia-cutlass-dsl", "4.6.0")]
    ship, provided = bundle.lacks(items, have)
    shipped = sorted(i["metadata"]["name"] for i in ship)
    # numba: pinned exactly by vLLM and the machine's version is unknown; numpy: another version than the
    # machine's; cutlass: a CUDA package the machine lacks. torch and its cuBLAS stay the machine's.
    assert shipped == ["msgspec", "numba", "numpy", "nvidia-cutlass-dsl", "vllm"]
    assert sorted(i["metadata"]["name"] for i in provided) == ["nvidia-cublas", "requests", "torch"]


@pytest.mark.integration
def test_a_requirement_nobody_meets_fails_the_last_call_clearly_with_the_wheels_installed(tmp_path):
    wheels = tmp_path / "w"
    wheels.mkdir()
    _code_wheel(wheels, "gpuneedy", "1.0", 100, ["gpuabsent>=9"])  # neither in the bundle nor on the machine
    parts = tmp_path / "bundle" / "parts"
    manifest = pack(wheels, parts, 4096, {"bundle_id": "n", "requirements": ["gpuneedy==1.0"]})
    env = {**os.environ, "GPU_BUNDLE_DIR": str(tmp_path / "bundle"), "GPU_VENV": str(tmp_path / "venv"),
           "PYTHON": sys.executable, "PIP_NO_INDEX": "1", "PIP_CONFIG_FILE": os.devnull}
    run = subprocess.run(["bash", str(REPO / "benchmarks/gpu/install_bundle.sh"),
                          str(parts / manifest["parts"][0]["name"])],
                         check=False, env=env, capture_output=True, text=True, timeout=240)
    assert run.returncode == 3
    assert "gpuabsent" in run.stderr and "offline resolution failed" in run.stderr
    probe = subprocess.run([str(tmp_path / "venv" / "bin" / "python"), "-c", "import gpuneedy"],
                           check=False, capture_output=True, text=True)
    assert probe.returncode == 0, probe.stderr
