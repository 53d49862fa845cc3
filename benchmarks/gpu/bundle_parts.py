"""Split a folder of wheels into parts of at most N bytes, and put them back together on the other side.

Standard library only: this file also runs on the GPU machine, which has no registry access and gets the
wheels one part per device call (each call carries at most 64 MiB). A wheel larger than a part is cut into
byte chunks that travel in separate parts; every file of a part is listed with its sha256 in the part's
``SHA256SUMS`` and the whole wheel's sha256 is in ``bundle.json`` (copied into every part), so a chunk
damaged or missing on the way is caught before pip sees the wheel.

    python3 bundle_parts.py pack WHEELS_DIR OUT_DIR --part-bytes 62914560 [--meta meta.json]
    python3 bundle_parts.py stage PART_DIR STAGING_DIR   # verify one part, move it in, rebuild whole wheels
    python3 bundle_parts.py status STAGING_DIR           # which wheels/parts are still missing (exit 1 if any)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path

MANIFEST = "bundle.json"
SUMS = "SHA256SUMS"
CHUNK_SUFFIX = ".chunk"


class BundleError(RuntimeError):
    """A part or wheel failed its check, or the bundle is incomplete: the message says which file."""


def sha256_file(path: Path, block: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(block):
            h.update(chunk)
    return h.hexdigest()


def plan(sizes: dict[str, int], part_bytes: int) -> list[list[tuple[str, int, int, int]]]:
    """Assign byte ranges of each file to parts of at most ``part_bytes``.

    Returns one list per part of ``(name, chunk_index, offset, length)``; ``chunk_index`` is -1 for a file
    that travels whole. Whole files are placed first-fit by decreasing size; a file larger than a part is cut
    into full-size chunks plus a remainder, and the remainder is placed like a whole file.
    """
    if part_bytes <= 0:
        raise ValueError("part size must be positive")
    parts: list[list[tuple[str, int, int, int]]] = []
    free: list[int] = []

    def place(item: tuple[str, int, int, int]) -> None:
        length = item[3]
        for i, room in enumerate(free):
            if length <= room:
                parts[i].append(item)
                free[i] -= length
                return
        parts.append([item])
        free.append(part_bytes - length)

    for name in sorted(sizes, key=lambda n: (-sizes[n], n)):
        size = sizes[name]
        if size <= part_bytes:
            place((name, -1, 0, size))
            continue
        n_chunks = -(-size // part_bytes)
        for k in range(n_chunks):
            offset = k * part_bytes
            place((name, k, offset, min(part_bytes, size - offset)))
    return parts


def pack(wheels_dir: Path, out_dir: Path, part_bytes: int, meta: dict | None = None) -> dict:
    """Write ``out_dir/part-NN/`` folders (files + SHA256SUMS + bundle.json) and return the manifest."""
    wheels = sorted(p for p in Path(wheels_dir).iterdir() if p.is_file() and p.suffix == ".whl")
    if not wheels:
        raise BundleError(f"no .whl files in {wheels_dir}")
    sizes = {p.name: p.stat().st_size for p in wheels}
    layout = plan(sizes, part_bytes)
    out_dir = Path(out_dir)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    manifest = {"part_bytes": part_bytes, "parts": [], "wheels": {}, **(meta or {})}
    for p in wheels:
        manifest["wheels"][p.name] = {"size": sizes[p.name], "sha256": sha256_file(p), "chunks": []}
    for index, items in enumerate(layout, start=1):
        part = out_dir / f"part-{index:02d}"
        part.mkdir()
        files = []
        for name, k, offset, length in items:
            target = part / (name if k < 0 else f"{name}.{k:03d}{CHUNK_SUFFIX}")
            with open(wheels_dir / name, "rb") as src, open(target, "wb") as dst:
                src.seek(offset)
                remaining = length
                while remaining:
                    buf = src.read(min(remaining, 1 << 20))
                    if not buf:
                        raise BundleError(f"{name} shrank while it was being packed")
                    dst.write(buf)
                    remaining -= len(buf)
            digest = sha256_file(target)
            files.append({"file": target.name, "sha256": digest, "size": length})
            if k >= 0:
                manifest["wheels"][name]["chunks"].append({"index": k, "file": target.name, "part": part.name,
                                                           "sha256": digest, "size": length})
        manifest["parts"].append({"name": part.name, "bytes": sum(f["size"] for f in files),
                                  "files": [f["file"] for f in files]})
        (part / SUMS).write_text("".join(f"{f['sha256']}  {f['file']}\n" for f in files))
    for info in manifest["wheels"].values():
        info["chunks"].sort(key=lambda c: c["index"])
    text = json.dumps(manifest, indent=1, sort_keys=True)
    (out_dir / MANIFEST).write_text(text)
    for part in manifest["parts"]:
        (out_dir / part["name"] / MANIFEST).write_text(text)
    return manifest


def verify_part(part_dir: Path) -> dict:
    """Check every file of a part against its SHA256SUMS; return the bundle manifest it carries."""
    part_dir = Path(part_dir)
    sums, manifest_path = part_dir / SUMS, part_dir / MANIFEST
    if not sums.is_file() or not manifest_path.is_file():
        raise BundleError(f"{part_dir.name}: not a bundle part (no {SUMS} or {MANIFEST})")
    listed = {}
    for line in sums.read_text().splitlines():
        digest, _, name = line.partition("  ")
        listed[name] = digest
    for name, digest in listed.items():
        path = part_dir / name
        if not path.is_file():
            raise BundleError(f"{part_dir.name}: {name} is missing")
        if sha256_file(path) != digest:
            raise BundleError(f"{part_dir.name}: {name} does not match its sha256 (damaged in transfer)")
    extra = {p.name for p in part_dir.iterdir()} - set(listed) - {SUMS, MANIFEST}
    if extra:
        raise BundleError(f"{part_dir.name}: files not in {SUMS}: {sorted(extra)}")
    return json.loads(manifest_path.read_text())


def reassemble(staging: Path, manifest: dict) -> list[str]:
    """Join every wheel whose chunks are all in ``staging``; check its sha256; return the wheels rebuilt."""
    staging = Path(staging)
    rebuilt = []
    for name, info in manifest["wheels"].items():
        chunks = info["chunks"]
        target = staging / name
        if not chunks or target.exists():
            continue
        paths = [staging / c["file"] for c in chunks]
        if not all(p.is_file() for p in paths):
            continue
        tmp = staging / f".{name}.partial"
        with open(tmp, "wb") as dst:
            for chunk, path in zip(chunks, paths, strict=True):
                if sha256_file(path) != chunk["sha256"]:
                    tmp.unlink()
                    raise BundleError(f"{path.name} does not match its sha256")
                with open(path, "rb") as src:
                    shutil.copyfileobj(src, dst, 1 << 20)
        if tmp.stat().st_size != info["size"] or sha256_file(tmp) != info["sha256"]:
            tmp.unlink()
            raise BundleError(f"{name}: reassembled wheel does not match its sha256")
        tmp.rename(target)
        for path in paths:
            path.unlink()
        rebuilt.append(name)
    return rebuilt


def stage(part_dir: Path, staging: Path) -> dict:
    """Verify a part, move its files into ``staging`` and rebuild the wheels it completes.

    Returns ``{"complete": [wheels ready to install, not reported before], "missing_parts": [...]}``.
    Staging a part twice is harmless (a rerun after a lost call)."""
    manifest = verify_part(part_dir)
    staging = Path(staging)
    staging.mkdir(parents=True, exist_ok=True)
    known = staging / MANIFEST
    if known.is_file() and json.loads(known.read_text()).get("bundle_id") != manifest.get("bundle_id"):
        raise BundleError(f"{part_dir.name} belongs to another bundle than the one staged in {staging}; "
                          "remove the staging folder to start over")
    known.write_text(json.dumps(manifest, indent=1, sort_keys=True))
    for line in (Path(part_dir) / SUMS).read_text().splitlines():
        name = line.partition("  ")[2]
        shutil.move(str(Path(part_dir) / name), str(staging / name))
    done = staging / ".staged"
    staged = set(done.read_text().split()) if done.is_file() else set()
    staged.add(Path(part_dir).name)
    done.write_text("\n".join(sorted(staged)) + "\n")
    rebuilt = reassemble(staging, manifest)
    whole = [n for n, i in manifest["wheels"].items() if not i["chunks"] and (staging / n).is_file()]
    complete = sorted(set(rebuilt) | {n for n in whole if Path(part_dir).name in _parts_of(manifest, n)})
    return {"complete": complete, "missing_parts": missing_parts(staging, manifest)}


def _parts_of(manifest: dict, wheel: str) -> set[str]:
    return {p["name"] for p in manifest["parts"] if wheel in p["files"]}


def missing_parts(staging: Path, manifest: dict) -> list[str]:
    staged = set((Path(staging) / ".staged").read_text().split()) if (Path(staging) / ".staged").is_file() else set()
    return [p["name"] for p in manifest["parts"] if p["name"] not in staged]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack")
    p.add_argument("wheels", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--part-bytes", type=int, required=True)
    p.add_argument("--meta", type=Path, help="JSON merged into the manifest (requirements, bundle_id, ...)")
    s = sub.add_parser("stage")
    s.add_argument("part", type=Path)
    s.add_argument("staging", type=Path)
    st = sub.add_parser("status")
    st.add_argument("staging", type=Path)
    args = ap.parse_args(argv)
    try:
        if args.cmd == "pack":
            meta = json.loads(args.meta.read_text()) if args.meta else None
            m = pack(args.wheels, args.out, args.part_bytes, meta)
            for part in m["parts"]:
                print(f"{part['name']}: {part['bytes'] / 2**20:.1f} MiB, {len(part['files'])} files")
        elif args.cmd == "stage":
            res = stage(args.part, args.staging)
            print(json.dumps(res))
        else:
            manifest = json.loads((args.staging / MANIFEST).read_text())
            missing = missing_parts(args.staging, manifest)
            print(json.dumps({"missing_parts": missing}))
            return 1 if missing else 0
    except (BundleError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
