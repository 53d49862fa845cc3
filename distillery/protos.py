"""Generate and check the Python stubs of the public contracts.

Policy (documented in docs/protos.md): the stubs generated from ``proto/distillery/v1`` are committed
under ``distillery/v1`` (with ``.pyi`` type stubs) so that installing the package never needs
grpcio-tools; ``make protos`` regenerates them and ``make protos-check`` (also a unit test) fails when
they are stale.

Usage: ``python -m distillery.protos generate|check``
"""

from __future__ import annotations

import filecmp
import shutil
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = REPO_ROOT / "proto"
PACKAGE_DIR = REPO_ROOT / "distillery" / "v1"
_INIT = '"""Generated protobuf and gRPC stubs for distillery.v1 (see docs/protos.md; do not edit)."""\n'


def proto_files() -> list[Path]:
    return sorted((PROTO_ROOT / "distillery" / "v1").glob("*.proto"))


def generate(out_root: Path) -> Path:
    """Run protoc into ``out_root`` and return the generated ``distillery/v1`` folder."""
    import grpc_tools
    from grpc_tools import protoc  # dev-only dependency

    include = Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        f"--grpc_python_out={out_root}",
        *[str(p.relative_to(PROTO_ROOT)) for p in proto_files()],
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed; see the messages above")
    generated = out_root / "distillery" / "v1"
    (generated / "__init__.py").write_text(_INIT)
    return generated


def stale_files() -> list[str]:
    """Names of committed stub files that differ from a fresh generation (empty when up to date)."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate(Path(tmp))
        names = {p.name for p in fresh.iterdir() if p.is_file()}
        committed = {p.name for p in PACKAGE_DIR.glob("*") if p.is_file() and p.suffix in {".py", ".pyi"}}
        stale = sorted(names ^ committed)
        for name in sorted(names & committed):
            if not filecmp.cmp(fresh / name, PACKAGE_DIR / name, shallow=False):
                stale.append(name)
        return stale


def main(argv: list[str]) -> int:
    cmd = argv[1] if len(argv) > 1 else "generate"
    if cmd == "generate":
        with tempfile.TemporaryDirectory() as tmp:
            fresh = generate(Path(tmp))
            if PACKAGE_DIR.exists():
                shutil.rmtree(PACKAGE_DIR)
            shutil.copytree(fresh, PACKAGE_DIR)
        print(f"generated {len(list(PACKAGE_DIR.glob('*_pb2*.py')))} modules into {PACKAGE_DIR.relative_to(REPO_ROOT)}")
        return 0
    if cmd == "check":
        stale = stale_files()
        if stale:
            print("stale generated stubs: " + ", ".join(stale) + " — run `make protos` and commit the result")
            return 1
        print("generated stubs are up to date")
        return 0
    print(f"unknown command {cmd!r}; use generate or check", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
